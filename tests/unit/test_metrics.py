"""``/metrics`` after a known set of requests: exact counter increments, filled histograms, gauges
read live from the limiters, bounded labels."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from llmserver.app import create_app
from llmserver.config.settings import load_settings
from llmserver.errors import AuthenticationError
from support import fake_model, fake_settings, free_port, open_client
from support.fake import app_of, handle
from support.mock_upstream import instant, serve

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "count my tokens"}]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def slow_client() -> Iterator[TestClient]:
    """One slot, no queue, 20 ms per token: a second request while one streams gets a 429."""
    settings = fake_settings(fake_model(max_concurrent=1, token_delay_s=0.02))
    with open_client(settings) as client:

        async def needs_key() -> None:
            raise AuthenticationError("Incorrect API key provided.")

        app_of(client).add_api_route("/test/needs-key", needs_key)
        handle(client, "fake").limiter.max_queue = 0
        yield client


def test_metrics_after_known_requests(slow_client: TestClient) -> None:
    client = slow_client
    before = scrape(client)
    usages = []
    for seed in (1, 2):
        resp = client.post(CHAT, json={"model": "fake", "messages": USER, "seed": seed})
        assert resp.status_code == 200
        usages.append(resp.json()["usage"])
    # the same request streamed, without include_usage: its usage must still be counted
    stream_body = {"model": "fake", "messages": USER, "seed": 1, "stream": True}
    with client.stream("POST", CHAT, json=stream_body) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("data: ")  # the slot is taken now
        during = scrape(client)
        assert value(during, "llmserver_slots_in_use", model="fake") == 1
        busy = client.post(CHAT, json={"model": "fake", "messages": USER})
        assert busy.status_code == 429
        assert busy.json()["error"]["code"] == "concurrency_limit_exceeded"
        rest = list(lines)
    assert "data: [DONE]" in rest
    usages.append(usages[0])
    assert client.get("/test/needs-key").status_code == 401

    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = {"model": "fake", "endpoint": CHAT}
    assert delta("llmserver_requests_total", **route, status="200") == 3
    assert delta("llmserver_requests_total", **route, status="429") == 1
    unknown = {"model": "unknown", "endpoint": "/test/needs-key", "status": "401"}
    assert delta("llmserver_requests_total", **unknown) == 1
    assert delta("llmserver_rejections_total", reason="concurrency") == 1
    assert delta("llmserver_rejections_total", reason="auth") == 1
    assert delta("llmserver_rejections_total", reason="rate") == 0
    prompt = sum(u["prompt_tokens"] for u in usages)
    completion = sum(u["completion_tokens"] for u in usages)
    assert delta("llmserver_prompt_tokens_total", model="fake") == prompt
    assert delta("llmserver_completion_tokens_total", model="fake") == completion
    for hist in ("time_to_first_token", "time_per_output_token", "e2e_request_latency"):
        name = f"llmserver_{hist}_seconds"
        assert delta(f"{name}_count", model="fake") == 3, name
        assert delta(f"{name}_sum", model="fake") > 0, name
    assert value(after, "llmserver_slots_in_use", model="fake") == 0
    assert value(after, "llmserver_requests_waiting", model="fake") == 0
    assert value(after, "llmserver_slots", model="fake") == 1
    assert value(after, "llmserver_model_state", model="fake", state="ready") == 1
    assert value(after, "llmserver_model_state", model="fake", state="loading") == 0


def test_labels_stay_bounded(client: TestClient) -> None:
    client.get("/no/such/path-12345")
    client.post(CHAT, json={"model": "client-made-up-model", "messages": USER})
    client.get("/v1/models/f")
    text = client.get("/metrics").text
    assert "path-12345" not in text
    assert "client-made-up-model" not in text
    samples = scrape(client)
    not_found = {"model": "unknown", "endpoint": "other", "status": "404"}
    assert value(samples, "llmserver_requests_total", **not_found) == 1
    assert value(
        samples,
        "llmserver_requests_total",
        model="unknown",
        endpoint="/v1/models/{model_id:path}",
        status="200",
    )
    assert value(samples, "llmserver_requests_total", model="unknown", endpoint=CHAT, status="404")


def test_replica_health_gauge() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with serve(instant()) as live:
        models = [{"id": "up", "url": [dead, live.base_url], "probe_interval_s": 60}]
        with open_client(load_settings({"models": models})) as client:
            samples = scrape(client)
    up = "llmserver_upstream_replica_up"
    assert value(samples, up, model="up", replica=dead) == 0
    assert value(samples, up, model="up", replica=live.base_url) == 1


def test_two_apps_have_separate_registries() -> None:
    settings = fake_settings()
    with open_client(settings) as first, open_client(settings) as second:
        first.post(CHAT, json={"model": "fake", "messages": USER})
        one = scrape(first)
        two = scrape(second)
        route = {"model": "fake", "endpoint": CHAT, "status": "200"}
        assert value(one, "llmserver_requests_total", **route) == 1
        assert value(two, "llmserver_requests_total", **route) == 0
    assert create_app(settings) is not create_app(settings)
