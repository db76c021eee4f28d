"""Property-based fuzzing of the rerank and score routes on the fake backend: whatever body
arrives, the answer is never a 5xx, an error is OpenAI's JSON error with a message, and the
server keeps ranking."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import fake_model, fake_settings, open_client

FIELDS = {
    "/v1/rerank": ["model", "query", "documents", "top_n", "return_documents", "rank_fields"],
    "/rerank": ["model", "query", "documents", "top_n", "truncate"],
    "/v2/rerank": ["model", "query", "documents", "top_n", "max_tokens_per_doc", "priority"],
    "/v1/score": ["model", "text_1", "text_2", "truncate", "truncate_prompt_tokens"],
}
TEXT = st.text(max_size=30)
LEAF = st.one_of(
    TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.sampled_from(["emb", "fake", "nope"]),
)
VALUE = st.recursive(
    LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(["text", "title"]), inner)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings_ = fake_settings(
        fake_model(), fake_model("emb", embedding_dimensions=8), rerank_max_documents=50
    )
    with open_client(settings_) as c:
        yield c


@pytest.mark.parametrize("route", sorted(FIELDS))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_body_makes_a_rerank_route_answer_5xx(
    client: TestClient, route: str, data: st.DataObject
) -> None:
    body = data.draw(
        st.one_of(st.dictionaries(st.sampled_from(FIELDS[route]), VALUE, max_size=6), VALUE),
        label="body",
    )
    text = json.dumps(body)
    resp = client.post(route, content=text, headers={"Content-Type": "application/json"})
    assert resp.status_code < 500, (text[:300], resp.text[:300])
    if resp.status_code >= 400:
        message = resp.json()["error"]["message"]
        assert isinstance(message, str)
        assert message
    ok = client.post("/v1/rerank", json={"model": "emb", "query": "q", "documents": ["a", "b"]})
    assert ok.status_code == 200
