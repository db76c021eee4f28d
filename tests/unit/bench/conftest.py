"""Fixtures for the bench tests: mock OpenAI servers on free loopback ports."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web

from llmserver.bench.mock_server import MockConfig, create_app


class MockServerThread:
    """The mock server running in its own thread and event loop."""

    def __init__(self, config: MockConfig) -> None:
        self._config = config
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(create_app(self._config), access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def start(self) -> str:
        """Start serving; returns the base URL."""
        self._thread.start()
        assert self._ready.wait(10), "mock server did not start"
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def mock_server() -> Iterator[Callable[..., str]]:
    """Start mock servers with the given MockConfig fields; returns their base URLs."""
    servers: list[MockServerThread] = []

    def start(**fields: object) -> str:
        server = MockServerThread(MockConfig(**fields))  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
