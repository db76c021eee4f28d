"""A gateway whose PostgreSQL goes away while it serves (issue 29): ``/ready`` says so (503,
naming the store), requests that need the database get a clear 503 in their surface's shape,
chat requests (which need no database) keep being answered, and all of it recovers when the
database returns. A real throw-away PostgreSQL, the fake model."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmserver.observability.logs import configure_logging
from support import fake_settings, open_client
from support.state_servers import Postgres

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def wait_until_ready(client: TestClient) -> None:
    """Until ``/ready`` answers 200 (the pool reconnects in the background)."""
    for _ in range(1500):
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(client.get("/ready").json())


def test_postgres_down_is_a_clear_503_where_needed_and_everything_recovers(
    postgres: Postgres, tmp_path: Path
) -> None:
    settings = fake_settings(store=postgres.database(), data_dir=tmp_path, gateway_id="gw-x")
    with open_client(settings) as client:
        assert 'llmserver_gateway_info{id="gw-x"} 1.0' in client.get("/metrics").text
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["shared_state"] == {"postgresql": "ok"}
        assert client.get("/v1/batches").status_code == 200
        postgres.stop()
        try:
            ready = client.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["shared_state"] == {"postgresql": "unreachable"}
            listed = client.get("/v1/batches")
            assert listed.status_code == 503
            error = listed.json()["error"]
            assert error["code"] == "store_unavailable"
            assert "PostgreSQL" in error["message"]
            chat = client.post("/v1/chat/completions", json=CHAT)  # needs no database
            assert chat.status_code == 200
            assert chat.json()["choices"][0]["message"]["content"]
        finally:
            postgres.start()
        wait_until_ready(client)
        assert client.get("/v1/batches").status_code == 200


def test_log_lines_name_the_gateway_when_there_are_several(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fake_settings(store="postgresql://nobody@127.0.0.1:9/none", gateway_id="gw-x")
    assert settings.gateway_in_logs() == "gw-x"
    assert fake_settings().gateway_in_logs() is None  # one process: the lines stay as they were
    configure_logging("INFO", gateway=settings.gateway_in_logs())
    try:
        logging.getLogger("llmserver.test").info("hello")
        assert " gw-x llmserver.test [-]: hello" in capsys.readouterr().err
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_llmserver", False)]:
            root.removeHandler(handler)
