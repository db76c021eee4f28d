"""GPU tests skip cleanly where there is no CUDA."""

from __future__ import annotations

import pytest


def cuda_available() -> bool:
    """True when PyTorch is installed and sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.fixture(scope="session")
def vllm_model(request: pytest.FixtureRequest) -> str:
    """The model the vLLM tests serve (``--vllm-model``); skips when none is given."""
    path = request.config.getoption("--vllm-model")
    if not path:
        pytest.skip("no --vllm-model given (a small Hugging Face model directory)")
    return str(path)
