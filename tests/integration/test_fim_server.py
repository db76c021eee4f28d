"""Fill-in-the-middle on a real GGUF model through the three wire shapes, in two real formats.

The default model (SmolLM2) has no FIM tokens, so the tests write copies of its GGUF (the
``gguf`` package edits metadata) with three of its unused special tokens renamed to another
family's FIM markers:

- ``qwen-coder``: Qwen2.5-Coder's ``<|fim_prefix|>``... and its repo-level ``<|repo_name|>`` and
  ``<|file_sep|>``, with the FIM token ids in the metadata as llama.cpp's converter writes them;
- ``codellama``: CodeLlama's ``▁<PRE>``, ``▁<SUF>``, ``▁<MID>`` and no ids in the metadata, so
  llama.cpp finds them by their text as it does for such files.

The model was never trained on them, so the tests check the prompt token for token and that a
completion comes back in each shape, not what it says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import ollama
import openai
import pytest

from llmserver.backends.base import FimTokens
from llmserver.backends.llamacpp import LlamaCppBackend
from llmserver.config.model_configs import LlamaCppConfig
from llmserver.config.settings import default_model_path
from llmserver.core.fim import FimFormat, Infill, fim_prompt
from support import RunningServer, run_server
from support.gguf_copy import edited_copy

pytestmark = pytest.mark.integration

#: token ids of SmolLM2's special tokens renamed as FIM tokens in the copies
PRE, SUF, MID, REPO, SEP = 8, 9, 10, 3, 5
QWEN = FimTokens("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>",
                 "<|file_sep|>")  # fmt: skip
#: llama.cpp's detection by text also takes SmolLM2's own ``<reponame>`` as the repo token
CODELLAMA = FimTokens("▁<PRE>", "▁<SUF>", "▁<MID>", "<reponame>")
FORMATS = {"qwen-coder": QWEN, "codellama": CODELLAMA}
PREFIX = "def add(a, b):\n    return"
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def fim_ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two copies, by model id."""
    folder = tmp_path_factory.mktemp("fim")
    roles = {"fim_pre": PRE, "fim_suf": SUF, "fim_mid": MID, "fim_rep": REPO, "fim_sep": SEP}
    qwen = {PRE: QWEN.prefix, SUF: QWEN.suffix, MID: QWEN.middle, REPO: QWEN.repo,
            SEP: QWEN.file_sep}  # fmt: skip
    ids = {f"tokenizer.ggml.{role}_token_id": i for role, i in roles.items()}
    codellama = {PRE: CODELLAMA.prefix, SUF: CODELLAMA.suffix, MID: CODELLAMA.middle}
    return {
        "qwen-coder": edited_copy(folder / "qwen-coder.gguf", qwen, ids),
        "codellama": edited_copy(folder / "codellama.gguf", codellama),
    }


@pytest.fixture(scope="module")
def backends(fim_ggufs: dict[str, Path]) -> Iterator[dict[str, LlamaCppBackend]]:
    """The copies loaded in-process, to read their FIM tokens and tokenize prompts."""
    engines = {
        name: LlamaCppBackend(LlamaCppConfig(id=name, path=path, context_size=512))
        for name, path in fim_ggufs.items()
    }
    for engine in engines.values():
        asyncio.run(engine.start())
    yield engines
    for engine in engines.values():
        asyncio.run(engine.close())


@pytest.fixture(scope="module")
def server(
    fim_ggufs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    # no prefix cache: every prompt token is counted as evaluated, in every shape
    coders = [
        {"id": name, "path": str(path), "context_size": 2048, "max_concurrent": 1,
         "prefix_cache": False}
        for name, path in fim_ggufs.items()
    ]  # fmt: skip
    plain = {"id": "plain", "path": str(default_model_path()), "context_size": 2048}
    with run_server(tmp_path_factory.mktemp("fim-server"), {"models": [*coders, plain]}) as up:
        yield up


def _ids(backend: LlamaCppBackend, text: str) -> list[int]:
    return backend.tokenize_text(text, add_special=False)


def _format(tokens: FimTokens, order: Literal["psm", "spm"] = "psm") -> FimFormat:
    return FimFormat(
        tokens.prefix, tokens.suffix, tokens.middle, order, tokens.repo, tokens.file_sep
    )


@pytest.mark.parametrize("model", FORMATS)
def test_the_gguf_fim_tokens_make_the_prompt_token_for_token(
    backends: dict[str, LlamaCppBackend], model: str
) -> None:
    backend = backends[model]
    tokens = backend.prompt_format().fim
    assert tokens == FORMATS[model]
    psm = backend.tokenize(fim_prompt(_format(tokens), Infill(PREFIX, SUFFIX)))
    assert psm == [PRE, *_ids(backend, PREFIX), SUF, *_ids(backend, SUFFIX), MID]


def test_the_repo_level_prompt_names_each_file_token_for_token(
    backends: dict[str, LlamaCppBackend],
) -> None:
    backend = backends["qwen-coder"]
    extra = Infill(PREFIX, SUFFIX, typed=" a", extra=(("util.py", "X = 1\n"),))
    repo = backend.tokenize(fim_prompt(_format(QWEN), extra))
    assert repo == [
        REPO, *_ids(backend, "myproject\n"),
        SEP, *_ids(backend, "util.py\nX = 1\n"),
        SEP, *_ids(backend, "filename\n"),
        PRE, *_ids(backend, PREFIX), SUF, *_ids(backend, SUFFIX), MID, *_ids(backend, " a"),
    ]  # fmt: skip


def test_suffix_prefix_middle_order_from_the_config(backends: dict[str, LlamaCppBackend]) -> None:
    backend = backends["codellama"]
    tokens = backend.tokenize(fim_prompt(_format(CODELLAMA, "spm"), Infill(PREFIX, SUFFIX)))
    assert tokens == [SUF, *_ids(backend, SUFFIX), PRE, *_ids(backend, PREFIX), MID]


@pytest.mark.parametrize("model", FORMATS)
def test_openai_completions_with_suffix_through_the_openai_package(
    server: RunningServer, backends: dict[str, LlamaCppBackend], model: str
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    done = client.completions.create(
        model=model, prompt=PREFIX, suffix=SUFFIX, max_tokens=8, temperature=0
    )
    backend = backends[model]
    expected = 3 + len(_ids(backend, PREFIX)) + len(_ids(backend, SUFFIX))
    assert done.usage is not None
    assert done.usage.prompt_tokens == expected
    assert 0 < done.usage.completion_tokens <= 8
    assert isinstance(done.choices[0].text, str)
    echoed = client.completions.create(
        model=model, prompt=PREFIX, suffix=SUFFIX, max_tokens=8, temperature=0, echo=True
    )
    assert echoed.choices[0].text == PREFIX + done.choices[0].text
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="plain", prompt=PREFIX, suffix=SUFFIX, max_tokens=4)
    assert refused.value.status_code == 400
    assert "suffix" in str(refused.value)
    card = client.models.retrieve(model).model_dump()
    assert "insert" in card["capabilities"]


@pytest.mark.parametrize("model", FORMATS)
def test_ollama_generate_with_suffix_through_the_ollama_package(
    server: RunningServer, backends: dict[str, LlamaCppBackend], model: str
) -> None:
    client = ollama.Client(host=server.url)
    prefix = "def sub(a, b):\n    return"
    done = client.generate(
        model=model, prompt=prefix, suffix=SUFFIX, options={"num_predict": 8, "temperature": 0}
    )
    assert done.done
    assert isinstance(done.response, str)
    backend = backends[model]
    assert done.prompt_eval_count == 3 + len(_ids(backend, prefix)) + len(_ids(backend, SUFFIX))
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model="plain", prompt=PREFIX, suffix=SUFFIX)
    assert refused.value.status_code == 400
    assert "does not support insert" in refused.value.error
    assert "insert" in (client.show(model).capabilities or [])
    assert "insert" not in (client.show("plain").capabilities or [])


@pytest.mark.parametrize("model", FORMATS)
def test_llama_server_infill_with_other_files(
    server: RunningServer, backends: dict[str, LlamaCppBackend], model: str
) -> None:
    body = {
        "model": model,
        "input_prefix": PREFIX,
        "input_suffix": SUFFIX,
        "input_extra": [{"filename": "util.py", "text": "X = 1\n"}],
        "prompt": " a",
        "n_predict": 8,
        "temperature": 0,
    }
    resp = httpx.post(f"{server.url}/infill", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    extra = Infill(PREFIX, SUFFIX, typed=" a", extra=(("util.py", "X = 1\n"),))
    prompt = fim_prompt(_format(FORMATS[model]), extra)
    assert answer["tokens_evaluated"] == len(backends[model].tokenize(prompt))
    assert answer["stop"] is True
    assert 0 < answer["tokens_predicted"] <= 8
    assert isinstance(answer["content"], str)


def test_infill_code_limits_end_the_completion_where_llama_server_does(
    server: RunningServer,
) -> None:
    """The code already typed in the hole makes the model write more of the loop (greedy, so
    every limited answer is a prefix of the unlimited one)."""
    typed = "def total(items):\n    result = 0\n    for item in items:\n        "
    body = {"model": "qwen-coder", "prompt": typed, "n_predict": 64, "temperature": 0}

    def infill(**limits: int) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.post(
            f"{server.url}/infill", json={**body, **limits}, timeout=120
        ).json()
        return answer

    free = infill()
    assert free["content"].count("\n") >= 2  # the model leaves the loop's block
    block = infill(n_indent=8)
    assert free["content"].startswith(block["content"])
    assert block["tokens_predicted"] < free["tokens_predicted"]
    assert block["stop_type"] == "limit"
    later_lines = block["content"].split("\n")[1:]
    assert all(line.startswith(" " * 8) for line in later_lines[:-1])
    assert later_lines[-1].strip() == ""  # the less indented line's indentation, not its text
    timed = infill(t_max_predict_ms=1)
    assert "\n" in timed["content"]
    assert free["content"].startswith(timed["content"])
    assert timed["content"].count("\n") <= 1 < free["content"].count("\n")
    assert timed["stop_type"] == "limit"
