"""Fill-in-the-middle on a real GGUF model through the three wire shapes.

The default model (SmolLM2) has no FIM tokens, so the test writes a copy of its GGUF with the
FIM token ids set (the ``gguf`` package edits metadata): prefix, suffix and middle are three of
the vocabulary's existing special tokens, the repository and file-separator tokens are its own
``<repo_name>`` and ``<file_sep>``. The model was never trained on them, so the tests check the
prompt token for token and that a completion comes back in each shape, not what it says.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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

pytestmark = pytest.mark.integration

#: token ids of SmolLM2's special tokens, reused as FIM tokens in the copy
PRE, SUF, MID, REPO, SEP = 8, 9, 10, 3, 5
PREFIX = "def add(a, b):\n    return"
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def fim_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the default GGUF with FIM token ids in its metadata."""
    out = tmp_path_factory.mktemp("fim") / "smollm2-fim.gguf"
    roles = {"fim_pre": PRE, "fim_suf": SUF, "fim_mid": MID, "fim_rep": REPO, "fim_sep": SEP}
    args = [a for role, i in roles.items() for a in ("--special-token-by-id", role, str(i))]
    subprocess.run(
        [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(default_model_path()),
         str(out), *args, "--force"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def backend(fim_gguf: Path) -> Iterator[LlamaCppBackend]:
    """The copy loaded in-process, to read its FIM tokens and tokenize prompts."""
    import asyncio

    engine = LlamaCppBackend(LlamaCppConfig(id="coder", path=fim_gguf, context_size=512))
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.close())


@pytest.fixture(scope="module")
def server(fim_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = {
        "models": [
            # no prefix cache: every prompt token is counted as evaluated, in every shape
            {
                "id": "coder",
                "path": str(fim_gguf),
                "context_size": 2048,
                "max_concurrent": 1,
                "prefix_cache": False,
            },
            {"id": "plain", "path": str(default_model_path()), "context_size": 2048},
        ]
    }
    with run_server(tmp_path_factory.mktemp("fim-server"), config) as running:
        yield running


def _ids(backend: LlamaCppBackend, text: str) -> list[int]:
    return backend.tokenize_text(text, add_special=False)


def test_the_gguf_fim_tokens_make_the_prompt_token_for_token(backend: LlamaCppBackend) -> None:
    tokens = backend.prompt_format().fim
    assert tokens == FimTokens("<issue_start>", "<issue_comment>", "<issue_closed>",
                               "<repo_name>", "<file_sep>")  # fmt: skip
    fmt = FimFormat(tokens.prefix, tokens.suffix, tokens.middle, "psm", tokens.repo,
                    tokens.file_sep)  # fmt: skip
    psm = backend.tokenize(fim_prompt(fmt, Infill(PREFIX, SUFFIX)))
    assert psm == [PRE, *_ids(backend, PREFIX), SUF, *_ids(backend, SUFFIX), MID]
    extra = Infill(PREFIX, SUFFIX, typed=" a", extra=(("util.py", "X = 1\n"),))
    repo = backend.tokenize(fim_prompt(fmt, extra))
    assert repo == [
        REPO, *_ids(backend, "myproject\n"),
        SEP, *_ids(backend, "util.py\nX = 1\n"),
        SEP, *_ids(backend, "filename\n"),
        PRE, *_ids(backend, PREFIX), SUF, *_ids(backend, SUFFIX), MID, *_ids(backend, " a"),
    ]  # fmt: skip


def test_suffix_prefix_middle_order_from_the_config(backend: LlamaCppBackend) -> None:
    spm = FimFormat("<issue_start>", "<issue_comment>", "<issue_closed>", "spm")
    tokens = backend.tokenize(fim_prompt(spm, Infill(PREFIX, SUFFIX)))
    assert tokens == [SUF, *_ids(backend, SUFFIX), PRE, *_ids(backend, PREFIX), MID]


def test_openai_completions_with_suffix_through_the_openai_package(
    server: RunningServer, backend: LlamaCppBackend
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    done = client.completions.create(
        model="coder", prompt=PREFIX, suffix=SUFFIX, max_tokens=8, temperature=0
    )
    expected = 3 + len(_ids(backend, PREFIX)) + len(_ids(backend, SUFFIX))
    assert done.usage is not None
    assert done.usage.prompt_tokens == expected
    assert 0 < done.usage.completion_tokens <= 8
    assert isinstance(done.choices[0].text, str)
    echoed = client.completions.create(
        model="coder", prompt=PREFIX, suffix=SUFFIX, max_tokens=8, temperature=0, echo=True
    )
    assert echoed.choices[0].text == PREFIX + done.choices[0].text
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="plain", prompt=PREFIX, suffix=SUFFIX, max_tokens=4)
    assert refused.value.status_code == 400
    assert "suffix" in str(refused.value)
    card = client.models.retrieve("coder").model_dump()
    assert "insert" in card["capabilities"]


def test_ollama_generate_with_suffix_through_the_ollama_package(
    server: RunningServer, backend: LlamaCppBackend
) -> None:
    client = ollama.Client(host=server.url)
    prefix = "def sub(a, b):\n    return"
    done = client.generate(
        model="coder", prompt=prefix, suffix=SUFFIX, options={"num_predict": 8, "temperature": 0}
    )
    assert done.done
    assert isinstance(done.response, str)
    assert done.prompt_eval_count == 3 + len(_ids(backend, prefix)) + len(_ids(backend, SUFFIX))
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model="plain", prompt=PREFIX, suffix=SUFFIX)
    assert refused.value.status_code == 400
    assert "does not support insert" in refused.value.error
    assert "insert" in (client.show("coder").capabilities or [])
    assert "insert" not in (client.show("plain").capabilities or [])


def test_llama_server_infill_with_other_files(
    server: RunningServer, backend: LlamaCppBackend
) -> None:
    body = {
        "model": "coder",
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
    repo_level = (
        "<repo_name>myproject\n<file_sep>util.py\nX = 1\n<file_sep>filename\n"
        f"<issue_start>{PREFIX}<issue_comment>{SUFFIX}<issue_closed> a"
    )
    assert answer["tokens_evaluated"] == len(backend.tokenize(repo_level))
    assert answer["stop"] is True
    assert 0 < answer["tokens_predicted"] <= 8
    assert isinstance(answer["content"], str)
