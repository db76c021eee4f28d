"""``threads: auto`` on the real default model: the engine computes on fewer threads while other
programs keep cores busy and on every usable core again when they stop, the output does not
depend on the thread count, and ``/metrics`` shows the count.

The load is real: busy-loop processes pinned to CPUs this process may use. The test asserts
the configuration the engine chose (its thread count), never a speed or a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmserver.backends.base import GenerationRequest, SamplingParams
from llmserver.backends.cpu_threads import RISE_BELOW, allowed_cpus, usable_cpus
from llmserver.backends.llamacpp import LlamaCppBackend
from llmserver.config.settings import default_model_path
from support import fake_settings, open_client, started_llamacpp

pytestmark = pytest.mark.integration

needs_two_cores = pytest.mark.skipif(usable_cpus() < 2, reason="needs 2 usable CPUs")
PROMPTS = ["Write a short story about a robot.", "List three facts about the sea."]
TOKENS = 40
#: generous: a loaded CI machine may take many seconds per step before the engine adapts
DEADLINE_S = 120


def request(backend: LlamaCppBackend, prompt: str, name: str, tokens: int) -> GenerationRequest:
    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    return GenerationRequest(name, prompt, backend.tokenize(prompt), params)


async def greedy(backend: LlamaCppBackend) -> tuple[list[str], list[list[Any]]]:
    """Each prompt's greedy text and the next-token logits of each of its steps."""
    logits: dict[str, list[Any]] = {}
    previous = backend.logits_hook

    def keep(name: str, index: int, row: Any) -> None:
        if previous is not None:
            previous(name, index, row)
        logits.setdefault(name, []).append(row)

    backend.logits_hook = keep
    texts = []
    for i, prompt in enumerate(PROMPTS):
        text = ""
        async for delta in backend.generate(request(backend, prompt, f"p{i}", TOKENS)):
            text += delta.text
        texts.append(text)
    backend.logits_hook = previous
    return texts, [logits[f"p{i}"] for i in range(len(PROMPTS))]


async def outputs_with(**config: Any) -> tuple[list[str], list[list[Any]]]:
    backend = await started_llamacpp(1, **config)
    try:
        return await greedy(backend)
    finally:
        await backend.close()


def assert_same(a: tuple[list[str], list[list[Any]]], b: tuple[list[str], list[list[Any]]]) -> None:
    assert a[0] == b[0]
    for rows_a, rows_b in zip(a[1], b[1], strict=True):
        assert len(rows_a) == len(rows_b) == TOKENS
        for x, y in zip(rows_a, rows_b, strict=True):
            assert np.array_equal(x, y)  # bit-identical, not merely close


async def test_greedy_output_is_the_same_on_one_and_two_threads() -> None:
    one = await outputs_with(threads=1)
    two = await outputs_with(threads=2)
    assert all(one[0])
    assert_same(one, two)


@needs_two_cores
async def test_greedy_output_is_the_same_across_thread_changes_mid_generation() -> None:
    fixed = await outputs_with(threads=2)
    backend = await started_llamacpp(1)  # threads: auto, the default
    governor = backend.engine.threads
    assert governor is not None
    seen: list[int] = []

    def switch(_name: str, index: int, _row: Any) -> None:
        # on the engine thread, after a decode: the next step runs on the pinned count
        seen.append(governor.threads)
        governor.pin({0: 2, 10: 1, 20: 2, 30: 1}.get(index, governor.threads))

    backend.logits_hook = switch
    try:
        switched = await greedy(backend)
    finally:
        await backend.close()
    assert 1 in seen, seen
    assert 2 in seen, seen
    assert governor.changes >= 4
    assert_same(fixed, switched)


@contextlib.contextmanager
def busy_loops(cpus: list[int], per_cpu: int) -> Iterator[None]:
    """``per_cpu`` busy-loop processes pinned to each of ``cpus``."""
    code = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(cpu)])
        for cpu in cpus
        for _ in range(per_cpu)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


async def wait_for(backend: LlamaCppBackend, ok: Any) -> bool:
    """Poll the chosen thread count until ``ok(threads)`` or the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if ok(backend.compute_threads()):
            return True
        await asyncio.sleep(0.2)
    return False


@needs_two_cores
@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="Linux only")
async def test_threads_drop_while_cores_are_busy_and_return_when_they_free() -> None:
    usable = usable_cpus()
    backend = await started_llamacpp(1)
    governor = backend.engine.threads
    assert governor is not None
    assert backend.compute_threads() == usable
    stop = asyncio.Event()

    async def keep_generating() -> None:  # the engine adapts between steps, so it must step
        i = 0
        while not stop.is_set():
            async for _ in backend.generate(request(backend, PROMPTS[0], f"g{i}", 900)):
                if stop.is_set():
                    break
            i += 1

    generating = asyncio.create_task(keep_generating())
    try:
        if not await wait_for(backend, lambda n: n == usable):
            pytest.skip(f"the machine is busy before the test: others use {governor.others}")
        # a loop on each of half the usable cores: beside spinning compute threads each takes
        # half a core or more (the drop threshold is below that)
        cpus = sorted(allowed_cpus())[: max(1, usable // 2)]
        with busy_loops(cpus, per_cpu=1):
            dropped = await wait_for(backend, lambda n: n < usable)
            under_load = backend.compute_threads()
        assert dropped, f"still {usable} threads; others measured at {governor.others}"
        assert under_load is not None
        assert 1 <= under_load < usable
        if not await wait_for(backend, lambda n: n == usable):
            others = governor.others or 0.0
            # other programs on this machine, not ours, still hold the cores
            assert others >= RISE_BELOW, f"threads stay at {backend.compute_threads()}"
            pytest.skip(f"the machine stays busy without the loops: others use {others:.2f}")
        assert governor.changes >= 2
    finally:
        stop.set()
        await generating
        await backend.close()


def test_metrics_show_each_models_compute_threads() -> None:
    path = str(default_model_path())
    settings = fake_settings(
        {"id": "fixed", "backend": "llamacpp", "path": path, "threads": 1},
        {"id": "auto", "backend": "llamacpp", "path": path},
    )
    with open_client(settings) as client:
        text = client.get("/metrics").text
    samples = {
        s.labels["model"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "llmserver_compute_threads"
    }
    assert samples["fixed"] == 1
    assert 1 <= samples["auto"] <= usable_cpus()
