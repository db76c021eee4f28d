"""Usage accounting in the shared PostgreSQL (issue 29): requests served by two gateways
(in-process apps, the fake model, one real throw-away PostgreSQL) are counted in one table,
which ``/admin/usage``, the dashboard's snapshot and ``llmserver usage`` all read."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmserver.cli import main
from support import fake_settings, open_client
from support.state_servers import Postgres

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def test_usage_of_both_gateways_is_counted_in_one_table(
    postgres: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres.database()
    settings = fake_settings(store=url, data_dir=tmp_path)
    with open_client(settings) as a, open_client(settings) as b:
        used = 0
        for client in (a, b, b):
            answer = client.post("/v1/chat/completions", json=CHAT)
            assert answer.status_code == 200
            used += answer.json()["usage"]["total_tokens"]
        a.get("/admin/usage")  # A writes what it counted
        rows = b.get("/admin/usage").json()["data"]
        assert [(r["model"], r["requests"]) for r in rows] == [("fake", 3)]
        assert rows[0]["total_tokens"] == used
        snapshot = a.get("/dashboard/snapshot").json()["usage"]["rows"]
        assert sum(r["requests"] for r in snapshot) == 3
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"store": url}), encoding="utf-8")
    assert main(["usage", "--config", str(config)]) == 0
    table = capsys.readouterr().out
    assert "fake" in table
    assert f" {used}" in table.splitlines()[-1]  # the total line
