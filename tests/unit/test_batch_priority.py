"""Batch lines are background work in the model's scheduler: they never go ahead of an
interactive request, never take the reserved slots, and are capped; checked on the Limiter and
on a running server."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import openai

from llmserver.core.scheduling import Limiter, background
from support import fake_model, run_server
from support.batches import chat_lines, upload, wait_final


async def hold(limiter: Limiter, started: list[str], name: str, release: asyncio.Event) -> None:
    async with limiter.slot():
        started.append(name)
        await release.wait()


def spawn(
    limiter: Limiter, started: list[str], name: str, release: asyncio.Event, bg: bool
) -> asyncio.Task[None]:
    if bg:
        with background():  # the task copies the context: its slot is a background one
            return asyncio.create_task(hold(limiter, started, name, release))
    return asyncio.create_task(hold(limiter, started, name, release))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_background_never_takes_the_reserved_slot() -> None:
    limiter = Limiter(slots=3, max_queue=8, max_wait_s=5, reserved=1, background_max=8)
    started: list[str] = []
    release = asyncio.Event()
    tasks = [spawn(limiter, started, f"b{i}", release, bg=True) for i in range(5)]
    await settle()
    assert started == ["b0", "b1"]  # 3 slots, 1 reserved
    assert limiter.background_in_use == 2
    assert limiter.background_waiting == 3
    tasks.append(spawn(limiter, started, "i0", release, bg=False))
    await settle()
    assert started[-1] == "i0"  # the reserved slot was free: admitted at once
    release.set()
    await asyncio.gather(*tasks)
    assert limiter.in_use == 0
    assert limiter.background_in_use == 0


async def test_interactive_waiters_are_admitted_ahead_of_pending_background_lines() -> None:
    limiter = Limiter(slots=2, max_queue=8, max_wait_s=5, reserved=1, background_max=8)
    started: list[str] = []
    first, rest = asyncio.Event(), asyncio.Event()
    tasks = [spawn(limiter, started, "b0", first, bg=True)]
    tasks.append(spawn(limiter, started, "i0", rest, bg=False))  # takes the reserved slot
    await settle()
    tasks += [spawn(limiter, started, f"b{i}", rest, bg=True) for i in (1, 2)]
    await settle()
    tasks.append(spawn(limiter, started, "i1", rest, bg=False))  # waits: both slots taken
    await settle()
    assert started == ["b0", "i0"]
    assert limiter.waiting == 1
    assert limiter.background_waiting == 2
    first.set()  # b0 ends: its slot goes to the interactive waiter, not to b1 (queued earlier)
    await settle()
    assert started == ["b0", "i0", "i1"]
    rest.set()
    await asyncio.gather(*tasks)
    assert started[3:] == ["b1", "b2"]


async def test_background_is_capped_and_a_single_slot_is_lent_when_idle() -> None:
    capped = Limiter(slots=8, max_queue=8, max_wait_s=5, reserved=1, background_max=2)
    started: list[str] = []
    release = asyncio.Event()
    tasks = [spawn(capped, started, f"b{i}", release, bg=True) for i in range(4)]
    await settle()
    assert capped.background_in_use == 2
    single = Limiter(slots=1, max_queue=8, max_wait_s=5, reserved=1, background_max=2)
    tasks.append(spawn(single, started, "s0", release, bg=True))
    await settle()
    assert "s0" in started  # one slot: reserving it would starve the batch forever
    release.set()
    await asyncio.gather(*tasks)


async def test_a_cancelled_background_waiter_leaves_no_slot_behind() -> None:
    limiter = Limiter(slots=2, max_queue=8, max_wait_s=5, reserved=1, background_max=8)
    started: list[str] = []
    release = asyncio.Event()
    holder = spawn(limiter, started, "b0", release, bg=True)
    waiter = spawn(limiter, started, "b1", release, bg=True)
    await settle()
    waiter.cancel()
    release.set()
    await holder
    await asyncio.gather(waiter, return_exceptions=True)
    assert limiter.in_use == 0
    assert limiter.background_waiting == 0


def test_a_running_batch_leaves_the_reserved_slot_to_interactive_requests(tmp_path: Path) -> None:
    model = fake_model(token_delay_s=0.03, max_concurrent=2)
    config = {"models": [model], "batch_reserved_slots": 1, "batch_max_concurrency": 4}
    with run_server(tmp_path, config) as server:
        c = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        batch = c.batches.create(
            input_file_id=upload(c, chat_lines(30, model="fake", max_tokens=6)),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        seen: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                models = httpx.get(f"{server.url}/").json()["models"]
                seen.append(models[0]["slots_in_use"])

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            while c.batches.retrieve(batch.id).request_counts.completed < 3:  # type: ignore[union-attr]
                pass
        finally:
            stop.set()
            sampler.join()
        assert seen
        assert max(seen) == 1
        reply = c.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "now"}], max_tokens=2
        )
        assert reply.choices[0].message.content
        during = c.batches.retrieve(batch.id)
        assert during.status == "in_progress"  # answered while batch lines were still pending
        assert wait_final(c, batch.id).status == "completed"
