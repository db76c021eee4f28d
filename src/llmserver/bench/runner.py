"""Load generation: closed-loop concurrency sweeps and open-loop Poisson arrivals.

With two targets the same workload runs against both in one run, interleaved: each level (and
each round of a level) runs A then B, and the next one B then A, so that noise on a shared
machine falls on both.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from llmserver.bench.client import close_session, first_model, make_session, send_request
from llmserver.bench.config import BenchConfig, BenchReport, Level, LevelResult, TargetSpec
from llmserver.bench.metrics import RequestResult, compare, recommend, summarize
from llmserver.bench.progress import ProgressBar
from llmserver.bench.workload import PayloadFactory, Workload

logger = logging.getLogger(__name__)

Sender = Callable[[int], Coroutine[Any, Any, RequestResult]]


@dataclass
class _Target:
    spec: TargetSpec
    model: str
    session: aiohttp.ClientSession
    factory: PayloadFactory
    url: str

    def sender(self, workload: Workload, batch: str, progress: ProgressBar) -> Sender:
        """A function that sends request ``i`` of ``batch`` and counts it on the bar."""

        async def send(index: int) -> RequestResult:
            body = self.factory.build(batch, index)
            result = await send_request(
                self.session,
                self.url,
                body,
                workload.stream,
                workload.output_tokens,
                self.spec.api,
            )
            result.turn = self.factory.turn(index)
            progress.update(result.ok)
            return result

        return send


async def closed_loop(
    send: Sender, concurrency: int, limit: int | None, duration_s: float | None
) -> tuple[list[RequestResult], float]:
    """``concurrency`` clients, each sending its next request when the last one ends.

    Stops issuing after ``limit`` requests or ``duration_s`` seconds; returns the results and
    the time from the first send to the last completion.
    """
    results: list[RequestResult] = []
    counter = itertools.count()
    start = time.perf_counter()
    deadline = None if duration_s is None else start + duration_s

    async def client() -> None:
        while True:
            index = next(counter)
            if limit is not None and index >= limit:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            results.append(await send(index))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results, time.perf_counter() - start


async def open_loop(
    send: Sender, rate: float, limit: int | None, duration_s: float | None, rng: random.Random
) -> tuple[list[RequestResult], float]:
    """Requests arriving as a Poisson process of ``rate`` per second, whatever is in flight."""
    tasks: list[asyncio.Task[RequestResult]] = []
    start = time.perf_counter()
    arrival = start
    index = 0
    while limit is None or index < limit:
        arrival += rng.expovariate(rate)
        if duration_s is not None and arrival - start >= duration_s:
            break
        delay = arrival - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(index)))
        index += 1
    results = list(await asyncio.gather(*tasks))
    return results, time.perf_counter() - start


async def _open_target(spec: TargetSpec, config: BenchConfig) -> _Target:
    closed = config.levels[0].mode == "concurrency"
    pool = int(max(level.value for level in config.levels)) if closed else 0
    session = make_session(spec.api_key, pool, config.timeout_s)
    try:
        model = spec.model or await first_model(session, spec.base_url, spec.api)
    except BaseException:
        await close_session(session)
        raise
    factory = PayloadFactory(config.workload, model, spec.api)
    url = spec.base_url.rstrip("/") + config.workload.path_for(spec.api)
    logger.info("bench target %s: %s model %s", spec.label, url, model)
    return _Target(spec, model, session, factory, url)


async def _warm_up(target: _Target, config: BenchConfig) -> None:
    if config.warmup <= 0:
        return
    bar = ProgressBar(f"{target.spec.label} warm-up", config.warmup, None, config.progress)
    send = target.sender(config.workload, f"{target.spec.label}:warmup", bar)
    closed = config.levels[0].mode == "concurrency"
    width = int(max(level.value for level in config.levels)) if closed else 1
    await closed_loop(send, max(1, min(config.warmup, width)), config.warmup, None)
    bar.close()


def _share(total: int | None, rounds: int, index: int) -> int | None:
    if total is None:
        return None
    return total // rounds + (1 if index < total % rounds else 0)


async def _run_batch(
    target: _Target, config: BenchConfig, level: Level, round_no: int
) -> tuple[list[RequestResult], float]:
    limit = _share(config.requests, config.rounds, round_no)
    duration = None if config.duration_s is None else config.duration_s / config.rounds
    label = f"{target.spec.label} {level.name}"
    if config.rounds > 1:
        label += f" r{round_no + 1}"
    bar = ProgressBar(label, limit, duration, config.progress)
    batch = f"{target.spec.label}:{level.name}:{round_no}"
    send = target.sender(config.workload, batch, bar)
    if level.mode == "concurrency":
        outcome = await closed_loop(send, int(level.value), limit, duration)
    else:
        # Seeded without the target, so that both targets see the same arrival times.
        rng = random.Random(f"{config.workload.seed}:{level.name}:{round_no}")
        outcome = await open_loop(send, level.value, limit, duration, rng)
    bar.close()
    return outcome


async def _sweep(targets: list[_Target], config: BenchConfig) -> list[LevelResult]:
    levels: list[LevelResult] = []
    turn = 0
    for level in config.levels:
        results: dict[str, list[RequestResult]] = {t.spec.label: [] for t in targets}
        durations: dict[str, float] = dict.fromkeys(results, 0.0)
        for round_no in range(config.rounds):
            order = targets if turn % 2 == 0 else targets[::-1]
            turn += 1
            for target in order:
                batch, seconds = await _run_batch(target, config, level, round_no)
                results[target.spec.label].extend(batch)
                durations[target.spec.label] += seconds
        summaries = {
            label: summarize(batch, durations[label], config.slo)
            for label, batch in results.items()
        }
        ratios = None
        if len(targets) == 2:
            first, second = (summaries[t.spec.label] for t in targets)
            ratios = compare(first, second)
        levels.append(LevelResult(level, summaries, ratios))
    return levels


async def run_benchmark(config: BenchConfig) -> BenchReport:
    """Run the whole benchmark described by ``config``.

    Raises BenchError when a target's model cannot be discovered.
    """
    targets: list[_Target] = []
    try:
        for spec in config.targets:
            targets.append(await _open_target(spec, config))
        for target in targets:
            await _warm_up(target, config)
        levels = await _sweep(targets, config)
    finally:
        for target in targets:
            await close_session(target.session)
    recommendations = {
        t.spec.label: recommend(
            ((lr.level.value, lr.summaries[t.spec.label]) for lr in levels), config.attainment
        )
        for t in targets
    }
    models = {t.spec.label: t.model for t in targets}
    return BenchReport(config, models, levels, recommendations)
