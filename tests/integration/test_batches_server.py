"""Batches on the real default model (SmolLM2 via llama.cpp) through the official ``openai``
package: a 150-line batch end to end, and a server killed with SIGKILL mid-batch."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Final

import httpx
import openai
import pytest

from llmserver.config.settings import DEFAULT_MODEL_ID, default_model_path
from support import RunningServer, run_server
from support.batches import chat_lines, read_lines, upload, wait_final, wait_for

pytestmark = pytest.mark.integration

CHAT: Final = "/v1/chat/completions"
N = 150
EXPECTED = [f"req-{i}" for i in range(N)]


#: the default model alone (no embedding model to load beside it); slow machines get time
CONFIG = {
    "models": [{"id": DEFAULT_MODEL_ID, "backend": "llamacpp", "path": str(default_model_path())}]
}
READY_S = 900


def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_150_line_batch_completes_in_order_with_usage_counted(tmp_path: Path) -> None:
    with run_server(tmp_path, CONFIG, ready_timeout=READY_S) as server:
        c = client(server)
        data = chat_lines(N, max_tokens=4, temperature=0)
        file_id = upload(c, data)
        assert c.files.content(file_id).content == data  # the upload round-trips
        batch = c.batches.create(
            input_file_id=file_id, endpoint=CHAT, completion_window="24h", metadata={"job": "nas"}
        )
        assert batch.status == "in_progress"
        final = wait_final(c, batch.id)
        assert final.status == "completed", final
        assert final.request_counts is not None
        counts = final.request_counts
        assert (counts.total, counts.completed, counts.failed) == (N, N, 0)
        assert final.error_file_id is None
        assert final.metadata == {"job": "nas"}
        assert final.completed_at is not None
        assert final.finalizing_at is not None
        lines = read_lines(c, final.output_file_id)
        assert [line["custom_id"] for line in lines] == EXPECTED  # input order
        prompt = sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in lines)
        completion = sum(line["response"]["body"]["usage"]["completion_tokens"] for line in lines)
        for line in lines:
            body = line["response"]["body"]
            assert line["response"]["status_code"] == 200
            assert line["error"] is None
            assert body["object"] == "chat.completion"
            assert body["choices"][0]["message"]["content"]
            # the request id is the one in the server's log line for this line
            assert f"[{line['response']['request_id']}]" in server.log()
        assert final.usage is not None
        assert (final.usage.input_tokens, final.usage.output_tokens) == (prompt, completion)
        # the same request sent synchronously has the same shape and, at temperature 0, text
        sync = httpx.post(
            f"{server.base_url}/chat/completions",
            json={
                "messages": [{"role": "user", "content": "Say something about the number 0."}],
                "max_tokens": 4,
                "temperature": 0,
            },
            timeout=60,
        ).json()
        first = lines[0]["response"]["body"]
        assert sorted(first) == sorted(sync)
        assert first["choices"][0]["message"] == sync["choices"][0]["message"]
        # the same counts; how much of the prompt the prefix cache held may differ
        usage_keys = ("prompt_tokens", "completion_tokens", "total_tokens")
        assert {k: first["usage"][k] for k in usage_keys} == {
            k: sync["usage"][k] for k in usage_keys
        }
        rows = httpx.get(f"{server.url}/admin/usage").json()["data"]
        # every line counted once against the caller (anonymous here), plus the sync request
        assert sum(r["requests"] for r in rows) == N + 1
        assert sum(r["prompt_tokens"] for r in rows) == prompt + sync["usage"]["prompt_tokens"]
        assert sum(r["completion_tokens"] for r in rows) == (
            completion + sync["usage"]["completion_tokens"]
        )


def test_sigkill_mid_batch_then_restart_finishes_every_line_exactly_once(tmp_path: Path) -> None:
    data = chat_lines(N, max_tokens=4)
    with run_server(tmp_path, CONFIG, ready_timeout=READY_S) as first:
        c = client(first)
        batch = c.batches.create(
            input_file_id=upload(c, data), endpoint=CHAT, completion_window="24h"
        )
        before = wait_for(c, batch.id, 20)
        assert before.status == "in_progress"
        first.stop(signal.SIGKILL)
    assert first.process.returncode == -signal.SIGKILL
    with run_server(tmp_path, CONFIG, ready_timeout=READY_S) as second:  # the same data_dir
        c = client(second)
        final = wait_final(c, batch.id)
        assert final.status == "completed", final
        assert final.request_counts is not None
        counts = final.request_counts
        assert (counts.total, counts.completed, counts.failed) == (N, N, 0)
        ids = [line["custom_id"] for line in read_lines(c, final.output_file_id)]
        assert len(ids) == len(set(ids)) == N  # none twice
        assert ids == EXPECTED  # none missing, in input order
        assert read_lines(c, final.error_file_id) == []
