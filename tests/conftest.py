"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import RunningServer, run_server


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
