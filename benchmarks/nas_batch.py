"""The NAS workload of issue 12: 150 news articles, one shared instruction of a few hundred
tokens, 64 output tokens each; sent as one batch, or interactively with ``llmserver bench``.

    python benchmarks/nas_batch.py prepare DIR          # DIR/prompts.jsonl, DIR/batch.jsonl
    python benchmarks/nas_batch.py batch DIR --base-url http://127.0.0.1:8000/v1
    llmserver bench --prompts DIR/prompts.jsonl --output-tokens 64 ...   # the interactive side

``batch`` uploads ``batch.jsonl``, creates the batch and prints the wall time from the create
call to ``completed`` (the upload is not counted), with the output tokens per second.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from pathlib import Path

import openai

LINES = 150
OUTPUT_TOKENS = 64
INSTRUCTION = (
    "You are the news desk assistant of a small home server. For every article you are given, "
    "write a short analysis for the morning digest. Start with one sentence that says what "
    "happened, who is involved and where it happened. Then give the topic as one of: politics, "
    "economy, science, technology, health, environment, culture, sport, local. Then rate how "
    "important the article is for a reader who lives in the region on a scale from one to five, "
    "where one means it can be skipped and five means the reader should read it today, and "
    "explain the rating in one sentence. Then list at most three named people, organisations "
    "or places that the article mentions, in the order they appear. Then say whether the "
    "article reports facts, gives an opinion, or mixes both, and name the sentence that made "
    "you decide. Do not invent facts that are not in the article. Do not repeat the article. "
    "Do not add greetings or closing remarks. If the article is too short to analyse, say so "
    "in one sentence and stop. Keep the whole analysis under sixty words, use plain English, "
    "and avoid abbreviations that a general reader might not know. The digest is read on a "
    "phone early in the morning, so short sentences are better than long ones, and the most "
    "important fact always comes first. When the article gives numbers, keep the two most "
    "important ones and round them. When the article quotes someone, name the person and "
    "their role, but do not copy the quote. When the article is about an event that has not "
    "happened yet, give its date. Treat press releases as opinion unless they cite sources."
)
_WORDS_TEXT = (
    "council city river bridge school budget vote mayor plan road water energy storm park "
    "hospital company jobs market price rail station festival museum club team match season "
    "police court report study university farmers harvest weather flood summer winter "
    "election minister law tax housing rent village library theatre airport port ship"
)
WORDS = _WORDS_TEXT.split()


def article(i: int) -> str:
    """A unique made-up article of about 150 tokens."""
    rng = random.Random(i)
    sentences = []
    for _ in range(10):
        words = [rng.choice(WORDS) for _ in range(rng.randint(10, 14))]
        sentences.append(" ".join(words).capitalize() + ".")
    return f"Article {i}: " + " ".join(sentences)


def messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": INSTRUCTION},
        {"role": "user", "content": article(i)},
    ]


def prepare(out: Path, lines: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "prompts.jsonl").open("w") as prompts, (out / "batch.jsonl").open("w") as batch:
        for i in range(lines):
            prompts.write(json.dumps({"messages": messages(i)}) + "\n")
            body = {
                "messages": messages(i),
                "max_tokens": OUTPUT_TOKENS,
                "min_tokens": OUTPUT_TOKENS,
                "ignore_eos": True,
            }
            line = {"custom_id": f"article-{i}", "method": "POST", "url": "/v1/chat/completions"}
            batch.write(json.dumps({**line, "body": body}) + "\n")


def run_batch(out: Path, base_url: str, api_key: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key=api_key)
    data = (out / "batch.jsonl").read_bytes()
    file_id = client.files.create(file=("batch.jsonl", io.BytesIO(data)), purpose="batch").id
    started = time.perf_counter()
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        batch = client.batches.retrieve(batch.id, extra_query={"wait": 5})
    wall = time.perf_counter() - started
    counts, usage = batch.request_counts, batch.usage
    assert counts is not None
    assert usage is not None
    print(
        json.dumps(
            {
                "batch": batch.id,
                "status": batch.status,
                "completed": counts.completed,
                "failed": counts.failed,
                "wall_s": round(wall, 2),
                "output_tokens": usage.output_tokens,
                "input_tokens": usage.input_tokens,
                "output_tok_per_s": round(usage.output_tokens / wall, 1),
                "req_per_s": round(counts.completed / wall, 3),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=("prepare", "batch"))
    parser.add_argument("dir", type=Path)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="unused")
    parser.add_argument("--lines", type=int, default=LINES, help="articles (default: 150)")
    args = parser.parse_args()
    if args.action == "prepare":
        prepare(args.dir, args.lines)
    else:
        run_batch(args.dir, args.base_url, args.api_key)


if __name__ == "__main__":
    main()
