"""A model with a ``url`` and ``rerank: true`` passes rerank and score to the upstream's
``/v1/rerank`` (vLLM, llama-server, another llmserver); its answer is checked first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from support import fake_model, fake_settings, open_client
from support.mock_upstream import reranking, serve

DOCS = ["red apples", "green apples and pears", "blue sky"]


def overlap(body: dict[str, Any]) -> dict[str, Any]:
    """vLLM's answer, scoring a document by the words it shares with the query."""
    words = set(body["query"].split())
    scores = [len(words & set(d.split())) / 10 for d in body["documents"]]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return {
        "id": "rerank-1",
        "model": body["model"],
        "usage": {"prompt_tokens": 12, "total_tokens": 12},
        "results": [
            {"index": i, "document": {"text": body["documents"][i]}, "relevance_score": scores[i]}
            for i in order
        ],
    }


def settings(url: str) -> Any:
    upstream = {
        "id": "up",
        "backend": "upstream",
        "url": url,
        "upstream_model": "bge-reranker",
        "rerank": True,
    }
    return fake_settings(fake_model(), upstream)


def test_rerank_is_relayed_and_the_upstream_order_kept() -> None:
    with serve(reranking(overlap)) as upstream, open_client(settings(upstream.base_url)) as c:
        resp = c.post(
            "/v1/rerank", json={"model": "up", "query": "green apples", "documents": DOCS}
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["scorer"] == "upstream"
        assert [r["index"] for r in body["results"]] == [1, 0, 2]
        assert [r["relevance_score"] for r in body["results"]] == [0.2, 0.1, 0.0]
        assert body["usage"]["prompt_tokens"] == 12
        (sent,) = upstream.requests
        assert sent["path"] == "/v1/rerank"
        assert sent["body"]["model"] == "bge-reranker"
        assert sent["body"]["documents"] == DOCS
        assert sent["body"]["top_n"] == 3
        assert "truncate" not in sent["body"]
        cards = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
        assert cards["up"]["capabilities"] == ["rerank"]
        chat = c.post(
            "/v1/chat/completions",
            json={"model": "up", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 400


def test_pairwise_scores_go_as_one_request_per_query() -> None:
    with serve(reranking(overlap)) as upstream, open_client(settings(upstream.base_url)) as c:
        pairs = {"model": "up", "text_1": ["red", "blue", "red"], "text_2": DOCS, "truncate": True}
        resp = c.post("/v1/score", json=pairs)
        assert resp.status_code == 200, resp.text
        assert [d["score"] for d in resp.json()["data"]] == [0.1, 0.0, 0.0]
        assert [r["body"]["query"] for r in upstream.requests] == ["red", "blue"]
        assert upstream.requests[0]["body"]["documents"] == ["red apples", "blue sky"]
        assert upstream.requests[0]["body"]["truncate"] is True


def _drop_one(body: dict[str, Any]) -> dict[str, Any]:
    answer = overlap(body)
    answer["results"] = answer["results"][1:]
    return answer


def _twice(body: dict[str, Any]) -> dict[str, Any]:
    answer = overlap(body)
    answer["results"][1]["index"] = answer["results"][0]["index"]
    return answer


def _text_score(body: dict[str, Any]) -> dict[str, Any]:
    answer = overlap(body)
    answer["results"][0]["relevance_score"] = "high"
    return answer


def _out_of_range(body: dict[str, Any]) -> dict[str, Any]:
    answer = overlap(body)
    answer["results"][0]["index"] = 7
    return answer


@pytest.mark.parametrize("answer", [_drop_one, _twice, _text_score, _out_of_range])
def test_a_wrong_upstream_answer_is_a_502_never_a_wrong_order(
    answer: Callable[[dict[str, Any]], Any],
) -> None:
    with serve(reranking(answer)) as upstream, open_client(settings(upstream.base_url)) as c:
        resp = c.post("/v1/rerank", json={"model": "up", "query": "red", "documents": DOCS})
        assert resp.status_code == 502, resp.text
        assert resp.json()["error"]["message"].startswith("upstream sent a rerank")
