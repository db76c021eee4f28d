"""Fill-in-the-middle on the fake backend: the prompt each format makes, the three wire
shapes (OpenAI ``suffix``, Ollama ``suffix``, llama-server ``/infill``), the refusals for a
model without a format, capabilities and masking."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.core.caller import Caller
from llmserver.core.fim import FimFormat, Infill, fim_prompt
from llmserver.http.context import app_context
from llmserver.surfaces.openai.batch_lines import handlers
from support import fake_model, fake_settings, open_client
from support.fake import app_of, fake_backend

#: Qwen2.5-Coder's tokens (repo-level: <|repo_name|>, <|file_sep|>) and CodeLlama's (SPM-able)
QWEN = FimFormat("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "psm", "<|repo_name|>",
                 "<|file_sep|>")  # fmt: skip
CODELLAMA = FimFormat("<PRE> ", " <SUF>", " <MID>")
FIM = {"prefix": "<PRE>", "suffix": "<SUF>", "middle": "<MID>"}


def test_prefix_suffix_middle_prompt_of_qwen_coder() -> None:
    infill = Infill("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n")
    assert fim_prompt(QWEN, infill) == (
        "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n\nprint(add(1, 2))\n<|fim_middle|>"
    )


def test_repo_level_prompt_names_each_other_file_then_the_hole() -> None:
    infill = Infill("x = ", "\n", typed="ma", extra=(("util.py", "def mask(): ...\n"),))
    assert fim_prompt(QWEN, infill) == (
        "<|repo_name|>myproject\n<|file_sep|>util.py\ndef mask(): ...\n<|file_sep|>filename\n"
        "<|fim_prefix|>x = <|fim_suffix|>\n<|fim_middle|>ma"
    )


def test_suffix_prefix_middle_order_and_a_format_without_file_names() -> None:
    spm = FimFormat("<PRE> ", " <SUF>", " <MID>", "spm")
    assert fim_prompt(spm, Infill("a", "b")) == " <SUF>b<PRE> a <MID>"
    extra = Infill("a", "b", extra=(("f.py", "other\n"),))
    assert fim_prompt(CODELLAMA, extra) == "other\n<PRE> a <SUF>b <MID>"


@pytest.fixture
def client() -> Iterator[TestClient]:
    """``coder`` has a FIM format in its config (masked input), ``plain`` has none."""
    settings = fake_settings(
        fake_model("coder", fim=FIM, mask_pii=True), fake_model("plain", aliases=["p"])
    )
    with open_client(settings) as c:
        yield c


def _received(client: TestClient, model: str) -> str:
    return fake_backend(client, model).received[-1].prompt


def test_openai_completion_with_suffix_fills_the_middle(client: TestClient) -> None:
    body = {"model": "coder", "prompt": "def f():", "suffix": "\nf()", "max_tokens": 4}
    resp = client.post("/v1/completions", json=body)
    assert resp.status_code == 200, resp.text
    assert _received(client, "coder") == "<PRE>def f():<SUF>\nf()<MID>"
    choice = resp.json()["choices"][0]
    assert choice["text"]
    assert resp.json()["usage"]["prompt_tokens"] > 0
    echoed = client.post("/v1/completions", json={**body, "echo": True}).json()
    assert echoed["choices"][0]["text"].startswith("def f():")
    stream = client.post("/v1/completions", json={**body, "stream": True, "echo": True})
    first = json.loads(stream.text.split("\n\n")[0].removeprefix("data: "))
    assert first["choices"][0]["text"].startswith("def f():")


def test_ollama_generate_with_suffix_fills_the_middle(client: TestClient) -> None:
    body = {"model": "coder", "prompt": "a = ", "suffix": "\nb = 2", "stream": False}
    resp = client.post("/api/generate", json=body)
    assert resp.status_code == 200, resp.text
    assert _received(client, "coder") == "<PRE>a = <SUF>\nb = 2<MID>"
    assert resp.json()["done"] is True
    assert resp.json()["response"]


def test_llama_server_infill_with_other_files(client: TestClient) -> None:
    body: dict[str, Any] = {
        "model": "coder",
        "input_prefix": "x = ",
        "input_suffix": "\n",
        "input_extra": [{"filename": "a.py", "text": "A = 1\n"}],
        "prompt": "A",
        "n_predict": 3,
    }
    resp = client.post("/infill", json=body)
    assert resp.status_code == 200, resp.text
    assert _received(client, "coder") == "A = 1\n<PRE>x = <SUF>\n<MID>A"
    answer = resp.json()
    assert answer["stop"] is True
    assert answer["stop_type"] == "limit"
    assert answer["tokens_predicted"] == 3
    assert answer["content"]
    stream = client.post("/infill", json={**body, "stream": True})
    events = [json.loads(e.removeprefix("data: ")) for e in stream.text.split("\n\n") if e]
    assert events[-1]["stop"] is True
    assert "".join(e["content"] for e in events) == answer["content"]


def test_a_model_without_a_fim_format_refuses_suffix_on_every_surface(
    client: TestClient,
) -> None:
    openai = client.post("/v1/completions", json={"model": "p", "prompt": "a", "suffix": "b"})
    assert openai.status_code == 400
    error = openai.json()["error"]
    assert error["param"] == "suffix"
    assert error["code"] == "unsupported_parameter"
    ollama = client.post("/api/generate", json={"model": "plain", "prompt": "a", "suffix": "b"})
    assert ollama.status_code == 400
    assert "does not support insert" in ollama.json()["error"]
    infill = client.post("/infill", json={"model": "plain", "input_prefix": "a"})
    assert infill.status_code == 400
    assert "does not support insert" in infill.json()["error"]["message"]


def test_insert_capability_follows_the_format(client: TestClient) -> None:
    cards = {m["id"]: m["capabilities"] for m in client.get("/v1/models").json()["data"]}
    assert "insert" in cards["coder"]
    assert "insert" not in cards["plain"]
    shown = client.post("/api/show", json={"model": "coder"}).json()["capabilities"]
    assert shown == ["completion", "tools", "insert"]


def test_fim_input_is_masked_where_the_model_asks(client: TestClient) -> None:
    body = {"model": "coder", "prompt": "# mail bob@example.com\n", "suffix": "", "max_tokens": 2}
    body["suffix"] = "# or carol@example.com"
    assert client.post("/v1/completions", json=body).status_code == 200
    prompt = _received(client, "coder")
    assert "bob@example.com" not in prompt
    assert "carol@example.com" not in prompt
    assert prompt.startswith("<PRE># mail ")


def test_a_batch_completion_line_with_suffix_fills_the_middle(client: TestClient) -> None:
    lines = handlers()["/v1/completions"]
    service = app_context(app_of(client)).service
    body = {"model": "coder", "prompt": "a = ", "suffix": "\n", "max_tokens": 2, "echo": True}
    assert lines.check(body) == "coder"
    assert client.portal is not None
    answer = client.portal.call(lines.run, service, Caller.anyone(), body)
    assert _received(client, "coder") == "<PRE>a = <SUF>\n<MID>"
    assert answer.body["choices"][0]["text"].startswith("a = ")


def test_a_model_loaded_on_demand_is_checked_for_a_format_once_loaded() -> None:
    settings = fake_settings(fake_model("lazy", preload=False, load_on_demand=True))
    with open_client(settings) as client:
        body = {"model": "lazy", "prompt": "a", "suffix": "b"}
        for stream in (False, True):
            resp = client.post("/v1/completions", json={**body, "stream": stream})
            assert resp.status_code == 400
            assert resp.json()["error"]["param"] == "suffix"
        ollama = client.post("/api/generate", json=body)
        assert ollama.status_code == 400
        assert "does not support insert" in ollama.json()["error"]
