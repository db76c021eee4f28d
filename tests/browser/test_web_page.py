"""The web page in a real browser (headless Chromium) against real servers with the default
model: sign-in, the playground's streamed reply, its token counts and its stop button, the live
dashboard, what a non-admin key sees, escaping, and that the page talks to its own origin only."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from typing import Any

import httpx
import openai
import pytest

from llmserver.config.settings import DEFAULT_MODEL_ID
from support import RunningServer
from support.browser import (
    ADMIN_NAME,
    HOSTILE_ID,
    USER_NAME,
    KeyedServer,
    Tab,
    screenshot,
    sign_in,
    until,
)

pytestmark = pytest.mark.browser

MODEL = DEFAULT_MODEL_ID


def _usage(server: KeyedServer, key: str, model: str) -> tuple[int, int, int]:
    """Requests, prompt and completion tokens of ``key`` on ``model``, all days."""
    rows = server.admin_get("/admin/usage")["data"]
    mine = [r for r in rows if r["key_name"] == key and r["model"] == model]
    return (
        sum(r["requests"] for r in mine),
        sum(r["prompt_tokens"] for r in mine),
        sum(r["completion_tokens"] for r in mine),
    )


def _reply_text(tab: Tab) -> str:
    text: str = tab.page.locator("#conversation .turn.assistant .text").last.inner_text()
    return text


def test_browser_get_of_root_goes_to_the_page_and_api_clients_still_get_json(
    keyed_server: KeyedServer, open_tab: Any
) -> None:
    tab = open_tab(keyed_server.url)
    tab.page.goto(f"{keyed_server.url}/")
    assert tab.page.url == f"{keyed_server.url}/ui/"
    headers = {"Authorization": f"Bearer {keyed_server.admin_key}"}
    plain = httpx.get(f"{keyed_server.url}/", headers=headers)
    assert plain.status_code == 200
    assert plain.json()["name"] == "llmserver"
    page = httpx.get(f"{keyed_server.url}/ui/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp


def test_sign_in_with_a_key_and_a_wrong_key_is_refused_with_a_message(
    keyed_server: KeyedServer, open_tab: Any
) -> None:
    tab = open_tab(keyed_server.url)
    page = tab.page
    page.goto(f"{keyed_server.url}/ui/")
    page.locator("#sign-in").wait_for(state="visible")
    assert page.locator("#playground").is_hidden()
    page.fill("#key", "sk-not-a-real-key")
    page.click("#sign-in-button")
    error = page.locator("#sign-in-error")
    until(lambda: error.inner_text())
    assert "Key refused" in error.inner_text()
    assert "Incorrect API key" in error.inner_text()
    assert page.locator("#playground").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0

    page.fill("#key", keyed_server.admin_key)
    page.click("#sign-in-button")
    page.locator("#playground").wait_for(state="visible")
    assert page.locator("#who").inner_text() == f"Signed in as {ADMIN_NAME} (admin)"
    assert page.locator("#sign-in-error").inner_text() == ""
    # the key lives in this tab's session storage only, and is never rendered
    assert page.evaluate("sessionStorage.getItem('llmserver.key')") == keyed_server.admin_key
    assert page.evaluate("localStorage.length") == 0
    assert keyed_server.admin_key not in page.content()
    assert page.input_value("#key") == ""
    # a reload keeps the session; signing out forgets the key
    page.reload()
    page.locator("#playground").wait_for(state="visible")
    page.click("#sign-out")
    page.locator("#sign-in").wait_for(state="visible")
    assert page.evaluate("sessionStorage.length") == 0


def test_playground_streams_a_reply_and_shows_the_token_counts_the_api_counted(
    keyed_server: KeyedServer, open_tab: Any
) -> None:
    tab = open_tab(keyed_server.url)
    page = tab.page
    sign_in(tab, keyed_server.admin_key)
    page.select_option("#model", MODEL)
    before = _usage(keyed_server, ADMIN_NAME, MODEL)
    page.fill("#system", "You are a helpful assistant.")
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "24")
    page.fill("#seed", "7")
    page.fill("#prompt", "Tell me about the sea.")
    # record the reply's length at every change of the page while it streams
    page.evaluate(
        """() => {
          window.__lengths = [];
          new MutationObserver(() => {
            const turns = document.querySelectorAll('#conversation .turn.assistant .text');
            if (turns.length) window.__lengths.push(turns[turns.length - 1].textContent.length);
          }).observe(document.getElementById('conversation'),
                     {childList: true, subtree: true, characterData: true});
        }"""
    )
    page.click("#send")
    page.locator("#reply-stats[data-state=done]").wait_for()
    lengths = page.evaluate("window.__lengths")
    growing = sorted(set(lengths))
    assert len(growing) >= 3, f"the reply did not grow while streaming: {lengths}"
    assert lengths == sorted(lengths), "the reply's text only grows"
    reply = _reply_text(tab)
    assert reply
    assert len(reply) == growing[-1]

    stats = page.locator("#reply-stats")
    prompt_tokens = int(stats.get_attribute("data-prompt-tokens") or "-1")
    completion_tokens = int(stats.get_attribute("data-completion-tokens") or "-1")
    after = until(lambda: (u := _usage(keyed_server, ADMIN_NAME, MODEL))[0] == before[0] + 1 and u)
    assert prompt_tokens == after[1] - before[1] > 0
    assert completion_tokens == after[2] - before[2] > 0
    text = stats.inner_text()
    assert f"prompt tokens {prompt_tokens}" in text
    assert f"completion tokens {completion_tokens}" in text
    assert "time to first token" in text
    if completion_tokens > 1:
        assert "tokens/s" in text

    # a second turn sends the conversation so far
    page.fill("#prompt", "And about rivers?")
    page.click("#copy-python")
    python = page.locator("#code").inner_text()
    assert "from openai import OpenAI" in python
    assert f'model="{MODEL}"' in python
    assert "Tell me about the sea." in python
    assert "And about rivers?" in python
    assert "temperature=0" in python
    assert "max_tokens=24" in python
    assert "seed=7" in python
    assert keyed_server.admin_key not in python
    page.click("#copy-curl")
    curl = page.locator("#code").inner_text()
    assert curl.startswith(f"curl {keyed_server.url}/v1/chat/completions")
    assert "$LLMSERVER_API_KEY" in curl
    assert keyed_server.admin_key not in curl
    body = json.loads(curl.split("-d '", 1)[1].rsplit("'", 1)[0].replace("'\\''", "'"))
    assert body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert body["messages"][-1] == {"role": "user", "content": "And about rivers?"}
    assert body["stream_options"] == {"include_usage": True}
    # the copied command does what the page did
    run = httpx.post(
        f"{keyed_server.url}/v1/chat/completions",
        json={**body, "stream": False},
        headers={"Authorization": f"Bearer {keyed_server.admin_key}"},
        timeout=300,
    )
    assert run.status_code == 200, run.text
    # JSON mode and a schema go into response_format
    page.select_option("#format", "json_schema")
    page.fill("#stop-seqs", "END\nSTOP")
    page.click("#copy-curl")
    curl = page.locator("#code").inner_text()
    body = json.loads(curl.split("-d '", 1)[1].rsplit("'", 1)[0].replace("'\\''", "'"))
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["answer"]
    assert body["stop"] == ["END", "STOP"]
    page.select_option("#format", "text")
    page.fill("#stop-seqs", "")
    page.click("#copy-python")
    screenshot(page, "ui-playground.png")


def test_stop_button_ends_the_stream_and_frees_the_servers_slot(
    keyed_server: KeyedServer, open_tab: Any
) -> None:
    tab = open_tab(keyed_server.url)
    page = tab.page
    sign_in(tab, keyed_server.admin_key)
    page.select_option("#model", MODEL)
    page.fill("#max-tokens", "2000")
    page.fill("#prompt", "Write a very long story about a lighthouse keeper.")

    # the reply may not end by itself before the button is pressed: ignore end-of-sequence,
    # so only a cancellation ends it before 2000 tokens
    def add_ignore_eos(route: Any) -> None:
        body = json.loads(route.request.post_data)
        route.continue_(post_data=json.dumps({**body, "ignore_eos": True}))

    page.route("**/v1/chat/completions", add_ignore_eos)
    before = _usage(keyed_server, ADMIN_NAME, MODEL)
    page.click("#send")
    until(lambda: len(_reply_text(tab)) > 0)
    assert keyed_server.model_status(MODEL)["slots_in_use"] == 1
    page.click("#stop")
    page.locator("#reply-stats[data-state=stopped]").wait_for()
    assert page.locator("#send").is_enabled()
    assert page.locator("#stop").is_disabled()
    assert page.locator("#conversation .turn.assistant.stopped").count() == 1
    # the server cancelled the generation: the slot is free long before 2000 tokens
    until(lambda: keyed_server.model_status(MODEL)["slots_in_use"] == 0)
    after = until(lambda: (u := _usage(keyed_server, ADMIN_NAME, MODEL))[0] == before[0] + 1 and u)
    assert 0 < after[2] - before[2] < 2000


def _cell(tab: Tab, model: str, name: str) -> str:
    row = tab.page.locator("#models-table tbody tr").filter(
        has=tab.page.locator("td.model-id", has_text=model)
    )
    text: str = row.first.locator(f"td.{name}").inner_text()
    return text


def _ui_usage(tab: Tab) -> dict[tuple[str, str], list[int]]:
    rows = tab.page.evaluate(
        """() => [...document.querySelectorAll('#usage-table tbody tr[data-key]')].map(tr =>
             [tr.dataset.key, tr.dataset.model,
              [...tr.querySelectorAll('td.num')].map(td => parseInt(td.textContent, 10))])"""
    )
    return {(key, model): cells for key, model, cells in rows}


def _api_usage(server: KeyedServer, today: str) -> dict[tuple[str, str], list[int]]:
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * 8)
    for row in server.admin_get("/admin/usage")["data"]:
        counts = [row[c] for c in ("requests", "prompt_tokens", "completion_tokens")]
        counts.append(row["total_tokens"])
        cells = totals[(row["key_name"], row["model"])]
        for i, value in enumerate(counts):
            cells[4 + i] += value
            if row["day"] == today:
                cells[i] += value
    return dict(totals)


def test_dashboard_is_live_slots_move_and_usage_matches_the_admin_api(
    keyed_server: KeyedServer, open_tab: Any
) -> None:
    tab = open_tab(keyed_server.url)
    page = tab.page
    sign_in(tab, keyed_server.admin_key)
    page.click("#tab-dashboard")
    page.locator("#live[data-state=live]").wait_for()
    until(lambda: _cell(tab, MODEL, "state-cell") == "ready")
    assert _cell(tab, MODEL, "slots") == "0 / 4"

    client = openai.OpenAI(base_url=f"{keyed_server.url}/v1", api_key=keyed_server.admin_key)
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"secret prompt {i}: count to fifty"}],
                max_tokens=48,
                extra_body={"ignore_eos": True},
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    seen: set[str] = set()
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()

    def busy() -> bool:
        seen.add(_cell(tab, MODEL, "slots"))
        return any(s != "0 / 4" for s in seen)

    until(busy)
    rates = {_cell(tab, MODEL, "rate")}

    def rate_moved() -> bool:
        rates.add(_cell(tab, MODEL, "rate"))
        return any(r not in ("0", "–") for r in rates)

    until(rate_moved)
    screenshot(page, "ui-dashboard.png", full_page=True)
    for thread in threads:
        thread.join()
    assert errors == []
    until(lambda: _cell(tab, MODEL, "slots") == "0 / 4")
    assert any(s in seen for s in ("1 / 4", "2 / 4", "3 / 4"))
    # the requests are listed, with their key and tokens but never their text
    until(lambda: page.locator("#recent-table tbody tr").count() >= 3)
    recent = page.locator("#recent-table").inner_text()
    assert ADMIN_NAME in recent
    assert "/v1/chat/completions" in recent
    assert "secret prompt" not in page.content()
    # tokens per second falls to 0 once the model is idle
    until(lambda: _cell(tab, MODEL, "rate") == "0")
    # the usage table is GET /admin/usage summed per key and model, today and over 30 days
    today = page.evaluate("window.llmserverSnapshot().usage.today")
    until(lambda: _ui_usage(tab) == _api_usage(keyed_server, today) and _ui_usage(tab))
    assert page.locator("#batches").is_hidden()  # no batch jobs on this server yet
    chart_bars = page.locator("#usage-chart svg rect")
    assert chart_bars.count() >= 1
    assert ADMIN_NAME in page.locator("#usage-chart .legend").inner_text()


def test_admin_actions_are_confirmed_first_and_change_the_server(
    keyed_server: KeyedServer, open_tab: Any
) -> None:
    tab = open_tab(keyed_server.url)
    page = tab.page
    sign_in(tab, keyed_server.admin_key)
    page.click("#tab-dashboard")
    page.locator("#admin-panel").wait_for(state="visible")
    until(lambda: _cell(tab, HOSTILE_ID, "state-cell") == "ready")

    def action(name: str) -> Any:
        row = page.locator("#models-table tbody tr").filter(
            has=page.locator("td.model-id", has_text=HOSTILE_ID)
        )
        return row.first.locator(f"button.{name}")

    action("unload").click()
    page.locator("#confirm").wait_for(state="visible")
    assert HOSTILE_ID in page.locator("#confirm-text").inner_text()
    page.click("#confirm-cancel")  # nothing happens
    assert keyed_server.model_status(HOSTILE_ID)["state"] == "ready"
    action("unload").click()
    page.click("#confirm-ok")
    until(lambda: keyed_server.model_status(HOSTILE_ID)["state"] == "unloaded")
    until(lambda: _cell(tab, HOSTILE_ID, "state-cell") == "unloaded")
    action("load").click()
    page.click("#confirm-ok")
    until(lambda: keyed_server.model_status(HOSTILE_ID)["state"] == "ready")

    page.select_option("#log-level", "debug")
    page.click("#apply-log-level")
    page.click("#confirm-ok")
    until(lambda: keyed_server.admin_get("/admin/log-level")["level"] == "debug")
    page.select_option("#log-level", "info")
    page.click("#apply-log-level")
    page.click("#confirm-ok")
    until(lambda: keyed_server.admin_get("/admin/log-level")["level"] == "info")
    assert page.locator("#action-result").inner_text() == "log level: info"


def test_a_non_admin_key_sees_its_own_usage_only_and_no_admin_actions(
    keyed_server: KeyedServer, open_tab: Any
) -> None:
    admin = {"Authorization": f"Bearer {keyed_server.admin_key}"}
    user = {"Authorization": f"Bearer {keyed_server.user_key}"}
    ask = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    for headers in (admin, user):
        response = httpx.post(
            f"{keyed_server.url}/v1/chat/completions", json=ask, headers=headers, timeout=300
        )
        assert response.status_code == 200
    tab = open_tab(keyed_server.url)
    page = tab.page
    sign_in(tab, keyed_server.user_key)
    # the key's name is markup, shown as text
    assert page.locator("#who").inner_text() == f"Signed in as {USER_NAME}"
    assert page.locator("#who b").count() == 0
    page.click("#tab-dashboard")
    page.locator("#live[data-state=live]").wait_for()
    until(lambda: _ui_usage(tab))
    assert {key for key, _ in _ui_usage(tab)} == {USER_NAME}
    assert page.locator("#usage-title").inner_text() == "Your usage"
    until(lambda: page.locator("#recent-table tbody tr").count() >= 1)
    recent_keys = page.evaluate(
        "[...document.querySelectorAll('#recent-table tbody tr td:nth-child(2)')]"
        ".map(td => td.textContent)"
    )
    assert set(recent_keys) == {USER_NAME}
    assert ADMIN_NAME not in page.locator("#usage-table").inner_text()
    assert page.locator("#admin-panel").is_hidden()
    assert page.locator("#models-table button").count() == 0
    assert page.locator("#models-table th.admin-only").is_hidden()
    snapshot = page.evaluate("window.llmserverSnapshot()")
    assert snapshot["caller"] == {"name": USER_NAME, "admin": False, "authenticated": True}
    assert "log_level" not in snapshot["server"]
    # whatever the page shows, the server refuses the admin endpoints to this key
    url = keyed_server.url
    refused = [
        httpx.put(f"{url}/admin/log-level", json={"level": "debug"}, headers=user),
        httpx.get(f"{url}/admin/usage", headers=user),
        httpx.post(f"{url}/v1/models/{MODEL}/unload", headers=user),
        httpx.post(f"{url}/v1/models/{MODEL}/load", headers=user),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert {r.json()["error"]["code"] for r in refused} == {"admin_required"}
    assert keyed_server.model_status(MODEL)["state"] == "ready"


def test_markup_in_a_model_id_renders_as_text_and_no_request_leaves_the_origin(
    keyed_server: KeyedServer, open_tab: Any
) -> None:
    tab = open_tab(keyed_server.url)
    page = tab.page
    sign_in(tab, keyed_server.admin_key)
    options = page.evaluate("[...document.querySelectorAll('#model option')].map(o => o.value)")
    assert HOSTILE_ID in options
    page.click("#tab-dashboard")
    until(lambda: _cell(tab, HOSTILE_ID, "state-cell"))
    cell = page.locator("#models-table td.model-id", has_text=HOSTILE_ID).first
    assert cell.inner_text().splitlines()[0] == HOSTILE_ID
    assert page.locator("#models-table img, #models-table script").count() == 0
    assert page.evaluate("window.__pwned") is None
    # the Content-Security-Policy forbids inline script and other origins, whatever the page did
    blocked = page.evaluate(
        """async (other) => {
          const s = document.createElement('script');
          s.textContent = 'window.__inline = 1';
          document.body.appendChild(s);
          let fetched = true;
          try { await fetch(other); } catch (_) { fetched = false; }
          return {inline: window.__inline === undefined, fetched};
        }""",
        "http://127.0.0.2:9/",
    )
    assert blocked == {"inline": True, "fetched": False}
    # the blocked fetch never left the browser; nothing else did either
    assert tab.foreign() == []
    assert all(u.startswith(keyed_server.url + "/") for u in tab.requests)
    assert len(tab.requests) > 5


def test_on_loopback_without_keys_there_is_no_sign_in_and_a_phone_layout_fits(
    default_server: RunningServer, open_tab: Any
) -> None:
    tab = open_tab(default_server.url, width=390, height=844)
    page = tab.page
    page.goto(f"{default_server.url}/ui/")
    page.locator("#playground").wait_for(state="visible")
    assert page.locator("#sign-in").is_hidden()
    assert "No API keys" in page.locator("#who").inner_text()
    page.click("#tab-dashboard")
    until(lambda: _cell(tab, MODEL, "state-cell") == "ready")
    page.click("#tab-playground")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
