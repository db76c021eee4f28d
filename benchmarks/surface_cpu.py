"""Server CPU per request of Ollama's API against OpenAI's, on the same model of one server.

    python benchmarks/surface_cpu.py --url http://127.0.0.1:8000 \
        --pid $(pgrep -f 'llmserver serve') --model fake --requests 300 --rounds 6

Streams the same chat (32 tokens, ``ignore_eos``) through ``/api/chat`` and
``/v1/chat/completions`` in alternating batches (A,B then B,A, ...) and divides the server
process's CPU time (user + system, from ``/proc``) by the requests of each surface
(docs/benchmarks.md, "Ollama's API vs OpenAI's").
"""

from __future__ import annotations

import argparse
import os

import httpx

PROMPT = "the of and to in is you that it he was for on are as with his they at be " * 3


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bodies(model: str, tokens: int) -> dict[str, tuple[str, dict[str, object]]]:
    """The request of each surface."""
    message = {"role": "user", "content": PROMPT}
    ollama = {"num_predict": tokens, "ignore_eos": True, "temperature": 0}
    return {
        "ollama": ("/api/chat", {"model": model, "messages": [message], "options": ollama}),
        "openai": (
            "/v1/chat/completions",
            {
                "model": model,
                "messages": [message],
                "max_tokens": tokens,
                "ignore_eos": True,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ),
    }


def main() -> None:
    """Print each surface's server CPU milliseconds per request."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=300, help="per surface and round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    requests = bodies(args.model, args.tokens)
    totals = dict.fromkeys(requests, 0.0)
    with httpx.Client(base_url=args.url, timeout=120) as client:
        for r in range(args.rounds):
            order = list(requests) if r % 2 == 0 else list(reversed(requests))
            for name in order:
                path, body = requests[name]
                before = cpu_seconds(args.pid)
                for i in range(args.requests):
                    # a tag of its own, so no request reuses another's prompt
                    body["messages"] = [{"role": "user", "content": f"[{r}-{i}] {PROMPT}"}]
                    with client.stream("POST", path, json=body) as resp:
                        resp.raise_for_status()
                        for _ in resp.iter_bytes():
                            pass
                totals[name] += cpu_seconds(args.pid) - before
    count = args.requests * args.rounds
    for name, seconds in totals.items():
        print(f"{name}: {1000 * seconds / count:.3f} ms server CPU per request ({count})")


if __name__ == "__main__":
    main()
