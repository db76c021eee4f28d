"""In-process apps: a started ``TestClient`` for a ``Settings``, closed when the block ends."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from llmserver.app import create_app
from llmserver.config.settings import Settings


def is_ready(client: TestClient) -> bool:
    """Whether ``/ready`` answers 200 (every preloaded model is ready)."""
    return client.get("/ready").status_code == 200


def model_states(client: TestClient) -> dict[str, str]:
    """Each model's state as ``/v1/models`` lists it."""
    return {m["id"]: m["state"] for m in client.get("/v1/models").json()["data"]}


def done_loading(client: TestClient) -> bool:
    """Whether no model is loading any more (each is ready, unloaded or failed)."""
    return "loading" not in model_states(client).values()


@contextmanager
def open_client(
    settings: Settings,
    *,
    until: Callable[[TestClient], bool] | None = is_ready,
    raise_server_exceptions: bool = False,
    peer: str | None = None,
) -> Iterator[TestClient]:
    """A TestClient whose app is started (lifespan run), once ``until`` holds (by default:
    its models are ready; ``None`` does not wait). ``peer`` is the client's address."""
    address = ("testclient", 50000) if peer is None else (peer, 40000)
    client = TestClient(
        create_app(settings), raise_server_exceptions=raise_server_exceptions, client=address
    )
    with client:
        deadline = time.monotonic() + 10
        while until is not None and not until(client):
            if time.monotonic() > deadline:
                raise TimeoutError("the app's models never became ready")
            time.sleep(0.01)
        yield client
