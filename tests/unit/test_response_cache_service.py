"""The response cache through the whole server on the fake backend: hits, misses, keys,
determinism, streaming, the access log and the metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.security.keys import create_key
from support import fake_model, fake_settings, open_client, sse_events

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "the same article again"}]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "keys.json"
    return {"path": path, "alice": create_key(path, "alice"), "bob": create_key(path, "bob")}


def server(keys: dict[str, Any], **cache: Any) -> AbstractContextManager[TestClient]:
    model = fake_model("fake", response_cache={"max_entries": 8, "ttl_s": 60, **cache})
    return open_client(fake_settings(model, fake_model("plain"), keys_file=keys["path"]))


@pytest.fixture
def client(keys: dict[str, Any], caplog: pytest.LogCaptureFixture) -> Iterator[TestClient]:
    caplog.set_level(logging.INFO, logger="llmserver.access")
    with server(keys) as c:
        yield c


def ask(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    payload = {"model": "fake", "messages": USER, "temperature": 0, **body}
    resp = client.post(CHAT, json=payload, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def metric(client: TestClient, key: str, result: str) -> float:
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    for line in resp.text.splitlines():
        if line.startswith("llmserver_response_cache_total{") and f'result="{result}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def cache_fields(caplog: pytest.LogCaptureFixture) -> list[str | None]:
    return [
        getattr(r, "response_cache", None)
        for r in caplog.records
        if r.name == "llmserver.access" and getattr(r, "path", "") == CHAT
    ]


def test_hit_and_miss(
    client: TestClient, keys: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    first = ask(client, keys["alice"])
    again = ask(client, keys["alice"])
    assert again["choices"] == first["choices"]
    assert first["usage"]["completion_tokens"] > 0
    # nothing ran: no tokens counted against the key
    assert again["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert cache_fields(caplog) == ["miss", "hit"]
    assert metric(client, keys["alice"], "hit") == 1
    assert metric(client, keys["alice"], "miss") == 1
    # another question is a miss
    other = ask(client, keys["alice"], messages=[{"role": "user", "content": "another one"}])
    assert other["usage"]["completion_tokens"] > 0


def test_no_hit_across_keys(client: TestClient, keys: dict[str, Any]) -> None:
    ask(client, keys["alice"])
    assert ask(client, keys["bob"])["usage"]["completion_tokens"] > 0
    assert ask(client, keys["bob"])["usage"]["completion_tokens"] == 0


def test_shared_across_keys_when_configured(keys: dict[str, Any]) -> None:
    with server(keys, share_across_keys=True) as c:
        ask(c, keys["alice"])
        assert ask(c, keys["bob"])["usage"]["completion_tokens"] == 0


def test_no_hit_for_sampled_requests_or_other_settings(
    client: TestClient, keys: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(2):
        body = ask(client, keys["alice"], temperature=0.9)
        assert body["usage"]["completion_tokens"] > 0
    assert cache_fields(caplog) == [None, None]
    # a fixed seed is deterministic, and part of the key
    ask(client, keys["alice"], temperature=0.9, seed=4)
    assert ask(client, keys["alice"], temperature=0.9, seed=4)["usage"]["total_tokens"] == 0
    assert ask(client, keys["alice"], temperature=0.9, seed=5)["usage"]["total_tokens"] > 0
    # other sampling settings, another model without a cache
    assert ask(client, keys["alice"], max_tokens=3)["usage"]["total_tokens"] > 0
    for _ in range(2):
        assert ask(client, keys["alice"], model="plain")["usage"]["total_tokens"] > 0


def test_a_hit_streams_the_same_chunks(client: TestClient, keys: dict[str, Any]) -> None:
    def stream() -> list[Any]:
        resp = client.post(
            CHAT,
            json={"model": "fake", "messages": USER, "temperature": 0, "stream": True},
            headers={"Authorization": f"Bearer {keys['alice']}"},
        )
        assert resp.status_code == 200
        events = [json.loads(e) for e in sse_events(resp.text) if e != "[DONE]"]
        return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in events]

    first = stream()
    assert len(first) > 3
    assert stream() == first
    # and the non-streamed answer comes from the same stored stream
    text = "".join(d.get("content", "") for d, _ in first)
    assert ask(client, keys["alice"])["choices"][0]["message"]["content"] == text
