"""Two gateways on one PostgreSQL (issue 29), each a real server process with the default model
(SmolLM2 via llama.cpp), driven with the official ``openai`` package: a batch created on A is
visible and cancellable on B, both claim its lines, and when A is killed with SIGKILL mid-batch
B finishes every line, each result exactly once in the output file. Two more processes share
keys (PostgreSQL), request budgets and the response cache (Redis)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import openai
import psycopg
import pytest
import redis as redis_client

from llmserver.config.settings import DEFAULT_MODEL_ID, default_model_path
from support import RunningServer, run_server
from support.batches import chat_lines, read_lines, upload, wait_final
from support.state_servers import Postgres, Redis

pytestmark = pytest.mark.integration

CHAT: Final = "/v1/chat/completions"
CONFIG = {
    "models": [{"id": DEFAULT_MODEL_ID, "backend": "llamacpp", "path": str(default_model_path())}]
}
READY_S = 900
#: a short lease, so the survivor takes the dead gateway's lines over soon
LEASE_S = "3"


def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


@contextlib.contextmanager
def gateway(tmp_path: Path, name: str, url: str) -> Iterator[RunningServer]:
    """One gateway with its own data folder, on the shared database."""
    env = {
        "LLMSERVER_STORE": url,
        "LLMSERVER_STORE_LEASE_S": LEASE_S,
        "LLMSERVER_GATEWAY_ID": name,
        "LLMSERVER_BATCH_MAX_CONCURRENCY": "4",
    }
    folder = tmp_path / name
    folder.mkdir()
    with run_server(folder, CONFIG, env=env, ready_timeout=READY_S) as server:
        yield server


def done_by(url: str, batch_id: str) -> dict[str, int]:
    """How many of the batch's finished lines each gateway claimed."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT claimed_by, COUNT(*) FROM lines WHERE batch_id = %s AND state = 'done' "
            "GROUP BY claimed_by",
            (batch_id,),
        ).fetchall()
    return {str(who): int(n) for who, n in rows}


def test_a_batch_created_on_one_gateway_is_seen_and_cancelled_on_the_other(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.database()
    data = chat_lines(200, max_tokens=8)
    with gateway(tmp_path, "gw-a", url) as a, gateway(tmp_path, "gw-b", url) as b:
        ca, cb = client(a), client(b)
        file_id = upload(ca, data)
        assert cb.files.content(file_id).content == data  # the body is in the database
        batch = ca.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
        assert cb.batches.retrieve(batch.id).status == "in_progress"
        assert batch.id in [listed.id for listed in cb.batches.list()]
        assert cb.batches.cancel(batch.id).status in ("cancelling", "cancelled")
        final = wait_final(ca, batch.id)
        assert final.status == "cancelled"
        assert final.request_counts is not None
        counts = final.request_counts
        assert counts.total == 200
        assert counts.completed + counts.failed == 200  # every line accounted, none left
        cancelled = read_lines(cb, final.error_file_id)
        assert cancelled
        assert {line["error"]["code"] for line in cancelled} == {"batch_cancelled"}
        done = [line["custom_id"] for line in read_lines(cb, final.output_file_id)]
        ids = done + [line["custom_id"] for line in cancelled]
        assert sorted(ids) == sorted(f"req-{i}" for i in range(200))  # each once


def test_sigkill_of_one_gateway_mid_batch_the_other_finishes_every_line_exactly_once(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.database()
    n = 80
    data = chat_lines(n, max_tokens=8)
    with gateway(tmp_path, "gw-a", url) as a, gateway(tmp_path, "gw-b", url) as b:
        ca, cb = client(a), client(b)
        batch = ca.batches.create(
            input_file_id=upload(ca, data), endpoint=CHAT, completion_window="24h"
        )
        # both gateways take lines (no timing: wait until each has finished some)
        deadline = time.monotonic() + 1800
        while set(done_by(url, batch.id)) != {"gw-a", "gw-b"}:
            assert time.monotonic() < deadline, done_by(url, batch.id)
            time.sleep(0.1)
        before = cb.batches.retrieve(batch.id)
        assert before.status == "in_progress"
        a.stop(signal.SIGKILL)
        assert a.process.returncode == -signal.SIGKILL
        final = wait_final(cb, batch.id)
        assert final.status == "completed", final
        assert final.request_counts is not None
        counts = final.request_counts
        assert (counts.total, counts.completed, counts.failed) == (n, n, 0)
        ids = [line["custom_id"] for line in read_lines(cb, final.output_file_id)]
        assert len(ids) == len(set(ids)) == n  # none twice
        assert ids == [f"req-{i}" for i in range(n)]  # none missing, in input order
        assert read_lines(cb, final.error_file_id) == []
        by = done_by(url, batch.id)
        assert sum(by.values()) == n
        assert by["gw-a"] > 0  # A's finished lines stay A's
        assert by["gw-b"] > 0


def test_keys_counters_and_cache_are_shared_by_two_gateway_processes(
    postgres: Postgres, redis: Redis, tmp_path: Path
) -> None:
    """Two real server processes (fake models: this is about the shared state) on one
    PostgreSQL keys table and one Redis: a key created with the command works on both within a
    second, one request budget spans both, an answer cached by one is a hit on the other, and a
    revoked key stops on both."""
    url = postgres.database()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    flush = redis_client.Redis.from_url(redis.url)
    flush.flushdb()
    flush.close()
    env = {
        "LLMSERVER_KEYS_STORE": url,
        "LLMSERVER_RATE_LIMIT_STORAGE": redis.url,
        "LLMSERVER_RESPONSE_CACHE_REDIS": redis.url,
    }
    config = {"models": [{"id": "fake", "backend": "fake",
                          "response_cache": {"max_entries": 8, "ttl_s": 60}}]}  # fmt: skip
    # a table with a key in it from the start: a gateway without any key serves loopback openly
    _keys("create", "--name", "first", url=url)
    with (
        run_server(tmp_path / "a", config, env={**env, "LLMSERVER_GATEWAY_ID": "a"}) as a,
        run_server(tmp_path / "b", config, env={**env, "LLMSERVER_GATEWAY_ID": "b"}) as b,
    ):
        while time.time() % 60 > 50:  # the counters' one-minute windows: keep to one
            time.sleep(0.5)
        key = _keys("create", "--name", "nas", "--rpm", "4", url=url).splitlines()[0]
        _until_both(a, b, key, 200)  # one request spent on each
        # requests alternate between the gateways: the one budget of 4 has 2 left (a budget
        # each would have 3 left on each)
        assert [_ask(g, key).status_code for g in (a, b, a)] == [200, 200, 429]
        assert _ask(b, key).status_code == 429
        assert _ask(a, key).status_code == 429
        free = _keys("create", "--name", "free", url=url).splitlines()[0]
        _until_both(a, b, free, 200)
        first = _ask(a, free, "a question for the cache").json()
        assert first["usage"]["completion_tokens"] > 0
        again = _ask(b, free, "a question for the cache").json()
        assert again["choices"] == first["choices"]
        assert again["usage"]["total_tokens"] == 0  # B ran nothing: A's answer, from Redis
        _keys("revoke", "free", url=url)
        _until_both(a, b, free, 401)


def _until_both(a: RunningServer, b: RunningServer, key: str, status: int) -> None:
    """Until both gateways answer ``key`` with ``status``, asking each only until it does:
    within a second of the command (the gateways read the table every half second)."""
    started = time.monotonic()
    pending = {a.url: a, b.url: b}
    while pending:
        assert time.monotonic() - started < 1.0, f"{list(pending)} still not {status}"
        for url, gateway in list(pending.items()):
            if _ask(gateway, key).status_code == status:
                del pending[url]
        time.sleep(0.02)


def _keys(*args: str, url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "llmserver", "keys", *args, "--keys-store", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


def _ask(server: RunningServer, key: str, content: str = "hi") -> httpx.Response:
    body = {"model": "fake", "messages": [{"role": "user", "content": content}],
            "temperature": 0, "max_tokens": 4}  # fmt: skip
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{server.base_url}/chat/completions", json=body, headers=headers)
