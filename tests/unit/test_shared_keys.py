"""API keys in a shared PostgreSQL table (``keys_store``, issue 29): ``llmserver keys`` writes
it, two gateways (in-process apps on one real throw-away PostgreSQL) enforce a created key and
a revocation on both, and an unreachable table keeps authentication on."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmserver.cli import main
from llmserver.security.keys import KeyStore
from support import fake_settings, open_client
from support.state_servers import Postgres

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def eventually(check: Callable[[], bool]) -> None:
    """Until ``check`` holds (the gateways read the table again every half second)."""
    for _ in range(500):
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("never happened")


def status(client: TestClient, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return client.post("/v1/chat/completions", json=CHAT, headers=headers).status_code


def test_a_key_created_and_revoked_with_the_command_holds_on_both_gateways(
    postgres: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres.database()
    assert main(["keys", "create", "--keys-store", url, "--name", "first"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    settings = fake_settings(keys_store=url, data_dir=tmp_path)
    with open_client(settings) as a, open_client(settings) as b:
        assert status(a, first) == 200
        assert status(b, first) == 200
        assert status(a, "llms-not-a-key") == 401
        assert main(["keys", "create", "--keys-store", url, "--name", "nas", "--rpm", "50"]) == 0
        key = capsys.readouterr().out.splitlines()[0]
        eventually(lambda: status(a, key) == 200 and status(b, key) == 200)
        assert main(["keys", "list", "--keys-store", url]) == 0
        listing = capsys.readouterr().out
        assert "nas" in listing
        assert key not in listing  # hashes only
        assert main(["keys", "create", "--keys-store", url, "--name", "nas"]) == 2
        assert "already exists" in capsys.readouterr().err
        assert main(["keys", "revoke", "nas", "--keys-store", url]) == 0
        eventually(lambda: status(a, key) == 401 and status(b, key) == 401)
        assert status(a, first) == 200  # the other key is untouched


def test_an_unreachable_keys_table_keeps_authentication_on(tmp_path: Path) -> None:
    class Down:
        def read(self) -> list[object]:
            raise OSError("connection refused")

        def close(self) -> None:
            pass

    keys = KeyStore(tmp_path / "unused.json", table=Down())  # type: ignore[arg-type]
    assert keys.configured  # no key passes, rather than every request
    assert keys.verify("llms-anything") is None


def test_the_keys_command_names_an_unreachable_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"
    assert main(["keys", "revoke", "nas", "--keys-store", url]) == 2
    assert "cannot be reached" in capsys.readouterr().err
