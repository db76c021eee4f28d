"""Swaps with and without ``swap_min_resident_s``: three clients, each asking its own model
again and again, on a server with room for two of the three (fake models that declare 100 MiB
and take 0.2 s to load, under a 250 MiB host budget). Prints, for each hold: the swaps and the
seconds they took (from /metrics), the requests answered (a request that waited past
``max_load_wait_s`` would be a 503), the longest wait and the wall time. ``swap_min_resident_s``
0 is the server without the scheduler's turns; the waiting loads' order and the
``swap_max_wait_s`` bound apply to every run. docs/residency.md.

    python benchmarks/swaps.py --requests 20 --holds 0 1 3 --max-wait 2
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from llmserver.app import create_app
from llmserver.config.settings import load_settings

MIB = 2**20
MODELS = ("a", "b", "c")


def run(hold: float, requests: int, think_s: float, max_wait_s: float) -> str:
    """One run with ``swap_min_resident_s`` = ``hold``; its figures as one line."""
    models = [
        {"id": m, "backend": "fake", "memory_bytes": 100 * MIB, "preload": False,
         "load_on_demand": True, "load_delay_s": 0.2, "token_delay_s": 0.005}
        for m in MODELS
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as data:
        settings = load_settings(
            {
                "models": models,
                "memory_budget": {"host": 250 * MIB},
                "swap_min_resident_s": hold,
                "swap_max_wait_s": max_wait_s,
                "max_load_wait_s": 30,
                "data_dir": data,
                "keys_file": f"{data}/keys.json",
            }
        )
        waits: list[float] = []
        codes: list[int] = []
        with TestClient(create_app(settings)) as client:

            def ask(model: str) -> None:
                for _ in range(requests):
                    time.sleep(think_s)
                    started = time.monotonic()
                    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
                    resp = client.post("/v1/chat/completions", json={**body, "max_tokens": 5})
                    waits.append(time.monotonic() - started)
                    codes.append(resp.status_code)

            started = time.monotonic()
            threads = [threading.Thread(target=ask, args=(m,)) for m in MODELS]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.monotonic() - started
            samples = {
                s.name: s.value
                for f in text_string_to_metric_families(client.get("/metrics").text)
                for s in f.samples
            }
    return (
        f"swap_min_resident_s={hold:g}: {samples['llmserver_model_swaps_total']:.0f} swaps "
        f"({samples['llmserver_model_swap_seconds_total']:.1f} s), {codes.count(200)}/"
        f"{len(codes)} answered, longest wait {max(waits):.2f} s, {wall:.1f} s in all"
    )


def main() -> None:
    """Run each hold and print its line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--think", type=float, default=0.05, help="seconds between requests")
    parser.add_argument("--holds", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    parser.add_argument("--max-wait", type=float, default=2.0, help="swap_max_wait_s")
    args = parser.parse_args()
    for hold in args.holds:
        print(run(hold, args.requests, args.think, args.max_wait))


if __name__ == "__main__":
    main()
