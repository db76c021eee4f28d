"""The web page's server side on the fake backend: its files and headers, ``GET /`` content
negotiation, the dashboard snapshot and event stream and what each key sees in them, and the
recent-requests ring with its rolling figures."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from fastapi.testclient import TestClient

import llmserver.ui
from llmserver.core.caller import Caller
from llmserver.core.usage import Usage
from llmserver.http.context import app_context, attach_context
from llmserver.http.middleware.browser import wants_html
from llmserver.jobs.batches import BatchJobs
from llmserver.observability.logs import AccessRecord, FinishedRequest
from llmserver.observability.recent import Recent, percentile
from llmserver.security.keys import create_key
from llmserver.ui import MEDIA_TYPES
from support import fake_model, fake_settings, open_client

CHAT_PATH = "/v1/chat/completions"
CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Any]:
    """An admin key and two plain keys, one limited to ``fake``."""
    path = tmp_path / "keys.json"
    return {
        "path": path,
        "admin": create_key(path, "admin", admin=True),
        "alice": create_key(path, "alice", models=["fake"]),
        "bob": create_key(path, "bob"),
    }


@pytest.fixture
def keyed(keys: dict[str, Any], tmp_path: Path) -> Iterator[TestClient]:
    """Models ``fake`` and ``other``, keys required, a usage database of its own."""
    settings = fake_settings(
        fake_model("fake"),
        fake_model("other"),
        keys_file=keys["path"],
        usage_db=str(tmp_path / "usage.sqlite3"),
    )
    with open_client(settings) as c:
        yield c


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_every_page_file_is_served_without_a_key_with_a_strict_csp(keyed: TestClient) -> None:
    for name, media in MEDIA_TYPES.items():
        response = keyed.get(f"/ui/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == media
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "connect-src 'self'" in csp
        assert "'unsafe-inline'" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    index = keyed.get("/ui/")
    assert index.status_code == 200
    assert '<script type="module" src="/ui/app.js">' in index.text
    assert "<script>" not in index.text  # no inline script at all
    assert keyed.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
    assert keyed.get("/ui/secrets.json").status_code == 404
    assert keyed.get("/ui/..%2Fapp.py").status_code == 404


def test_root_redirects_browsers_only(keyed: TestClient, keys: dict[str, Any]) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = keyed.get("/", headers={"Accept": browser}, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/"
    for accept in ("*/*", "application/json", "", "text/html;q=0"):
        response = keyed.get("/", headers={"Accept": accept, **_bearer(keys["admin"])})
        assert response.status_code == 200, accept
        assert response.json()["name"] == "llmserver"
    assert wants_html("text/html")
    assert wants_html("TEXT/HTML; q=0.5")
    assert not wants_html("text/html;q=0")
    assert not wants_html("text/plain, */*")


def test_the_data_endpoints_need_a_key(keyed: TestClient) -> None:
    for path in ("/dashboard/snapshot", "/dashboard/events"):
        response = keyed.get(path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "missing_api_key"
        wrong = keyed.get(path, headers=_bearer("sk-wrong"))
        assert wrong.status_code == 401


def test_an_admin_sees_everyone_and_a_key_sees_only_itself(
    keyed: TestClient, keys: dict[str, Any]
) -> None:
    for name in ("admin", "alice", "bob"):
        assert keyed.post("/v1/chat/completions", json=CHAT, headers=_bearer(keys[name])).is_success
    other = {**CHAT, "model": "other"}
    assert keyed.post("/v1/chat/completions", json=other, headers=_bearer(keys["bob"])).is_success

    admin = keyed.get("/dashboard/snapshot", headers=_bearer(keys["admin"])).json()
    assert admin["caller"] == {"name": "admin", "admin": True, "authenticated": True}
    assert admin["server"]["log_level"]
    assert [m["id"] for m in admin["models"]] == ["fake", "other"]
    assert {r["key_name"] for r in admin["usage"]["rows"]} == {"admin", "alice", "bob"}
    assert {r["key_name"] for r in admin["recent"]} >= {"admin", "alice", "bob"}
    assert admin["batches"] == []  # the batch jobs are the source; none created yet

    alice = keyed.get("/dashboard/snapshot", headers=_bearer(keys["alice"])).json()
    assert alice["caller"] == {"name": "alice", "admin": False, "authenticated": True}
    assert "log_level" not in alice["server"]
    assert [m["id"] for m in alice["models"]] == ["fake"]  # the models it may use
    assert {r["key_name"] for r in alice["usage"]["rows"]} == {"alice"}
    assert {r["key_name"] for r in alice["recent"]} == {"alice"}
    bob = keyed.get("/dashboard/snapshot", headers=_bearer(keys["bob"])).json()
    assert {(r["key_name"], r["model"]) for r in bob["usage"]["rows"]} == {
        ("bob", "fake"),
        ("bob", "other"),
    }
    # no text of any request anywhere in the snapshot
    assert b'"hi"' not in orjson.dumps(admin)


def test_usage_rows_match_the_admin_usage_endpoint(keyed: TestClient, keys: dict[str, Any]) -> None:
    for name in ("admin", "bob"):
        keyed.post("/v1/chat/completions", json=CHAT, headers=_bearer(keys[name]))
    snap = keyed.get("/dashboard/snapshot", headers=_bearer(keys["admin"])).json()
    usage = keyed.get("/admin/usage", headers=_bearer(keys["admin"])).json()["data"]
    assert snap["usage"]["rows"] == usage
    assert snap["usage"]["days"] == 30
    assert snap["usage"]["today"] == usage[0]["day"]


def test_the_event_stream_sends_snapshots(keyed: TestClient, keys: dict[str, Any]) -> None:
    headers = _bearer(keys["alice"])
    with keyed.stream("GET", "/dashboard/events?interval=0.25", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        events: list[dict[str, Any]] = []
        name = None
        for line in lines:
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                assert name == "snapshot"
                events.append(orjson.loads(line[6:]))
                if len(events) == 2:
                    break
    assert all(e["object"] == "dashboard.snapshot" for e in events)
    assert events[0]["caller"]["name"] == "alice"
    bad = keyed.get("/dashboard/events?interval=0", headers=headers)
    assert bad.status_code == 400


def test_without_keys_everyone_is_admin_on_the_dashboard(tmp_path: Path) -> None:
    with open_client(fake_settings(usage_db=str(tmp_path / "usage.sqlite3"))) as c:
        assert c.post("/v1/chat/completions", json=CHAT).is_success
        snap = c.get("/dashboard/snapshot").json()
        assert snap["caller"] == {"name": None, "admin": True, "authenticated": False}
        assert [r["key_name"] for r in snap["usage"]["rows"]] == ["anonymous"]
        assert snap["recent"][0]["endpoint"] == "/v1/chat/completions"
        assert snap["recent"][0]["key_name"] is None


# -- the ring and the rolling figures ------------------------------------------------------


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _record(model: str, completion: int, key: str | None = "k") -> AccessRecord:
    return AccessRecord(key_name=key, model=model, usage=Usage(3, completion))


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 90) == 90
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7
    assert percentile([], 50) is None


def test_ring_keeps_work_not_page_traffic_and_filters_by_key() -> None:
    recent = Recent(clock=Clock())
    for path, status in (
        ("/v1/chat/completions", 200),
        ("/dashboard/events", 200),
        ("/ui/app.js", 200),
        ("/health", 200),
        ("/", 303),
        ("/v1/models", 200),
    ):
        record = _record("m", 1, key="a" if path.startswith("/v1/chat") else "b")
        recent.request_started(record)
        recent.request_finished(FinishedRequest(record, "GET", path, path, status, 0.01))
    assert [s.endpoint for s in recent.last()] == ["/v1/models", "/v1/chat/completions"]
    assert [s.endpoint for s in recent.last("a")] == ["/v1/chat/completions"]
    assert recent.last("nobody") == []
    assert recent.last("") == []


def test_window_counts_429s_and_errors_and_forgets_old_requests() -> None:
    clock = Clock()
    recent = Recent(clock=clock, window_s=60)
    for status, latency in ((200, 0.1), (200, 0.3), (429, 0.0), (500, 0.0), (499, 0.0)):
        record = _record("m", 2)
        done = FinishedRequest(record, "POST", CHAT_PATH, CHAT_PATH, status, latency)
        recent.request_finished(done)
    window = recent.window(["m", "idle"])
    assert window["m"].requests == 5
    assert window["m"].rejected == 1
    assert window["m"].errors == 1  # the 500; a client that left is no error
    assert window["m"].latency_ms == {"p50": 100.0, "p90": 300.0, "p99": 300.0}
    assert window["idle"].requests == 0
    assert window["idle"].latency_ms["p50"] is None
    clock.now += 61
    assert recent.window(["m"])["m"].requests == 0


def test_tokens_per_second_counts_running_streams_and_falls_to_zero_when_idle() -> None:
    clock = Clock()
    recent = Recent(clock=clock, rate_window_s=10)
    running = _record("m", 0)
    recent.request_started(running)
    assert recent.window(["m"])["m"].tokens_per_s == 0
    for _ in range(5):  # 20 tokens a second while it streams
        clock.now += 1
        running.usage.completion_tokens += 20
        rate = recent.window(["m"])["m"].tokens_per_s
    assert rate == 20
    recent.request_finished(FinishedRequest(running, "POST", CHAT_PATH, CHAT_PATH, 200, 5))
    clock.now += 1
    assert recent.window(["m"])["m"].tokens_per_s > 0  # still within the window
    clock.now += 11
    recent.window(["m"])
    clock.now += 1
    assert recent.window(["m"])["m"].tokens_per_s == 0


class Jobs:
    """A batch source as the batch jobs will provide one: each caller sees its own jobs."""

    def __init__(self) -> None:
        self.callers: list[str | None] = []

    async def progress(self, caller: Caller) -> list[dict[str, Any]]:
        self.callers.append(caller.name)
        job = {"id": "batch_1", "status": "in_progress", "model": "fake", "total": 150}
        return [{**job, "completed": 40, "failed": 1, "created_at": "2026-12-01T20:00:00Z"}]


def test_batches_appear_once_a_batch_source_exists(keyed: TestClient, keys: dict[str, Any]) -> None:
    jobs = Jobs()
    app: Any = keyed.app
    attach_context(app, dataclasses.replace(app_context(app), jobs=cast(BatchJobs, jobs)))
    snap = keyed.get("/dashboard/snapshot", headers=_bearer(keys["alice"])).json()
    assert snap["batches"][0]["id"] == "batch_1"
    assert snap["batches"][0]["completed"] == 40
    assert jobs.callers == ["alice"]


def test_every_file_in_the_static_folder_is_served_and_every_served_file_exists() -> None:
    folder = Path(llmserver.ui.__file__).parent / "static"
    assert {p.name for p in folder.iterdir()} == set(MEDIA_TYPES)
