"""Stored responses of the Responses API: one table in the jobs' SQLite database.

A row holds the response object as last written, the request's own input items, the whole
conversation up to the response's output (what a ``previous_response_id`` continues from) and
the stream's events (replayed by ``GET /v1/responses/{id}?stream=true``). Rows belong to the
key that created them and expire ``responses_retention_s`` after creation. Plain SQL that
PostgreSQL runs too (``INSERT ... ON CONFLICT ... DO UPDATE``), as :mod:`llmserver.jobs.store`
asks of every statement.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from llmserver.jobs.sqlite_db import transaction

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS responses (
        id VARCHAR(64) PRIMARY KEY,
        owner VARCHAR(200) NOT NULL,
        status VARCHAR(16) NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        body TEXT NOT NULL,
        inputs TEXT NOT NULL,
        conversation TEXT NOT NULL,
        events TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS responses_by_expiry ON responses (expires_at)",
)

COLUMNS = "id, owner, status, created_at, expires_at, body, inputs, conversation, events"


@dataclass(slots=True)
class StoredResponse:
    """One stored response; ``events`` is None until its run has ended."""

    id: str
    owner: str
    created_at: int
    expires_at: int
    body: dict[str, Any]
    inputs: list[dict[str, Any]]
    conversation: list[dict[str, Any]]
    events: list[dict[str, Any]] | None = None

    @property
    def status(self) -> str:
        """The response's ``status``."""
        return str(self.body.get("status", ""))


class Responses(Protocol):
    """What :class:`~llmserver.jobs.response_runs.ResponseRuns` needs from a store of
    responses (:class:`ResponseStore`, or the PostgreSQL one for several gateways)."""

    def put(self, record: StoredResponse) -> None:
        """Store ``record``, replacing an earlier version of it."""

    def get(self, response_id: str, owner: str, now: int) -> StoredResponse | None:
        """The response if ``owner`` created it and it has not expired, else None."""

    def interrupted(self) -> int:
        """After a restart: this process's unfinished background responses become
        ``failed``; how many."""

    def delete(self, response_id: str, owner: str) -> bool:
        """Remove ``owner``'s response; False when there was none."""

    def purge(self, now: int) -> int:
        """Remove the responses past their retention; how many."""


def interrupted_body(raw: str) -> str:
    """A running response's body as ``failed`` by a restart."""
    body = orjson.loads(raw)
    body["status"] = "failed"
    body["error"] = {
        "code": "server_error",
        "message": "The server restarted while this response was running.",
    }
    return orjson.dumps(body).decode()


def stored(row: Sequence[Any]) -> StoredResponse:
    """A row of ``COLUMNS`` as a :class:`StoredResponse`."""
    events = None if row[8] is None else orjson.loads(row[8])
    return StoredResponse(
        row[0],
        row[1],
        row[3],
        row[4],
        orjson.loads(row[5]),
        orjson.loads(row[6]),
        orjson.loads(row[7]),
        events,
    )


def response_row(record: StoredResponse) -> tuple[Any, ...]:
    """The values of ``COLUMNS`` for ``record``."""
    events = None if record.events is None else orjson.dumps(record.events).decode()
    return (
        record.id,
        record.owner,
        record.status,
        record.created_at,
        record.expires_at,
        orjson.dumps(record.body).decode(),
        orjson.dumps(record.inputs).decode(),
        orjson.dumps(record.conversation).decode(),
        events,
    )


class ResponseStore:
    """Stored responses in the SQLite database ``db`` (the batch store's)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        db.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            for statement in SCHEMA:
                conn.execute(statement)

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self.db)

    def put(self, record: StoredResponse) -> None:
        """Store ``record``, replacing an earlier version of it."""
        row = response_row(record)
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO responses ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
                "body = excluded.body, events = excluded.events",
                row,
            )

    def get(self, response_id: str, owner: str, now: int) -> StoredResponse | None:
        """The response if ``owner`` created it and it has not expired, else None."""
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM responses WHERE id = ? AND owner = ? AND expires_at > ?",
                (response_id, owner, now),
            ).fetchone()
        return None if row is None else stored(row)

    def interrupted(self) -> int:
        """After a restart: every response whose background run was still going is
        ``failed`` (its run died with the old process); how many."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, body FROM responses WHERE status IN ('queued', 'in_progress')"
            ).fetchall()
            for response_id, raw in rows:
                conn.execute(
                    "UPDATE responses SET status = 'failed', body = ? WHERE id = ?",
                    (interrupted_body(raw), response_id),
                )
        return len(rows)

    def delete(self, response_id: str, owner: str) -> bool:
        """Remove ``owner``'s response; False when there was none."""
        with self._connect() as conn:
            cursor = conn.execute(
                "DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner)
            )
        return cursor.rowcount > 0

    def purge(self, now: int) -> int:
        """Remove the responses past their retention; how many."""
        with self._connect() as conn:
            cursor = conn.execute("DELETE FROM responses WHERE expires_at <= ?", (now,))
        return cursor.rowcount
