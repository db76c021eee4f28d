"""Two gateways on one PostgreSQL (issue 29), each a real server process with the default model
(SmolLM2 via llama.cpp), driven with the official ``openai`` package: a batch created on A is
visible and cancellable on B, both claim its lines, and when A is killed with SIGKILL mid-batch
B finishes every line, each result exactly once in the output file."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import openai
import psycopg
import pytest

from llmserver.config.settings import DEFAULT_MODEL_ID, default_model_path
from support import RunningServer, run_server
from support.batches import chat_lines, read_lines, upload, wait_final
from support.state_servers import Postgres

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
