"""Unit-test fixtures: the app on the fake backend, in-process."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from llmserver.app import create_app
from llmserver.config.settings import Settings
from support import fake_settings


def open_client(settings: Settings) -> TestClient:
    """A TestClient whose app is started (lifespan run) and whose models are ready."""
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    client.__enter__()
    deadline = time.monotonic() + 10
    while client.get("/ready").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("fake models never became ready")
        time.sleep(0.01)
    return client


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The app serving one fake model called ``fake`` (alias ``f``)."""
    c = open_client(fake_settings({"id": "fake", "backend": "fake", "aliases": ["f"]}))
    try:
        yield c
    finally:
        c.__exit__(None, None, None)
