"""Token usage per key name, model and day in SQLite, written in batches off the request path.

Requests only add to an in-memory tally (a dict update under a lock); a background thread writes
the tally every ``flush_s`` seconds and once more at shutdown, so a crash loses at most the last
few seconds of counts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llmserver.config.settings import Settings
from llmserver.errors import StoreUnavailableError
from llmserver.observability.logs import AccessRecord, FinishedRequest

logger = logging.getLogger("llmserver.accounting")

ANONYMOUS = "anonymous"  # the key name when the server runs without API keys
SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL,
    key_name TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_name, model)
)
"""
UPSERT = """
INSERT INTO usage (day, key_name, model, requests, prompt_tokens, completion_tokens)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (day, key_name, model) DO UPDATE SET
    requests = requests + excluded.requests,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens
"""
COLUMNS = ("day", "key_name", "model", "requests", "prompt_tokens", "completion_tokens")

Tally = dict[tuple[str, str, str], list[int]]


def usage_db_path(settings: Settings) -> Path:
    """The usage database: ``usage_db``, else ``usage.sqlite3`` in ``data_dir``."""
    return settings.data_file(settings.usage_db, "usage.sqlite3")


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One day's usage of one model by one key."""

    day: str
    key_name: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int

    def body(self) -> dict[str, Any]:
        """As JSON, with the total."""
        return {
            "day": self.day,
            "key_name": self.key_name,
            "model": self.model,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


class Usages(Protocol):
    """Where counts go: :class:`UsageStore` (SQLite, this process's), or the PostgreSQL table
    several gateways share (:mod:`llmserver.observability.pg_usage`)."""

    def add(self, tally: Tally) -> None:
        """Add a batch of counts in one transaction."""

    def query(self, since: dt.date | None = None) -> list[UsageRow]:
        """Usage from ``since`` (a UTC day) on, oldest first."""


class UsageStore:
    """The SQLite file. Each call opens its own connection, so any thread may use it."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()

    def __str__(self) -> str:
        return str(self.path)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SCHEMA)
            with conn:  # one transaction
                yield conn
        finally:
            conn.close()

    def add(self, tally: Tally) -> None:
        """Add a batch of counts in one transaction."""
        rows = [(*key, *counts) for key, counts in tally.items()]
        with self._connect() as conn:
            conn.executemany(UPSERT, rows)

    def query(self, since: dt.date | None = None) -> list[UsageRow]:
        """Usage from ``since`` (a UTC day) on, oldest first."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM usage WHERE day >= ? ORDER BY day, key_name, model"
        with self._connect() as conn:
            rows = conn.execute(sql, (since.isoformat() if since else "",)).fetchall()
        return [UsageRow(*row) for row in rows]


class UsageRecorder:
    """Collects counts from requests and flushes them to a :class:`UsageStore` in the background."""

    def __init__(self, store: Usages, flush_s: float = 1.0) -> None:
        self.store = store
        self.flush_s = flush_s
        self._tally: Tally = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, key_name: str | None, model: str, prompt: int, completion: int) -> None:
        """Count one request (cheap: runs on the request path)."""
        day = dt.datetime.now(dt.UTC).date().isoformat()
        key = (day, key_name or ANONYMOUS, model)
        with self._lock:
            counts = self._tally.setdefault(key, [0, 0, 0])
            counts[0] += 1
            counts[1] += prompt
            counts[2] += completion

    def request_started(self, record: AccessRecord) -> None:
        """Nothing is counted before a request has been answered."""

    def request_finished(self, done: FinishedRequest) -> None:
        """Count a request that used a model (the access log's observer call)."""
        record, usage = done.record, done.record.usage
        if record.model and (usage.prompt_tokens or usage.completion_tokens):
            self.record(record.key_name, record.model, usage.prompt_tokens, usage.completion_tokens)
        for model, extra in record.extra:  # the router model's tokens, under its own name
            self.record(record.key_name, model, extra.prompt_tokens, extra.completion_tokens)

    def flush(self) -> None:
        """Write what has been counted so far; on failure keep it for the next try."""
        with self._write_lock:
            with self._lock:
                tally, self._tally = self._tally, {}
            if not tally:
                return
            try:
                self.store.add(tally)
            except (sqlite3.Error, StoreUnavailableError):
                logger.exception("writing usage to %s failed; will retry", self.store)
                with self._lock:
                    for key, counts in tally.items():
                        mine = self._tally.setdefault(key, [0, 0, 0])
                        for i, value in enumerate(counts):
                            mine[i] += value

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def start(self) -> None:
        """Start the flushing thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write the rest (called at shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()


def usage_table(rows: list[UsageRow]) -> str:
    """Rows as an aligned plain-text table, with a total line."""
    head = ("day", "key", "model", "requests", "prompt", "completion", "total")
    body = [
        (
            r.day,
            r.key_name,
            r.model,
            str(r.requests),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            str(r.prompt_tokens + r.completion_tokens),
        )
        for r in rows
    ]
    prompt = sum(r.prompt_tokens for r in rows)
    completion = sum(r.completion_tokens for r in rows)
    total = ("total", "", "", str(sum(r.requests for r in rows)), str(prompt), str(completion))
    body.append((*total, str(prompt + completion)))
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]

    def fmt(line: tuple[str, ...]) -> str:
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in pairs]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(head), *(fmt(line) for line in body)])
