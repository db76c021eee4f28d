"""Rerank and score on the fake backend: the three wire shapes, ordering, ``top_n``,
``return_documents``, limits and bad input, masking, prompts and capabilities."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.config.model_configs import LlamaCppConfig
from llmserver.config.settings import SettingsError, default_model_path
from llmserver.security.keys import create_key
from support import fake_model, fake_settings, open_client
from support.fake import fake_backend

DOCS = ["the cat sat", "stock prices fell", "a dog barked", "rain is coming"]


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A chat model ``fake`` (the default), an embedding model ``emb`` with e5 prompts and
    one without prompts that masks personal data (``plain``)."""
    settings = fake_settings(
        fake_model(),
        fake_model(
            "emb",
            embedding_dimensions=16,
            prompts={"query": "query: ", "document": "passage: ", "topic": "topic: "},
        ),
        fake_model("plain", embedding_dimensions=16, mask_pii=True),
        rerank_max_documents=8,
        rerank_max_document_chars=200,
    )
    with open_client(settings) as c:
        yield c


def vectors(client: TestClient, texts: list[str]) -> list[list[float]]:
    body = client.post("/v1/embeddings", json={"model": "emb", "input": texts}).json()
    return [d["embedding"] for d in body["data"]]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def rerank(client: TestClient, path: str = "/v1/rerank", **body: Any) -> Any:
    body.setdefault("model", "emb")
    body.setdefault("query", "where is the cat")
    body.setdefault("documents", DOCS)
    return client.post(path, json=body)


def test_v1_rerank_orders_by_the_cosine_of_prompted_vectors(client: TestClient) -> None:
    resp = rerank(client)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "emb"
    assert body["scorer"] == "bi-encoder"
    query = vectors(client, ["query: where is the cat"])[0]
    docs = vectors(client, [f"passage: {d}" for d in DOCS])
    expected = [cosine(query, d) for d in docs]
    results = body["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2, 3]
    assert [r["relevance_score"] for r in results] == pytest.approx(sorted(expected)[::-1])
    for r in results:
        assert r["relevance_score"] == pytest.approx(expected[r["index"]], abs=1e-9)
        assert r["document"] == {"text": DOCS[r["index"]]}
    # the query once and each document once, prompts included: 5 + 4 * 4 fake tokens
    assert body["usage"] == {"prompt_tokens": 21, "total_tokens": 21}
    assert body["meta"]["api_version"] == {"version": "1"}
    # the same input, the same scores
    assert rerank(client).json()["results"] == results


def test_top_n_and_return_documents(client: TestClient) -> None:
    full = rerank(client).json()["results"]
    top = rerank(client, top_n=2, return_documents=False).json()["results"]
    assert top == [{k: v for k, v in r.items() if k != "document"} for r in full[:2]]
    assert rerank(client, path="/rerank", top_n=1).json()["results"] == full[:1]


def test_document_objects_come_back_whole_and_rank_fields_pick_the_text(
    client: TestClient,
) -> None:
    docs = [{"text": d, "id": i} for i, d in enumerate(DOCS)]
    results = rerank(client, documents=docs).json()["results"]
    assert {r["document"]["id"] for r in results} == {0, 1, 2, 3}
    assert all(r["document"]["text"] == DOCS[r["document"]["id"]] for r in results)
    ranked = rerank(client, documents=[{"title": d, "n": 1} for d in DOCS], rank_fields=["title"])
    assert ranked.status_code == 200, ranked.text
    assert fake_backend(client, "emb").seen[-1] == "passage: title: rain is coming"


def test_v2_rerank_answers_without_documents(client: TestClient) -> None:
    body = rerank(client, path="/v2/rerank", top_n=3).json()
    assert [set(r) for r in body["results"]] == [{"index", "relevance_score"}] * 3
    assert body["meta"]["api_version"] == {"version": "2"}
    v1 = rerank(client, top_n=3).json()["results"]
    assert [r["index"] for r in body["results"]] == [r["index"] for r in v1]
    with_docs = rerank(client, path="/v2/rerank", return_documents=True).json()["results"]
    assert all(r["document"]["text"] == DOCS[r["index"]] for r in with_docs)


def test_score_one_to_many_and_pairwise(client: TestClient) -> None:
    resp = client.post(
        "/v1/score", json={"model": "emb", "text_1": "where is the cat", "text_2": DOCS}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    assert all(d["object"] == "score" for d in body["data"])
    ranked = rerank(client).json()["results"]
    by_index = {r["index"]: r["relevance_score"] for r in ranked}
    assert [d["score"] for d in body["data"]] == [by_index[i] for i in range(4)]
    pairwise = client.post(
        "/v1/score",
        json={"model": "emb", "text_1": ["where is the cat", "x"], "text_2": DOCS[:2]},
    ).json()
    assert pairwise["data"][0]["score"] == by_index[0]
    assert pairwise["usage"]["completion_tokens"] == 0
    bad = client.post("/v1/score", json={"model": "emb", "text_1": ["a", "b"], "text_2": DOCS})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "text_2"
    long = client.post(
        "/v1/score", json={"model": "emb", "text_1": "q", "text_2": ["a", "x" * 201]}
    )
    assert long.status_code == 400
    assert long.json()["error"]["param"] == "text_2[1]"
    assert (
        client.post("/v1/score", json={"text_1": "q", "text_2": "d"}).json()["error"]["param"]
        == "model"
    )


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"documents": []}, 400, "documents", None),
        ({"documents": ["d"] * 9}, 400, "documents", "too_many_documents"),
        ({"documents": ["d", "x" * 201]}, 400, "documents[1]", "document_too_long"),
        ({"query": "q" * 201}, 400, "query", "document_too_long"),
        ({"model": "fake"}, 400, "model", "model_cannot_rerank"),
        ({"model": "nope"}, 404, "model", None),
        ({"truncate": True}, 400, "truncate", None),
        ({"max_chunks_per_doc": 3}, 400, "max_chunks_per_doc", "unsupported_parameter"),
        ({"documents": [{"title": "no text"}]}, 400, "documents[0].text", None),
        ({"top_n": -1}, 400, "top_n", None),
        ({"return_documents": "yes"}, 400, "return_documents", None),
    ],
)
def test_bad_input_is_a_clear_openai_error_and_the_server_keeps_serving(
    client: TestClient, body: dict[str, Any], status: int, param: str, code: str | None
) -> None:
    resp = rerank(client, **body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    assert rerank(client).status_code == 200
    hello = {"messages": [{"role": "user", "content": "hi"}]}
    chat = client.post("/v1/chat/completions", json=hello)
    assert chat.status_code == 200


def test_v2_refuses_what_it_does_not_honour(client: TestClient) -> None:
    resp = rerank(client, path="/v2/rerank", max_tokens_per_doc=512)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "max_tokens_per_doc"
    assert "truncate" in resp.json()["error"]["message"]


def test_thousands_of_documents_are_refused_before_any_scoring(client: TestClient) -> None:
    seen = len(fake_backend(client, "emb").seen)
    resp = rerank(client, documents=[f"doc {i}" for i in range(5000)])
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "too_many_documents"
    assert len(fake_backend(client, "emb").seen) == seen


def test_a_masking_model_scores_masked_text(client: TestClient) -> None:
    resp = rerank(client, model="plain", query="mail jane@example.com", documents=["call me"])
    assert resp.status_code == 200, resp.text
    seen = list(fake_backend(client, "plain").seen)
    assert not any("jane@example.com" in text for text in seen)
    # the client gets its own document back
    assert resp.json()["results"][0]["document"] == {"text": "call me"}


def test_embedding_prompts_by_input_type_and_name(client: TestClient) -> None:
    def sent(**body: Any) -> tuple[int, str]:
        resp = client.post("/v1/embeddings", json={"model": "emb", "input": "hello", **body})
        return resp.status_code, fake_backend(client, "emb").seen[-1]

    assert sent() == (200, "hello")
    assert sent(input_type="search_query") == (200, "query: hello")
    assert sent(input_type="search_document") == (200, "passage: hello")
    assert sent(input_type="document") == (200, "passage: hello")
    assert sent(prompt_name="topic") == (200, "topic: hello")
    assert sent(input_type="clustering") == (200, "hello")
    for body, param in (
        ({"prompt_name": "nope"}, "prompt_name"),
        ({"input_type": "weird"}, "input_type"),
        ({"input_type": "query", "prompt_name": "topic"}, "prompt_name"),
    ):
        resp = client.post("/v1/embeddings", json={"model": "emb", "input": "hello", **body})
        assert resp.status_code == 400
        assert resp.json()["error"]["param"] == param
    tokens = client.post(
        "/v1/embeddings", json={"model": "emb", "input": [1, 2], "input_type": "query"}
    )
    assert tokens.status_code == 400


def test_a_default_prompt_applies_when_none_is_named() -> None:
    model = fake_model(
        "e5", embedding_dimensions=8, prompts={"query": "query: "}, default_prompt_name="query"
    )
    with open_client(fake_settings(model)) as c:
        assert c.post("/v1/embeddings", json={"input": "hi"}).status_code == 200
        assert fake_backend(c, "e5").seen[-1] == "query: hi"


def test_a_default_prompt_must_be_one_of_the_prompts() -> None:
    with pytest.raises(SettingsError, match="default_prompt_name"):
        fake_settings(fake_model("e", prompts={"query": "q: "}, default_prompt_name="passage"))


def test_keys_models_rate_limits_and_usage_apply_to_rerank(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    emb_only = create_key(path, "emb-user", models=["emb"], requests_per_minute=2)
    chat_only = create_key(path, "chat-user", models=["fake"])
    admin = create_key(path, "admin", admin=True)
    settings = fake_settings(
        fake_model(),
        fake_model("emb", embedding_dimensions=8),
        keys_file=path,
        usage_db=str(tmp_path / "usage.db"),
    )
    body = {"model": "emb", "query": "q", "documents": ["a b", "c"]}
    with open_client(settings) as client:
        for route in ("/v1/rerank", "/rerank", "/v2/rerank"):
            assert client.post(route, json=body).status_code == 401
        assert client.post("/v1/score", json=body).status_code == 401
        denied = client.post(
            "/v1/rerank", json=body, headers={"Authorization": f"Bearer {chat_only}"}
        )
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "model_not_allowed"
        mine = {"Authorization": f"Bearer {emb_only}"}
        first = client.post("/v1/rerank", json=body, headers=mine)
        assert first.status_code == 200
        pair = {"model": "emb", "text_1": "q", "text_2": "c"}
        second = client.post("/v1/score", json=pair, headers=mine)
        assert second.status_code == 200
        limited = client.post("/v1/rerank", json=body, headers=mine)
        assert limited.status_code == 429
        rows = client.get("/admin/usage", headers={"Authorization": f"Bearer {admin}"})
        (row,) = [r for r in rows.json()["data"] if r["key_name"] == "emb-user"]
        assert row["model"] == "emb"
        assert row["requests"] == 2
        used = first.json()["usage"]["prompt_tokens"] + second.json()["usage"]["prompt_tokens"]
        assert row["prompt_tokens"] == used == 6  # q, a b, c; then q, c


def test_a_gguf_is_an_embedding_model_or_a_reranker_not_both() -> None:
    with pytest.raises(ValueError, match="embedding or rerank"):
        LlamaCppConfig(id="x", path=default_model_path(), embedding=True, rerank=True)
