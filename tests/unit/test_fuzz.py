"""Property-based fuzzing of every route that takes a body: whatever arrives, the answer is never
a 5xx, always a JSON error in the route's shape, and the server keeps serving.

The bodies come from :mod:`support.fuzz`; ``test_fuzz_real_models`` throws the same at the real
models.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmserver.observability.logs import set_level
from support import fake_model, fake_settings, open_client
from support.fuzz import ROUTES, body, check_answer

#: the routes of every surface, and the admin routes, which only the fake server's tests reach
ADMIN = {"/admin/log-level": ["level"], "/v1/models/fake/load": []}


@pytest.fixture(scope="module")
def fuzz_client() -> Iterator[TestClient]:
    settings_ = fake_settings(
        fake_model("fake", aliases=["f"], context_size=256),
        fake_model("emb", embedding_dimensions=8),
        default_model="fake",
        max_body_bytes=200_000,
    )
    with open_client(settings_) as client:
        level = logging.getLogger().level
        yield client
    set_level(logging.getLevelName(level))  # the fuzzer may have changed it


@pytest.mark.parametrize("route", sorted({**ROUTES, **ADMIN}))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_body_makes_a_route_answer_5xx(
    fuzz_client: TestClient, route: str, data: st.DataObject
) -> None:
    text = data.draw(body({**ROUTES, **ADMIN}[route], ["fake", "f", "emb"]), label="body")
    method = "PUT" if route == "/admin/log-level" else "POST"
    resp = fuzz_client.request(
        method, route, content=text.encode("utf-8", "surrogatepass"),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    check_answer(route, text, resp)
    assert fuzz_client.get("/health").status_code == 200
