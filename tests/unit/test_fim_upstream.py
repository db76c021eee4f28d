"""Fill-in-the-middle on upstream models: the prefix and suffix passed on (Ollama natively,
OpenAI-compatible engines as ``suffix``), an engine's refusal relayed as a 400, and a
configured FIM format relayed as an assembled prompt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from support import fake_settings, open_client
from support.mock_upstream import Upstream, failing, instant, recorded_ollama, serve

RECORDING: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "data" / "ollama_recorded.json").read_text()
)


def _running(*models: dict[str, Any]) -> Iterator[TestClient]:
    with open_client(fake_settings(*models)) as c:
        yield c


def _bodies(up: Upstream, path: str | None = None) -> list[dict[str, Any]]:
    return [r["body"] for r in up.requests if path is None or r.get("path") == path]


def test_an_ollama_upstream_gets_the_suffix_natively() -> None:
    with serve(recorded_ollama(RECORDING)) as up:
        entry = {"id": "llama3.2", "backend": "ollama", "url": f"http://127.0.0.1:{up.port}"}
        for client in _running(entry):
            body = {"model": "llama3.2", "prompt": "def f(", "suffix": "):\n", "stream": False}
            resp = client.post("/api/generate", json=body)
            assert resp.status_code == 200, resp.text
        sent = _bodies(up, "/api/generate")[-1]
    assert sent["prompt"] == "def f("
    assert sent["suffix"] == "):\n"
    assert "raw" not in sent  # the engine's template places the prefix and suffix


def test_an_openai_upstream_gets_suffix_passed_on_and_configured_formats_assembled() -> None:
    with serve(instant()) as up:
        plain = {"id": "up", "backend": "upstream", "url": up.base_url}
        coder = {**plain, "id": "coder", "fim": {"prefix": "<P>", "suffix": "<S>", "middle": "<M>"}}
        for client in _running(plain, coder):
            body = {"model": "up", "prompt": "a = ", "suffix": "\nb", "max_tokens": 2}
            assert client.post("/v1/completions", json=body).status_code == 200
            assert (
                client.post("/v1/completions", json={**body, "model": "coder"}).status_code == 200
            )
            extra = {
                "model": "up",
                "input_prefix": "x",
                "input_extra": [{"filename": "a", "text": "b"}],
            }
            refused = client.post("/infill", json=extra)
            assert refused.status_code == 400
            assert refused.json()["error"]["param"] == "input_extra"
        sent = [b for b in _bodies(up) if b and "prompt" in b]
    assert sent[-2]["prompt"] == "a = "
    assert sent[-2]["suffix"] == "\nb"
    assert sent[-1]["prompt"] == "<P>a = <S>\nb<M>"
    assert "suffix" not in sent[-1]


def test_an_openai_upstream_refusing_suffix_is_a_clear_400() -> None:
    refusal = {"error": {"message": "suffix is not supported", "type": "invalid_request_error",
                         "param": "suffix", "code": None}}  # fmt: skip
    with serve(failing(400, refusal)) as up:
        entry = {"id": "up", "backend": "upstream", "url": up.base_url}
        for client in _running(entry):
            body = {"model": "up", "prompt": "a", "suffix": "b", "max_tokens": 2}
            resp = client.post("/v1/completions", json=body)
    assert resp.status_code == 400
    assert "suffix is not supported" in resp.json()["error"]["message"]
