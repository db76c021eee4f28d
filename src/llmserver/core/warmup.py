"""A model's warm-up after its load, so the first user request pays no first-run cost."""

from __future__ import annotations

from llmserver.backends.base import GenerationRequest, SamplingParams
from llmserver.core.handle import ModelHandle

#: scorers that run here and are warmed up with one pair
LOCAL_RERANKERS = ("cross-encoder", "rank-pooling")


async def warm_up(handle: ModelHandle) -> None:
    """One short greedy generation, one embedding for embedding models or one scored pair
    for rerankers, so the first user request pays no first-run cost.

    Engines without a local tokenizer (upstream) are remote and already warm: skipped.
    """
    scorer = handle.abilities().scorer()
    spec = scorer.scoring_spec() if scorer is not None else None
    if scorer is not None and spec is not None and spec.kind in LOCAL_RERANKERS:
        await scorer.score([("Hello", "Hello")], truncate=True)
        return
    if (embedding := handle.embedder()) is not None:
        await embedding.embed(["Hello"])
        return
    if handle.tokenizer() is None:
        return
    prompt = "Hello"
    tokens: list[int] = []
    if handle.template is not None and (tokenizer := handle.tokenizer()) is not None:
        prompt = handle.template.render([{"role": "user", "content": "Hello"}])
        tokens = tokenizer.tokenize(prompt)
    params = SamplingParams(max_tokens=2, temperature=0.0, seed=0)
    request = GenerationRequest("warmup", prompt, tokens, params)
    async for _ in handle.generator().generate(request):
        pass
