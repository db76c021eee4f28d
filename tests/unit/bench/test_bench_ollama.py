"""The bench's Ollama-API mode against llmserver's own Ollama surface (fake backend), measured
in the same run as its OpenAI surface (``--vs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llmserver.bench.__main__ import main
from support import fake_model, run_server


def _bench(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "results.json"
    code = main([*argv, "--no-progress", "--out", str(out)])
    return code, orjson.loads(out.read_bytes()) if out.exists() else {}


@pytest.mark.parametrize("stream", ["--stream", "--no-stream"])
@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_ollama_mode_against_the_openai_surface_of_the_same_server(
    tmp_path: Path, stream: str, endpoint: str
) -> None:
    with run_server(tmp_path, {"models": [fake_model()]}) as server:
        code, data = _bench(
            tmp_path,
            "--base-url", server.url, "--api", "ollama", "--label", "ollama",
            "--vs", server.base_url, "--vs-label", "openai", "--endpoint", endpoint, stream,
            "--concurrency", "2", "--requests", "6", "--output-tokens", "5", "--warmup", "1",
        )  # fmt: skip
    assert code == 0
    assert [t["model"] for t in data["targets"]] == ["fake:latest", "fake"]
    for row in data["results"]:
        assert (row["completed"], row["failed"]) == (6, 0)
        assert row["output_tokens_min"] == row["output_tokens_max"] == 5
        assert row["usage_reported"] == 6
