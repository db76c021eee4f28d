"""What tests reach into inside a running in-process app: its FastAPI object, its model
manager, a fake model's backend (what it received and saw) and an upstream's replicas. One
place that knows where the app keeps them, so a test states what it looks at, not how."""

from __future__ import annotations

from typing import cast

from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmserver.backends.abilities import Replicated
from llmserver.backends.fake import FakeBackend
from llmserver.core.manager import ModelHandle, ModelManager
from llmserver.http.context import app_context


def app_of(client: TestClient) -> FastAPI:
    """The app behind ``client`` (to add a test-only route to it)."""
    return cast(FastAPI, client.app)


def models(client: TestClient) -> ModelManager:
    """The started app's model manager."""
    return app_context(app_of(client)).models


def handle(client: TestClient, model: str) -> ModelHandle:
    """The handle of ``model`` (an id, alias or role)."""
    return models(client).lookup(model)


def fake_backend(client: TestClient, model: str = "fake") -> FakeBackend:
    """The fake backend serving ``model``: what it received and saw."""
    backend = handle(client, model).backend
    assert isinstance(backend, FakeBackend), f"{model} is not on the fake backend"
    return backend


def replica_states(client: TestClient, model: str) -> dict[str, bool]:
    """Replica URL -> in rotation, for an upstream model."""
    backend = handle(client, model).backend
    assert isinstance(backend, Replicated), f"{model} has no replicas"
    return backend.replica_states()
