"""Config types of the transformers, vllm and sentence_transformers backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmserver.config.model_configs import (
    SentenceTransformersConfig,
    TransformersConfig,
    VllmConfig,
)
from llmserver.config.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("backend", "path"),
    [
        ("transformers", "/no/such/model"),
        ("transformers", "/no/such/model.gguf"),
        ("vllm", "./missing-dir"),
        ("sentence_transformers", "~/no-such-embedder"),
    ],
)
def test_missing_local_path_stops_start_up_naming_it(backend: str, path: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"models": [{"id": "m", "backend": backend, "path": path}]})
    assert "models[0].path" in str(err.value)
    assert Path(path).expanduser().name in str(err.value)


def test_hub_ids_and_existing_paths_are_accepted(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "models": [
                {"id": "a", "backend": "transformers", "path": "HuggingFaceTB/SmolLM2-135M"},
                {"id": "b", "backend": "vllm", "path": str(tmp_path), "tensor_parallel_size": 2},
                {"id": "c", "backend": "sentence_transformers", "path": str(tmp_path)},
            ]
        }
    )
    a, b, c = settings.models
    assert isinstance(a, TransformersConfig)
    assert (a.device, a.dtype) == (None, "auto")
    assert isinstance(b, VllmConfig)
    assert b.tensor_parallel_size == 2
    assert isinstance(c, SentenceTransformersConfig)
    assert not c.matryoshka


def test_vllm_options_are_checked() -> None:
    bad = {"id": "v", "backend": "vllm", "path": "org/m", "distributed_executor_backend": "slurm"}
    with pytest.raises(SettingsError, match="distributed_executor_backend"):
        load_settings({"models": [bad]})


def test_llamacpp_threads_are_a_count_or_auto(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")

    def threads(value: object) -> object:
        entry = {"id": "m", "backend": "llamacpp", "path": str(gguf), "threads": value}
        (model,) = load_settings({"models": [entry]}).models
        return getattr(model, "threads", None)

    assert threads("auto") == "auto"
    assert threads(4) == 4
    assert threads(None) == "auto"  # an empty ``threads:`` from before auto existed
    for bad in (0, "many", 1.5):
        with pytest.raises(SettingsError, match=r"models\[0\]\.threads"):
            threads(bad)
