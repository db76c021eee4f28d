"""``/v1/embeddings`` on the fake backend: request shapes, encodings, dimensions, errors."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import fake_model, fake_settings, open_client

DIMS = 16


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A chat model ``fake`` (first, the default) and an embedding model ``emb``."""
    with open_client(
        fake_settings(fake_model(), fake_model("emb", embedding_dimensions=DIMS))
    ) as c:
        yield c


def embed(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/embeddings", json={"model": "emb", **body})


def test_string_and_list_give_the_same_vectors(client: TestClient) -> None:
    one = embed(client, input="hello there world").json()
    many = embed(client, input=["hello there world", "something else"]).json()
    assert one["object"] == "list"
    assert one["model"] == "emb"
    assert [d["index"] for d in many["data"]] == [0, 1]
    assert many["data"][0]["embedding"] == one["data"][0]["embedding"]
    assert many["data"][1]["embedding"] != one["data"][0]["embedding"]
    assert len(one["data"][0]["embedding"]) == DIMS
    assert one["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert many["usage"] == {"prompt_tokens": 5, "total_tokens": 5}


def test_base64_is_little_endian_float32(client: TestClient) -> None:
    floats = embed(client, input="a b c").json()["data"][0]["embedding"]
    packed = embed(client, input="a b c", encoding_format="base64").json()["data"][0]["embedding"]
    assert isinstance(packed, str)
    raw = base64.b64decode(packed)
    assert len(raw) == 4 * DIMS
    decoded = struct.unpack(f"<{DIMS}f", raw)
    assert decoded == pytest.approx(floats, rel=1e-6)


def test_token_arrays(client: TestClient) -> None:
    single = embed(client, input=[1, 2, 3]).json()
    double = embed(client, input=[[1, 2, 3], [4, 5]]).json()
    assert len(single["data"]) == 1
    assert double["data"][0]["embedding"] == single["data"][0]["embedding"]
    assert double["usage"]["prompt_tokens"] == 5


def test_dimensions_truncate_and_renormalise(client: TestClient) -> None:
    full = embed(client, input="x y").json()["data"][0]["embedding"]
    short = embed(client, input="x y", dimensions=4).json()["data"][0]["embedding"]
    assert len(short) == 4
    assert math.isclose(math.sqrt(sum(v * v for v in short)), 1.0, rel_tol=1e-9)
    norm = math.sqrt(sum(v * v for v in full[:4]))
    assert short == pytest.approx([v / norm for v in full[:4]])
    too_big = embed(client, input="x y", dimensions=DIMS + 1)
    assert too_big.status_code == 400
    assert too_big.json()["error"]["param"] == "dimensions"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": [[]]}, "input"),
        ({"input": [-1]}, "input"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": ["x"] * 2049}, "input"),
    ],
)
def test_bad_requests_are_400_with_param(
    client: TestClient, body: dict[str, Any], param: str
) -> None:
    resp = embed(client, **body)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == param


def test_model_without_embeddings_is_400(client: TestClient) -> None:
    resp = client.post("/v1/embeddings", json={"model": "fake", "input": "x"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["param"] == "model"
    assert "does not serve embeddings" in error["message"]


def test_unknown_model_is_404(client: TestClient) -> None:
    resp = client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_found"


def test_no_model_means_the_default_model(client: TestClient) -> None:
    # the default is the chat model, which serves no embeddings: a clear 400, not a crash
    resp = client.post("/v1/embeddings", json={"input": "x"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "model"
