"""Process-level behaviour: start-up, readiness, responsiveness during generation, disconnects."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from support import RunningServer

pytestmark = pytest.mark.integration


def test_health_answers_while_generating(default_server: RunningServer) -> None:
    body = {
        "messages": [{"role": "user", "content": "Write a very long essay about the sea."}],
        "max_tokens": 400,
        "temperature": 0,
        "ignore_eos": True,
    }
    worker = threading.Thread(
        target=httpx.post,
        args=(f"{default_server.base_url}/chat/completions",),
        kwargs={"json": body, "timeout": 120},
    )
    worker.start()
    time.sleep(0.5)
    worst = 0.0
    with httpx.Client() as client:
        for _ in range(10):
            started = time.perf_counter()
            assert client.get(f"{default_server.url}/health").status_code == 200
            worst = max(worst, time.perf_counter() - started)
            time.sleep(0.05)
    worker.join()
    assert worst < 0.1, f"/health took {worst * 1000:.0f} ms during a generation"


def test_disconnect_mid_stream_frees_the_model(default_server: RunningServer) -> None:
    body = {
        "messages": [{"role": "user", "content": "Write a very long essay about rivers."}],
        "max_tokens": 2000,
        "ignore_eos": True,
        "stream": True,
    }
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{default_server.base_url}/chat/completions", json=body) as resp,
    ):
        for i, _ in enumerate(resp.iter_lines()):
            if i > 10:
                break
    deadline = time.monotonic() + 2
    in_use = None
    while time.monotonic() < deadline:
        in_use = httpx.get(default_server.url).json()["models"][0]["slots_in_use"]
        if in_use == 0:
            break
        time.sleep(0.05)
    assert in_use == 0
    # and it serves the next request at once
    resp = httpx.post(
        f"{default_server.base_url}/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        timeout=10,
    )
    assert resp.status_code == 200


def test_root_reports_models(default_server: RunningServer) -> None:
    root = httpx.get(default_server.url).json()
    assert root["name"] == "llmserver"
    assert root["models"][0]["id"] == "smollm2-135m"
    assert root["models"][0]["state"] == "ready"
    assert root["uptime_s"] >= 0


def _serve(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmserver", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp,
    )


def test_bad_config_stops_startup_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  - id: m\n    backend: llamacpp\n    path: /nope/m.gguf\n")
    result = _serve("--config", str(cfg), tmp=tmp_path)
    assert result.returncode == 2
    assert "/nope/m.gguf" in result.stderr
    assert "Traceback" not in result.stderr
    cfg.write_text("colour: blue\n")
    result = _serve("--config", str(cfg), tmp=tmp_path)
    assert result.returncode == 2
    assert "colour" in result.stderr
    result = _serve("--port", "not-a-port", tmp=tmp_path)
    assert result.returncode == 2
    assert "port" in result.stderr


def test_env_host_and_port(tmp_path: Path) -> None:
    import os

    from support import free_port, wait_ready

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVER_")}
    env.update({"PORT": str(port), "HOST": "127.0.0.1"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmserver", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", None, timeout=60)
        assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"status": "ok"}
    finally:
        proc.terminate()
        proc.wait(30)
