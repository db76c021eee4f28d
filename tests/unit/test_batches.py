"""Files and Batches through the official ``openai`` package, against real server processes that
serve the deterministic fake backend (the real-model and crash tests are in
tests/integration/test_batches.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import openai
import pytest

from llmserver.security.keys import create_key
from support import RunningServer, fake_model, run_server
from support.batches import chat_lines, jsonl, read_lines, upload, wait_final, wait_for
from support.mock_upstream import instant, serve

CHAT: Final = "/v1/chat/completions"


def client(server: RunningServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with an instant fake model."""
    with run_server(tmp_path_factory.mktemp("batches-fast"), {"models": [fake_model()]}) as s:
        yield s


def line(custom_id: str, **overrides: Any) -> dict[str, Any]:
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    out = {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}
    out.update(overrides)
    return out


def test_bad_lines_fail_the_batch_naming_line_and_param(fast: RunningServer) -> None:
    c = client(fast)
    good = line("a")
    data = (
        jsonl([good])
        + b"{not json\n"
        + jsonl(
            [
                line("a"),  # duplicate custom_id
                line("c", method="GET"),
                line("d", url="/v1/completions"),
                line("e", body={**good["body"], "stream": True}),
                line("f", body={**good["body"], "model": "no-such-model"}),
                line("g", body={**good["body"], "temperature": "hot"}),
                line("h", body={**good["body"], "logit_bias": {"1": 5}}),
            ]
        )
    )
    file_id = upload(c, data)
    batch = c.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    assert batch.status == "failed"
    assert batch.failed_at is not None
    assert batch.in_progress_at is None
    assert batch.errors is not None
    assert batch.errors.data is not None
    found = [(e.line, e.param, e.code) for e in batch.errors.data]
    assert found == [
        (2, None, "invalid_json_line"),
        (3, "custom_id", "duplicate_custom_id"),
        (4, "method", "invalid_method"),
        (5, "url", "mismatched_url"),
        (6, "body.stream", "stream_not_supported"),
        (7, "body.model", "model_not_found"),
        (8, "body.temperature", "invalid_value"),
        (9, "body.logit_bias", "unsupported_parameter"),
    ]
    assert batch.request_counts is not None
    assert batch.request_counts.total == 0
    # nothing ran, and the input file is untouched
    assert c.files.content(file_id).content == data


def test_idempotency_key_replays_and_conflicts(fast: RunningServer) -> None:
    c = client(fast)
    data = chat_lines(3, model="fake")
    headers = {"Idempotency-Key": "upload-1"}
    first = c.files.create(file=("in.jsonl", data), purpose="batch", extra_headers=headers)
    again = c.files.create(file=("in.jsonl", data), purpose="batch", extra_headers=headers)
    assert again.id == first.id
    with pytest.raises(openai.ConflictError) as err:
        c.files.create(file=("in.jsonl", data + data[:10]), purpose="batch", extra_headers=headers)
    assert err.value.code == "idempotency_key_reused"

    def create(window_metadata: dict[str, str]) -> Any:
        return c.batches.create(
            input_file_id=first.id,
            endpoint=CHAT,
            completion_window="24h",
            metadata=window_metadata,
            extra_headers={"Idempotency-Key": "batch-1"},
        )

    one = create({"run": "1"})
    two = create({"run": "1"})
    assert two.id == one.id
    with pytest.raises(openai.ConflictError):
        create({"run": "2"})
    ids = [b.id for b in c.batches.list(limit=100)]
    assert ids.count(one.id) == 1
    assert wait_final(c, one.id).status == "completed"


def test_bad_requests_are_openai_shaped_4xx(fast: RunningServer) -> None:
    c = client(fast)
    with pytest.raises(openai.BadRequestError) as bad:
        c.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune")
    assert bad.value.param == "purpose"
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve("file-nope")
    with pytest.raises(openai.NotFoundError):
        c.batches.create(input_file_id="file-nope", endpoint=CHAT, completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        c.batches.retrieve("batch_nope")
    file_id = upload(c, chat_lines(1, model="fake"))
    batch = wait_final(
        c, c.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h").id
    )
    with pytest.raises(openai.ConflictError) as err:
        c.batches.cancel(batch.id)
    assert err.value.code == "batch_not_cancellable"
    assert c.batches.retrieve(batch.id).status == "completed"  # unchanged
    deleted = c.files.delete(file_id)
    assert deleted.deleted
    assert deleted.id == file_id
    with pytest.raises(openai.NotFoundError):
        c.files.content(file_id)


def test_upload_over_the_limit_is_413(tmp_path: Path) -> None:
    config = {"models": [fake_model()], "batch_max_file_bytes": 2000}
    with run_server(tmp_path, config) as server:
        c = client(server)
        with pytest.raises(openai.APIStatusError) as err:
            c.files.create(file=("big.jsonl", b"x" * 50_000), purpose="batch")
        assert err.value.status_code == 413
        # within the body limit (multipart framing allowed for) but over the file limit
        with pytest.raises(openai.APIStatusError) as err:
            c.files.create(file=("big.jsonl", b"x" * 2001), purpose="batch")
        assert err.value.status_code == 413

        # a chunked upload (no Content-Length) is cut off as it passes the limit
        def chunks() -> Iterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
            for _ in range(30):
                yield b"y" * 1000
            yield b"\r\n--b--\r\n"

        resp = httpx.post(
            f"{server.base_url}/files",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert resp.status_code == 413
        assert resp.json()["error"]["code"] == "request_too_large"
        assert c.files.list().data == []  # nothing stored


def test_cancel_mid_run_keeps_done_lines_and_cancels_the_rest(tmp_path: Path) -> None:
    with run_server(tmp_path, {"models": [fake_model(token_delay_s=0.05)]}) as server:
        c = client(server)
        file_id = upload(c, chat_lines(40, model="fake", max_tokens=4))
        batch = c.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
        wait_for(c, batch.id, 3)
        cancelling = c.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled")
        final = wait_final(c, batch.id)
        assert final.status == "cancelled"
        assert final.cancelled_at is not None
        counts = final.request_counts
        assert counts is not None
        assert counts.total == 40
        assert counts.completed >= 3
        assert counts.completed + counts.failed == 40
        done = read_lines(c, final.output_file_id)
        errors = read_lines(c, final.error_file_id)
        assert len(done) == counts.completed
        assert len(errors) == counts.failed > 0
        assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
        ids = [r["custom_id"] for r in done + errors]
        assert sorted(ids) == sorted(f"req-{i}" for i in range(40))
        # both files keep input order
        for part in (done, errors):
            numbers = [int(r["custom_id"][4:]) for r in part]
            assert numbers == sorted(numbers)


def test_expiry_ends_unfinished_lines_as_batch_expired(tmp_path: Path) -> None:
    config = {"models": [fake_model(token_delay_s=0.05)], "batch_test_expiry_s": 2}
    with run_server(tmp_path, config) as server:
        c = client(server)
        file_id = upload(c, chat_lines(100, model="fake", max_tokens=8))
        batch = c.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
        assert batch.expires_at == batch.created_at + 2
        final = wait_final(c, batch.id)
        assert final.status == "expired"
        assert final.expired_at is not None
        counts = final.request_counts
        assert counts is not None
        assert counts.completed < 100
        assert counts.completed + counts.failed == 100
        errors = read_lines(c, final.error_file_id)
        assert len(errors) == counts.failed
        assert {e["error"]["code"] for e in errors} == {"batch_expired"}
        assert len(read_lines(c, final.output_file_id)) == counts.completed


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("batches-keys")
    keys_file = tmp / "keys.json"
    keys = {
        "alice": create_key(keys_file, "alice", models=["fake"]),
        "bob": create_key(keys_file, "bob"),
        "root": create_key(keys_file, "root", admin=True),
    }
    config = {"models": [fake_model(), fake_model("other")]}
    with run_server(tmp, config, env={"LLMSERVER_KEYS_FILE": str(keys_file)}) as server:
        yield server, keys


def test_forbidden_model_in_a_line_fails_validation(
    keyed: tuple[RunningServer, dict[str, str]],
) -> None:
    server, keys = keyed
    alice = client(server, keys["alice"])
    data = jsonl([line("ok"), line("no", body={**line("x")["body"], "model": "other"})])
    batch = alice.batches.create(
        input_file_id=upload(alice, data), endpoint=CHAT, completion_window="24h"
    )
    assert batch.status == "failed"
    assert batch.errors is not None
    assert batch.errors.data is not None
    [error] = batch.errors.data
    assert (error.line, error.param, error.code) == (2, "body.model", "model_not_allowed")


def test_keys_see_only_their_own_objects_and_admin_sees_all(
    keyed: tuple[RunningServer, dict[str, str]],
) -> None:
    server, keys = keyed
    alice, bob, root = (client(server, keys[n]) for n in ("alice", "bob", "root"))
    file_id = upload(alice, chat_lines(2, model="fake"))
    batch = alice.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    for call in (
        lambda: bob.files.retrieve(file_id),
        lambda: bob.files.content(file_id),
        lambda: bob.files.delete(file_id),
        lambda: bob.batches.retrieve(batch.id),
        lambda: bob.batches.cancel(batch.id),
        lambda: bob.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h"),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert batch.id not in [b.id for b in bob.batches.list()]
    assert file_id not in [f.id for f in bob.files.list()]
    assert batch.id in [b.id for b in root.batches.list()]
    assert root.files.retrieve(file_id).id == file_id
    final = wait_final(alice, batch.id)
    assert final.status == "completed"
    # usage is counted against the key that created the batch (the recorder flushes each second)
    deadline = time.monotonic() + 30
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not rows:
        resp = httpx.get(
            f"{server.url}/admin/usage", headers={"Authorization": f"Bearer {keys['root']}"}
        )
        rows = [r for r in resp.json()["data"] if r["key_name"] == "alice"]
        time.sleep(0.5)
    assert rows
    assert rows[0]["requests"] >= 2


def test_list_pages_with_after_and_limit(fast: RunningServer) -> None:
    c = client(fast)
    file_id = upload(c, chat_lines(1, model="fake"))
    made = [
        c.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h").id
        for _ in range(3)
    ]
    first = c.batches.list(limit=2)
    assert len(first.data) == 2
    assert first.has_more
    ids = [b.id for b in c.batches.list(limit=100)]
    assert set(made) <= set(ids)
    assert len(ids) == len(set(ids))
    paged = [b.id for b in c.batches.list(limit=1)]
    assert paged == ids


def test_a_dying_upstream_replica_mid_batch_retries_lines_on_the_other(tmp_path: Path) -> None:
    with serve(instant(delay_ms=30)) as one, serve(instant(delay_ms=30)) as two:
        model = {"id": "up", "backend": "upstream", "url": [one.base_url, two.base_url]}
        config = {"models": [model], "batch_retry_backoff_s": 0.2}
        with run_server(tmp_path, config) as server:
            c = client(server)
            data = chat_lines(40, model="up", max_tokens=3)
            batch = c.batches.create(
                input_file_id=upload(c, data), endpoint=CHAT, completion_window="24h"
            )
            wait_for(c, batch.id, 5)
            one.stop()
            served_by_two = len(two.requests)
            final = wait_final(c, batch.id)
            assert final.status == "completed"
            assert final.request_counts is not None
            assert (final.request_counts.completed, final.request_counts.failed) == (40, 0)
            assert len(two.requests) > served_by_two
            ids = [r["custom_id"] for r in read_lines(c, final.output_file_id)]
            assert ids == [f"req-{i}" for i in range(40)]


def test_embeddings_and_completions_lines(tmp_path: Path) -> None:
    config = {"models": [fake_model(embedding_dimensions=8)]}
    with run_server(tmp_path, config) as server:
        c = client(server)
        for endpoint, body in (
            ("/v1/completions", {"model": "fake", "prompt": "Once", "max_tokens": 3}),
            ("/v1/embeddings", {"model": "fake", "input": "hello"}),
        ):
            data = jsonl([{"custom_id": "x", "method": "POST", "url": endpoint, "body": body}])
            batch = c.batches.create(
                input_file_id=upload(c, data),
                endpoint=endpoint,  # type: ignore[arg-type]
                completion_window="24h",
            )
            final = wait_final(c, batch.id)
            assert final.status == "completed", final
            [result] = read_lines(c, final.output_file_id)
            sync = httpx.post(f"{server.base_url}{endpoint[3:]}", json=body).json()
            got = result["response"]["body"]
            assert got["object"] == sync["object"]
            assert got["usage"] == sync["usage"]
            assert json.dumps(sorted(got)) == json.dumps(sorted(sync))


def test_cli_submit_wait_list_status_results_and_cancel(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, "nas")
    env_keys = {"LLMSERVER_KEYS_FILE": str(keys_file)}
    with run_server(tmp_path, {"models": [fake_model()]}, env=env_keys) as server:
        env = {**os.environ, "LLMSERVER_URL": server.base_url, "LLMSERVER_API_KEY": key}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "llmserver", "batch", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        source = tmp_path / "in.jsonl"
        source.write_bytes(chat_lines(5, model="fake"))
        done = cli("submit", str(source), "--endpoint", CHAT, "--wait", "--metadata", "job=nas")
        assert done.returncode == 0, done.stderr
        batch_id = done.stdout.strip()
        assert batch_id.startswith("batch_")
        assert "5/5 done, 0 failed" in done.stderr  # the progress line
        listed = cli("list")
        assert batch_id in listed.stdout
        assert "completed" in listed.stdout
        status = json.loads(cli("status", batch_id).stdout)
        assert status["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
        assert status["metadata"] == {"job": "nas"}
        out = tmp_path / "out.jsonl"
        assert cli("results", batch_id, "-o", str(out)).returncode == 0
        ids = [json.loads(line)["custom_id"] for line in out.read_text().splitlines()]
        assert ids == [f"req-{i}" for i in range(5)]
        refused = cli("cancel", batch_id)
        assert refused.returncode == 1
        assert "409" in refused.stderr
        bad = tmp_path / "bad.jsonl"
        bad.write_bytes(b"{}\n")
        failed = cli("submit", str(bad))
        assert failed.returncode == 1
        assert "line 1: custom_id" in failed.stderr
        wrong_key = subprocess.run(
            [sys.executable, "-m", "llmserver", "batch", "list"],
            env={**env, "LLMSERVER_API_KEY": "sk-wrong"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert wrong_key.returncode == 1
        assert "401" in wrong_key.stderr


def test_sigkill_mid_batch_then_restart_on_the_fake_model_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    config = {"models": [fake_model(token_delay_s=0.02)]}
    expected = [f"req-{i}" for i in range(150)]
    with run_server(tmp_path, config) as first:
        c = client(first)
        batch = c.batches.create(
            input_file_id=upload(c, chat_lines(150, model="fake", max_tokens=5)),
            endpoint=CHAT,
            completion_window="24h",
        )
        before = wait_for(c, batch.id, 30)
        first.stop(signal.SIGKILL)
        assert before.status == "in_progress"  # killed mid-batch
    with run_server(tmp_path, config) as second:  # the same data_dir
        c = client(second)
        final = wait_final(c, batch.id)
        assert final.status == "completed"
        assert final.request_counts is not None
        assert (final.request_counts.completed, final.request_counts.failed) == (150, 0)
        ids = [r["custom_id"] for r in read_lines(c, final.output_file_id)]
        assert ids == expected  # every line once, in input order


def test_a_batch_is_charged_to_the_key_token_budget_and_never_refused(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, "small", tokens_per_minute=60)
    env = {"LLMSERVER_KEYS_FILE": str(keys_file)}
    with run_server(tmp_path, {"models": [fake_model()]}, env=env) as server:
        c = client(server, key)
        batch = c.batches.create(
            input_file_id=upload(c, chat_lines(10, model="fake", max_tokens=4)),
            endpoint=CHAT,
            completion_window="24h",
        )
        final = wait_final(c, batch.id)
        assert final.request_counts is not None
        assert (final.request_counts.completed, final.request_counts.failed) == (10, 0)
        assert final.usage is not None
        assert final.usage.total_tokens > 60
        with pytest.raises(openai.RateLimitError):  # the key's own requests see it spent
            c.chat.completions.create(
                model="fake", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )


def test_the_dashboard_shows_a_batch_with_its_progress(fast: RunningServer) -> None:
    c = client(fast)
    file_id = upload(c, chat_lines(3, model="fake"))
    batch = c.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    wait_final(c, batch.id)
    snapshot = httpx.get(f"{fast.url}/dashboard/snapshot").json()
    shown = {b["id"]: b for b in snapshot["batches"]}
    assert shown[batch.id]["status"] == "completed"
    assert (shown[batch.id]["total"], shown[batch.id]["completed"]) == (3, 3)
    assert shown[batch.id]["failed"] == 0
    assert shown[batch.id]["model"] == "fake"
