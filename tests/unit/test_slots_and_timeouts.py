"""Slots, queue, timeouts, failures and draining, through the whole stack on the fake backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.backends.fake import FakeBackend
from llmserver.errors import OutOfMemoryError
from support import fake_model, fake_settings, open_client, sse_events
from support.fake import models

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hello"}]
LONG = {"messages": USER, "max_tokens": 1000, "ignore_eos": True}


@pytest.fixture
def slow() -> Iterator[TestClient]:
    """One slot, a queue of one, tokens every 20 ms, generations limited to 0.5 s."""
    model = fake_model(
        "slow", token_delay_s=0.02, max_concurrent=1, max_queue=1, inference_timeout_s=0.5
    )
    with open_client(fake_settings(model, max_queue_wait_s=5)) as c:
        yield c


def status(client: TestClient) -> dict[str, Any]:
    model: dict[str, Any] = client.get("/").json()["models"][0]
    return model


def wait_for(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def in_background(client: TestClient, body: dict[str, Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(client.post(CHAT, json=body)))
    worker.start()
    return worker, out


def test_full_queue_answers_429_at_once_and_frees_everything(slow: TestClient) -> None:
    body = {"messages": USER, "max_tokens": 15, "ignore_eos": True}
    first, out1 = in_background(slow, body)
    wait_for(lambda: status(slow)["slots_in_use"] == 1)
    second, out2 = in_background(slow, body)
    wait_for(lambda: status(slow)["waiting"] == 1)
    started = time.perf_counter()
    resp = slow.post(CHAT, json=body)
    elapsed = time.perf_counter() - started
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "5"
    assert resp.json() == {
        "error": {
            "message": "concurrent inference limit exceeded",
            "type": "rate_limit_error",
            "param": None,
            "code": "concurrency_limit_exceeded",
        }
    }
    assert elapsed < 0.5  # answered without waiting for a slot (slack for a loaded machine)
    first.join()
    second.join()
    assert [r.status_code for r in out1 + out2] == [200, 200]
    assert (status(slow)["slots_in_use"], status(slow)["waiting"]) == (0, 0)


def test_waiting_longer_than_max_wait_is_429() -> None:
    model = fake_model("m", token_delay_s=0.02, max_concurrent=1, max_queue_wait_s=0.2)
    with open_client(fake_settings(model)) as c:
        first, _ = in_background(c, {"messages": USER, "max_tokens": 40, "ignore_eos": True})
        wait_for(lambda: status(c)["slots_in_use"] == 1)
        resp = c.post(CHAT, json={"messages": USER, "max_tokens": 2})
        assert resp.status_code == 429
        assert resp.json()["error"]["message"] == "concurrent inference limit exceeded"
        assert resp.headers["retry-after"] == "1"
        first.join()
        assert status(c)["waiting"] == 0


def test_global_slot_default_is_capped_at_the_backend() -> None:
    settings = fake_settings(
        fake_model("a"), fake_model("b", max_concurrent=9), max_concurrent_inference=100
    )
    with open_client(settings) as c:
        slots = [m["slots"] for m in c.get("/").json()["models"]]
        assert slots == [FakeBackend.max_parallel, 9]


def test_timeout_is_503_without_retry_and_frees_the_slot(slow: TestClient) -> None:
    resp = slow.post(CHAT, json=LONG)
    assert resp.status_code == 503
    assert resp.headers["x-should-retry"] == "false"
    assert resp.json()["error"] == {
        "message": "inference timed out after 0.5 s",
        "type": "server_error",
        "param": None,
        "code": "timeout",
    }
    assert status(slow)["slots_in_use"] == 0
    assert slow.post(CHAT, json={"messages": USER, "max_tokens": 2}).status_code == 200


def test_timeout_mid_stream_is_one_error_event_then_done(slow: TestClient) -> None:
    resp = slow.post(CHAT, json={**LONG, "stream": True})
    assert resp.status_code == 200
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    assert "inference timed out after 0.5 s" in events[-2]
    assert sum("error" in e for e in events) == 1
    assert status(slow)["slots_in_use"] == 0


def test_engine_failures_map_to_the_status_table(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(exc: Exception) -> Callable[..., Any]:
        async def generate(self: FakeBackend, request: Any) -> Any:
            raise exc
            yield  # an async generator, like the real one

        return generate

    monkeypatch.setattr(FakeBackend, "generate", failing(OutOfMemoryError()))
    resp = client.post(CHAT, json={"messages": USER})
    assert resp.status_code == 503
    assert resp.json()["error"]["message"] == "out of memory during inference"
    monkeypatch.setattr(FakeBackend, "generate", failing(RuntimeError("secret detail")))
    resp = client.post(CHAT, json={"messages": USER})
    assert resp.status_code == 500
    assert resp.json()["error"]["message"] == "internal server error"
    assert "secret detail" not in resp.text
    assert "Traceback" not in resp.text
    assert status(client)["slots_in_use"] == 0


def test_failed_model_load_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmserver.backends.base import ModelLoadError

    async def start(self: FakeBackend) -> None:
        raise ModelLoadError("model load failed: weights are corrupt")

    monkeypatch.setattr(FakeBackend, "start", start)
    with open_client(fake_settings(), until=None) as c:
        wait_for(lambda: status(c)["state"] == "failed")
        resp = c.post(CHAT, json={"messages": USER})
        assert resp.status_code == 503
        assert resp.json()["error"]["message"].startswith("model load failed")


def test_draining_refuses_new_work_and_ready_is_503(client: TestClient) -> None:
    models(client).draining = True
    assert client.get("/ready").status_code == 503
    assert client.get("/ready").json()["status"] == "draining"
    resp = client.post(CHAT, json={"messages": USER})
    assert resp.status_code == 503
    assert resp.json()["error"]["message"] == "server is shutting down"
    assert client.get("/health").status_code == 200
