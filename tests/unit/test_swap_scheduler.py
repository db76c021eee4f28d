"""The swap scheduler with fake models that declare their size: waiting loads go by the number
of requests waiting for each model, none past ``swap_max_wait_s`` (no starvation), a request
that leaves frees its place and loads nothing, and ``groups`` decide whom a load evicts."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

import pytest

from llmserver.core.footprint import HOST, Footprint
from llmserver.core.load_queue import LoadQueue
from llmserver.core.manager import ModelManager
from llmserver.core.residency import Budgets, Resident, apart_in, plan_room, together_in
from support import done_loading, fake_model, fake_settings, model_states, open_client

MIB = 2**20


def sized(id: str, **extra: Any) -> dict[str, Any]:
    return fake_model(id, memory_bytes=100 * MIB, **extra)


def on_demand(id: str) -> dict[str, Any]:
    return sized(id, preload=False, load_on_demand=True)


async def until(condition: Any) -> None:
    """Let the event loop run until ``condition()`` holds (a bounded number of turns)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def test_the_model_with_most_requests_waiting_goes_first_unless_one_is_overdue() -> None:
    queue = LoadQueue(max_wait_s=10)
    with contextlib.ExitStack() as stack:
        stack.enter_context(queue.request("c"))
        stack.enter_context(queue.load("c"))
        assert queue.first() == "c"
        for _ in range(3):
            stack.enter_context(queue.request("d"))
        assert queue.first() is None or queue.first() == "c"  # d's load is not waiting yet
        stack.enter_context(queue.load("d"))
        assert queue.first() == "d"
        assert queue.turn("d")
        assert not queue.turn("c")
        later = queue._models["c"].since() + 10  # c's request has waited the bound
        assert queue.first(now=later) == "c"
        assert queue.overdue(now=later)
        assert not queue.overdue()
    assert queue.first() is None
    assert queue.waiting("c") == queue.waiting("d") == 0


def test_a_request_that_leaves_frees_its_place() -> None:
    queue = LoadQueue(max_wait_s=10)
    with queue.load("c"), queue.request("c"):
        with queue.request("c"):
            assert queue.waiting("c") == 2
        assert queue.waiting("c") == 1
    assert queue.waiting("c") == 0
    assert queue._models == {}


def test_groups_evict_the_models_outside_the_group_first() -> None:
    together = together_in([["coder", "router"], ["korean", "router"]])
    assert together["router"] == {"coder", "korean"}
    residents = [
        Resident(id, Footprint({HOST: 100}), last_used=used, kept_because=None)
        for id, used in (("router", 1.0), ("korean", 2.0), ("coder", 3.0))
    ]
    budgets = Budgets({HOST: 300})
    need = Footprint({HOST: 100})
    victims = plan_room(
        "coder2", need, residents, budgets, None, together_in([["coder2"]])["coder2"]
    )
    assert [v.id for v in victims] == ["router"]  # no group in common: least recently used
    groups = together_in([["coder", "coder2"]])
    victims = plan_room("coder2", need, residents, budgets, None, groups["coder2"])
    assert [v.id for v in victims] == ["router"]
    groups = together_in([["router", "coder2"]])
    victims = plan_room("coder2", need, residents, budgets, None, groups["coder2"])
    assert [v.id for v in victims] == ["korean"]  # router shares its group: it stays


async def test_disconnect_while_waiting_frees_the_place_and_loads_nothing() -> None:
    settings = fake_settings(
        sized("a"),
        sized("b"),
        on_demand("c"),
        memory_budget={HOST: 250 * MIB},
        swap_min_resident_s=3600,  # a and b hold their places: c must wait
    )
    manager = ModelManager(settings)
    await manager.load_all()
    waiter = asyncio.create_task(manager.ensure_loaded(manager.lookup("c")))
    await until(lambda: manager.queue.first() == "c")
    assert manager.queue.waiting("c") == 1
    waiter.cancel()  # what a client's disconnect does to its request
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    assert manager.queue.first() is None
    assert manager.queue.waiting("c") == 0
    manager.min_resident_s = 0  # room now: still nobody waits for c, so nothing loads
    await asyncio.sleep(0.2)
    states = {h.id: h.state for h in manager.handles()}
    assert states == {"a": "ready", "b": "ready", "c": "unloaded"}
    assert manager.swaps.count == 0
    await manager.close_all()


async def test_waiting_loads_go_by_requests_waiting_and_queued_work_is_served() -> None:
    settings = fake_settings(
        sized("a"),
        sized("b"),
        on_demand("c"),
        on_demand("d"),
        memory_budget={HOST: 250 * MIB},
        swap_min_resident_s=3600,
    )
    manager = ModelManager(settings)
    await manager.load_all()
    c = asyncio.create_task(manager.ensure_loaded(manager.lookup("c")))
    await until(lambda: manager.queue.first() == "c")
    ds = [asyncio.create_task(manager.ensure_loaded(manager.lookup("d"))) for _ in range(3)]
    await until(lambda: manager.queue.first() == "d")  # three wait for d, one for c
    manager.min_resident_s = 0  # the turns end: d loads first, then c
    await asyncio.gather(c, *ds)
    loaded = {h.id: h.loaded_at for h in manager.handles() if h.state == "ready"}
    assert set(loaded) == {"c", "d"}
    assert loaded["d"] <= loaded["c"]
    assert manager.swaps.count == 2  # one load per model, however many requests waited
    await manager.close_all()


STREAMS = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"prompt": "hi"}),
    ("/v1/messages", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}),
    ("/v1/responses", {"input": "hi"}),
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/api/generate", {"prompt": "hi"}),
]


@pytest.mark.parametrize(("path", "body"), STREAMS)
def test_a_stream_starts_only_when_its_model_is_ready(path: str, body: dict[str, Any]) -> None:
    """The first byte waits for the load: a load that cannot happen is a plain 503, not a
    stream begun with 200 and broken off."""
    settings = fake_settings(
        sized("a"),
        sized("b"),
        on_demand("c"),
        memory_budget={HOST: 250 * MIB},
        swap_min_resident_s=3600,
        max_load_wait_s=0,
    )
    with open_client(settings, until=done_loading) as client:
        resp = client.post(path, json={"model": "c", "stream": True, **body})
        assert resp.status_code == 503, resp.text
        assert "(recently loaded)" in resp.text
        assert model_states(client) == {"a": "ready", "b": "ready", "c": "unloaded"}


def test_a_model_of_another_group_is_evicted_even_when_there_is_room() -> None:
    groups = [["coder", "router"], ["korean", "router"]]
    apart = apart_in(groups)
    assert apart == {"coder": {"korean"}, "korean": {"coder"}, "router": frozenset()}
    residents = [
        Resident("router", Footprint({HOST: 100}), last_used=1.0, kept_because=None),
        Resident("korean", Footprint({HOST: 100}), last_used=2.0, kept_because=None),
        Resident("embed", Footprint({HOST: 100}), last_used=0.5, kept_because=None),
    ]
    roomy = Budgets({HOST: 1000})
    need = Footprint({HOST: 100})
    plan = plan_room("coder", need, residents, roomy, None, together_in(groups)["coder"],
                     apart["coder"])  # fmt: skip
    assert [v.id for v in plan] == ["korean"]  # the router and an ungrouped model stay
    busy = [replace(r, kept_because="busy") if r.id == "korean" else r for r in residents]
    assert plan_room("coder", need, busy, roomy, None, frozenset(), apart["coder"]) == []
