"""Load, unload and eviction on a real server with llama.cpp models: what /v1/models says, and
that the process's resident memory really drops when a model is unloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmserver.config.settings import default_model_path
from support import RunningServer, run_server

pytestmark = pytest.mark.integration

#: a loaded SmolLM2-135M (weights mapped in plus its KV cache) is 200 MiB or more
MIN_FREED_MIB = 50


def rss_mib(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS line")


def states(server: RunningServer) -> dict[str, str]:
    data = httpx.get(f"{server.base_url}/models", timeout=10).json()["data"]
    return {m["id"]: m["state"] for m in data}


def post(server: RunningServer, path: str) -> Any:
    resp = httpx.post(f"{server.base_url}{path}", timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_load_unload_evict_and_memory(tmp_path: Path) -> None:
    gguf = str(default_model_path())
    config = {
        "models": [
            {"id": "first", "path": gguf, "aliases": ["chat"]},
            {"id": "second", "path": gguf, "preload": False},
        ],
        "roles": {"coding": "second"},
        "max_loaded_models": 1,
    }
    with run_server(tmp_path, config) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        assert states(server) == {"first": "ready", "second": "unloaded"}
        with pytest.raises(openai.APIStatusError) as caught:  # never loaded silently
            client.chat.completions.create(
                model="coding", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
        assert caught.value.status_code == 503

        assert post(server, "/models/coding/load")["state"] == "ready"
        assert states(server) == {"first": "unloaded", "second": "ready"}  # evicted (cap 1)
        reply = client.chat.completions.create(
            model="coding", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert reply.model == "second"

        loaded = rss_mib(server.process.pid)
        assert post(server, "/models/second/unload")["state"] == "unloaded"
        unloaded = rss_mib(server.process.pid)
        assert states(server) == {"first": "unloaded", "second": "unloaded"}
        assert loaded - unloaded >= MIN_FREED_MIB, (loaded, unloaded)

        assert post(server, "/models/chat/load")["state"] == "ready"
        assert rss_mib(server.process.pid) - unloaded >= MIN_FREED_MIB
        assert states(server) == {"first": "ready", "second": "unloaded"}
