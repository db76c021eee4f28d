"""Helpers for the browser tests (headless Chromium through Playwright): the page's fixed
names, a keyed server, a tab that records every URL it asked for, signing in, polling, and
screenshots for the docs. The fixtures that start them live in ``tests/browser/conftest.py``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from support.servers import RunningServer

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
