"""Usage accounting: batched writes, reading back from a new store, the admin endpoint, the CLI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from llmserver.cli import main
from llmserver.observability.accounting import UsageRecorder, UsageStore, usage_table
from support import fake_settings, open_client

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hello there"}]


def test_recorder_batches_and_store_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    recorder = UsageRecorder(UsageStore(path), flush_s=60)
    recorder.start()
    recorder.record("alice", "m1", 10, 5)
    recorder.record("alice", "m1", 1, 2)
    recorder.record(None, "m2", 3, 4)
    assert not path.exists()  # nothing written on the request path
    recorder.stop()  # shutdown writes the rest
    recorder.record("alice", "m1", 100, 0)
    recorder.flush()  # adds to the existing row
    rows = UsageStore(path).query()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    got = {
        (r.key_name, r.model): (r.day, r.requests, r.prompt_tokens, r.completion_tokens)
        for r in rows
    }
    assert got == {
        ("alice", "m1"): (today, 3, 111, 7),
        ("anonymous", "m2"): (today, 1, 3, 4),
    }
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    assert UsageStore(path).query(tomorrow) == []


def test_usage_table_has_totals(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "u.db")
    store.add({("2026-01-02", "bob", "fake"): [2, 30, 40]})
    table = usage_table(store.query())
    lines = table.splitlines()
    assert lines[0].split() == ["day", "key", "model", "requests", "prompt", "completion", "total"]
    assert lines[1].split() == ["2026-01-02", "bob", "fake", "2", "30", "40", "70"]
    assert lines[2].split() == ["total", "2", "30", "40", "70"]


def test_admin_usage_endpoint(tmp_path: Path) -> None:
    with open_client(fake_settings(usage_db=str(tmp_path / "usage.db"))) as client:
        body = client.post(CHAT, json={"messages": USER}).json()
        usage = client.get("/admin/usage").json()
        (row,) = usage["data"]
        assert row["key_name"] == "anonymous"
        assert row["model"] == "fake"
        assert row["requests"] == 1
        assert row["prompt_tokens"] == body["usage"]["prompt_tokens"]
        assert row["completion_tokens"] == body["usage"]["completion_tokens"]
        future = (dt.date.today() + dt.timedelta(days=2)).isoformat()
        assert client.get(f"/admin/usage?since={future}").json()["data"] == []
        bad = client.get("/admin/usage?since=yesterday")
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "since"


def test_usage_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "u.db"
    assert main(["usage", "--db", str(path)]) == 0
    assert "no usage recorded yet" in capsys.readouterr().out
    UsageStore(path).add({("2026-03-04", "team-a", "fake"): [1, 5, 6]})
    assert main(["usage", "--db", str(path), "--since", "2026-03-01"]) == 0
    out = capsys.readouterr().out
    assert "team-a" in out
    assert main(["usage", "--db", str(path), "--since", "2026-03-05"]) == 0
    assert "team-a" not in capsys.readouterr().out
    assert main(["usage", "--db", str(path), "--since", "March"]) == 2
