"""``llmserver batch``: submit, watch, list, cancel and fetch batches on any llmserver (or any
server with OpenAI's Files and Batches API). The key comes from ``--api-key``, else the
``LLMSERVER_API_KEY`` or ``OPENAI_API_KEY`` environment variable."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

DEFAULT_URL = "http://127.0.0.1:8000/v1"
FINAL = {"completed", "failed", "expired", "cancelled"}
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")


class BatchCommandError(Exception):
    """A request failed; the message is the server's error message."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``batch`` sub-commands."""
    parser.add_argument(
        "--base-url",
        default=os.environ.get("LLMSERVER_URL", DEFAULT_URL),
        help="base URL ending in /v1 (default: $LLMSERVER_URL or %(default)s)",
    )
    parser.add_argument(
        "--api-key", help="API key (default: $LLMSERVER_API_KEY, else $OPENAI_API_KEY)"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    submit = actions.add_parser("submit", help="upload a JSONL file and create a batch")
    submit.add_argument("file", type=Path, help="the input file, one request per line")
    submit.add_argument("--endpoint", choices=ENDPOINTS, default=ENDPOINTS[0])
    submit.add_argument("--window", default="24h", help="completion window (default: 24h)")
    submit.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--idempotency-key", help="send this Idempotency-Key (safe to retry)")
    submit.add_argument("--wait", action="store_true", help="show progress until it ends")
    listing = actions.add_parser("list", help="your batches, newest first")
    listing.add_argument("--limit", type=int, default=20)
    for name, text in (("status", "one batch as JSON"), ("cancel", "cancel a batch")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("id")
    results = actions.add_parser("results", help="a batch's output (or error) lines")
    results.add_argument("id")
    results.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    results.add_argument("--errors", action="store_true", help="the error file instead")


class Client:
    """The few calls the command makes."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base = base_url.rstrip("/")

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session.request(method, self.base + path, **kwargs) as resp:
            body = await resp.read()
            if resp.status >= 400:
                try:
                    message = orjson.loads(body)["error"]["message"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    message = body.decode(errors="replace")[:300]
                raise BatchCommandError(f"{method} {path}: {resp.status} {message}")
            return orjson.loads(body)

    async def content(self, file_id: str) -> bytes:
        async with self.session.get(f"{self.base}/files/{file_id}/content") as resp:
            if resp.status >= 400:
                raise BatchCommandError(f"GET /files/{file_id}/content: {resp.status}")
            return await resp.read()


def _progress(batch: dict[str, Any], started: float, first_tokens: int) -> str:
    counts = batch.get("request_counts") or {}
    total, done, failed = (
        counts.get("total", 0),
        counts.get("completed", 0),
        counts.get("failed", 0),
    )
    tokens = (batch.get("usage") or {}).get("output_tokens", 0) - first_tokens
    rate = tokens / max(time.monotonic() - started, 1e-6)
    width = 30
    filled = int(width * (done + failed) / total) if total else 0
    bar = "#" * filled + "-" * (width - filled)
    return f"\r[{bar}] {done}/{total} done, {failed} failed, {rate:.1f} tok/s  {batch['status']}  "


async def _watch(client: Client, batch_id: str) -> dict[str, Any]:
    started = time.monotonic()
    batch: dict[str, Any] = await client.call("GET", f"/batches/{batch_id}")
    first_tokens = (batch.get("usage") or {}).get("output_tokens", 0)
    while batch["status"] not in FINAL:
        sys.stderr.write(_progress(batch, started, first_tokens))
        sys.stderr.flush()
        await asyncio.sleep(1)
        batch = await client.call("GET", f"/batches/{batch_id}")
    sys.stderr.write(_progress(batch, started, first_tokens) + "\n")
    return batch


async def _submit(client: Client, args: argparse.Namespace) -> int:
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", args.file.read_bytes(), filename=args.file.name)
    uploaded = await client.call("POST", "/files", data=form, headers=headers)
    metadata = dict(item.split("=", 1) for item in args.metadata) or None
    body = {
        "input_file_id": uploaded["id"],
        "endpoint": args.endpoint,
        "completion_window": args.window,
        "metadata": metadata,
    }
    batch = await client.call("POST", "/batches", json=body, headers=headers)
    print(batch["id"])
    if batch["status"] == "failed":
        for error in (batch.get("errors") or {}).get("data") or []:
            print(
                f"line {error.get('line')}: {error.get('param')}: {error['message']}",
                file=sys.stderr,
            )
        return 1
    if not args.wait:
        return 0
    batch = await _watch(client, batch["id"])
    return 0 if batch["status"] == "completed" else 1


async def _run(args: argparse.Namespace) -> int:
    key = args.api_key or os.environ.get("LLMSERVER_API_KEY") or os.environ.get("OPENAI_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        client = Client(session, args.base_url)
        if args.action == "submit":
            return await _submit(client, args)
        if args.action == "list":
            page = await client.call("GET", "/batches", params={"limit": str(args.limit)})
            for b in page["data"]:
                c = b.get("request_counts") or {}
                print(
                    f"{b['id']}  {b['status']:<11} {c.get('completed', 0)}/{c.get('total', 0)} done"
                    f"  {c.get('failed', 0)} failed  {b['endpoint']}"
                )
            return 0
        if args.action in ("status", "cancel"):
            path = f"/batches/{args.id}" + ("/cancel" if args.action == "cancel" else "")
            batch = await client.call("POST" if args.action == "cancel" else "GET", path)
            print(orjson.dumps(batch, option=orjson.OPT_INDENT_2).decode())
            return 0
        batch = await client.call("GET", f"/batches/{args.id}")
        file_id = batch.get("error_file_id" if args.errors else "output_file_id")
        data = b"" if file_id is None else await client.content(file_id)
        if args.output is not None:
            args.output.write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
        return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of ``llmserver batch``."""
    try:
        return asyncio.run(_run(args))
    except (BatchCommandError, aiohttp.ClientError, OSError) as exc:
        print(f"llmserver batch: {exc}", file=sys.stderr)
        return 1
