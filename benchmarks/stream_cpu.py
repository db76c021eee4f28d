"""Single-stream decode rate of a running llmserver, with each server thread's CPU share.

    python benchmarks/stream_cpu.py --url http://127.0.0.1:8000 --pid $(pgrep -f 'llmserver serve')

Used to find what slows llama.cpp down inside the server (docs/benchmarks.md, "PyTorch and
llama.cpp in one process").
"""

from __future__ import annotations

import argparse
import os
import time

import httpx


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread id of process ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        out[tid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> None:
    """Stream one long greedy generation and print the rate and per-thread CPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()
    body = {
        "messages": [{"role": "user", "content": "Tell me about Paris."}],
        "max_tokens": args.tokens,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
    }
    before = thread_cpu(args.pid)
    started = time.perf_counter()
    chunks = 0
    url = f"{args.url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, timeout=120) as resp:
        for line in resp.iter_lines():
            chunks += '"content":"' in line and '"content":""' not in line
    wall = time.perf_counter() - started
    for tid, seconds in thread_cpu(args.pid).items():
        used = seconds - before.get(tid, seconds)
        if used > 0.01:
            print(f"thread {tid}: {used:5.2f} s CPU ({used / wall:4.0%} of wall time)")
    print(f"{chunks} tokens in {wall:.2f} s: {chunks / wall:.1f} tokens/s")


if __name__ == "__main__":
    main()
