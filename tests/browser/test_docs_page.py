"""``/docs`` and ``/redoc`` in a real headless Chromium with no network: every request that
leaves loopback is blocked, and the pages must still render the API, with no key."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from support import RunningServer, run_server
from support.browser import LAUNCH_ARGS

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", *LAUNCH_ARGS, "--disable-dev-shm-usage"]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
#: the one remote address in ReDoc's bundle that a page load reaches for (a decoration)
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that requires a key for the API (the docs must open without one)."""
    tmp: Path = tmp_path_factory.mktemp("docs")
    config = {"models": [{"id": "fake", "backend": "fake"}]}
    with run_server(tmp, config, env={"LLMSERVER_API_KEY": "secret-key"}) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium package is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def offline_page(browser: Any, blocked: list[str]) -> Any:
    """A page on which every request outside loopback is aborted (and noted)."""
    page = browser.new_page()

    def guard(route: Any) -> None:
        host = urlsplit(route.request.url).hostname or ""
        scheme = urlsplit(route.request.url).scheme
        if scheme in ("data", "blob") or host in LOOPBACK:
            route.continue_()
        else:
            blocked.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    page.route("**/*", guard)
    return page


def test_swagger_ui_renders_offline_and_shows_chat_completions(
    server: RunningServer, browser: Any
) -> None:
    blocked: list[str] = []
    page = offline_page(browser, blocked)
    response = page.goto(f"{server.url}/docs")
    assert response is not None
    assert response.status == 200
    operation = page.locator(".opblock-summary-path", has_text="/v1/chat/completions").first
    operation.wait_for(state="visible", timeout=30_000)
    assert "post" in (page.locator(".opblock-post").first.get_attribute("class") or "")
    # the request schema is the real one: ChatCompletionRequest is among the schemas
    page.locator(".models").first.wait_for(state="visible", timeout=30_000)
    assert page.get_by_text("ChatCompletionRequest").count() >= 1
    assert blocked == [], f"the page reached outside loopback: {blocked}"
    page.close()


def test_redoc_renders_offline(server: RunningServer, browser: Any) -> None:
    blocked: list[str] = []
    page = offline_page(browser, blocked)
    response = page.goto(f"{server.url}/redoc")
    assert response is not None
    assert response.status == 200
    page.get_by_text("/v1/chat/completions").first.wait_for(state="attached", timeout=30_000)
    assert page.locator(".api-info").count() == 1  # ReDoc's own layout, not a blank page
    # ReDoc's script, fonts and styles are all local; its footer tries one remote logo, which
    # removes itself when it cannot load (offline), so nothing is left broken on the page
    assert all(entry == f"image {REDOC_LOGO}" for entry in blocked), blocked
    page.wait_for_timeout(500)
    assert page.locator('img[alt="redocly logo"]').count() == 0
    page.close()
