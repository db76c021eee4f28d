"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import RunningServer, run_server

#: the session's PostgreSQL and Redis servers (``postgres``, ``redis``)
pytest_plugins = ["support.state_servers"]


@pytest.fixture(scope="session", autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """In-process apps keep their data (the usage database) in a temporary directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMSERVER_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        yield


@pytest.fixture(scope="session")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server with no config at all: the default SmolLM2 model via llama.cpp."""
    tmp: Path = tmp_path_factory.mktemp("default-server")
    with run_server(tmp) as server:
        yield server


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options for the GPU tests (``tests/gpu``), which skip when they are not given."""
    parser.addoption(
        "--vllm-model",
        default=None,
        help="Hugging Face model directory (or cached hub id) for the vLLM tests, e.g. a local "
        "copy of Qwen/Qwen2.5-0.5B-Instruct; the vLLM tests skip without it.",
    )
