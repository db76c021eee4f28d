"""The embedded :class:`~llmserver.jobs.store.Store`: SQLite in WAL mode with
``synchronous=FULL``, ``batches.sqlite3`` and the file bodies under ``files/`` in one folder.
Portable SQL only (see :mod:`llmserver.jobs.store`)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from llmserver.jobs.records import (
    ACTIVE,
    BatchRecord,
    FileRecord,
    LineOutcome,
    LineRecord,
    LineResult,
    NewBatch,
)
from llmserver.jobs.sqlite_db import transaction
from llmserver.jobs.store import IdempotencyConflict, now

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS files (
        id VARCHAR(64) PRIMARY KEY,
        owner VARCHAR(200) NOT NULL,
        purpose VARCHAR(32) NOT NULL,
        filename VARCHAR(512) NOT NULL,
        bytes BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS batches (
        id VARCHAR(64) PRIMARY KEY,
        owner VARCHAR(200) NOT NULL,
        caller TEXT NOT NULL,
        endpoint VARCHAR(64) NOT NULL,
        input_file_id VARCHAR(64) NOT NULL,
        completion_window VARCHAR(16) NOT NULL,
        status VARCHAR(16) NOT NULL,
        metadata TEXT,
        errors TEXT,
        model VARCHAR(200),
        output_file_id VARCHAR(64),
        error_file_id VARCHAR(64),
        total BIGINT NOT NULL DEFAULT 0,
        completed BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        prompt_tokens BIGINT NOT NULL DEFAULT 0,
        completion_tokens BIGINT NOT NULL DEFAULT 0,
        cached_tokens BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        in_progress_at BIGINT,
        finalizing_at BIGINT,
        completed_at BIGINT,
        failed_at BIGINT,
        expired_at BIGINT,
        cancelling_at BIGINT,
        cancelled_at BIGINT
    )""",
    """CREATE TABLE IF NOT EXISTS lines (
        batch_id VARCHAR(64) NOT NULL,
        line_no BIGINT NOT NULL,
        custom_id VARCHAR(512) NOT NULL,
        body TEXT NOT NULL,
        state VARCHAR(16) NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        claim VARCHAR(64),
        result TEXT,
        PRIMARY KEY (batch_id, line_no)
    )""",
    "CREATE INDEX IF NOT EXISTS lines_by_state ON lines (batch_id, state, line_no)",
    """CREATE TABLE IF NOT EXISTS idempotency (
        owner VARCHAR(200) NOT NULL,
        kind VARCHAR(16) NOT NULL,
        idem_key VARCHAR(255) NOT NULL,
        digest VARCHAR(64) NOT NULL,
        object_id VARCHAR(64) NOT NULL,
        PRIMARY KEY (owner, kind, idem_key)
    )""",
)

BATCH_COLUMNS = (
    "id, owner, caller, endpoint, input_file_id, completion_window, status, metadata, errors, "
    "model, output_file_id, error_file_id, total, completed, failed, prompt_tokens, "
    "completion_tokens, cached_tokens, created_at, expires_at, in_progress_at, finalizing_at, "
    "completed_at, failed_at, expired_at, cancelling_at, cancelled_at"
)
FILE_COLUMNS = "id, owner, purpose, filename, bytes, created_at"


class SQLiteStore:
    """The embedded default: ``batches.sqlite3`` and ``files/`` inside ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()
        self.db = self.root / "batches.sqlite3"
        self.files = self.root / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            for statement in SCHEMA:
                conn.execute(statement)

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self.db)

    # -- files ------------------------------------------------------------------------------------

    def file_path(self, file_id: str) -> Path:
        return self.files / file_id

    def _place(self, file_id: str, body: Path) -> None:
        target = self.file_path(file_id)
        with body.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(body, target)

    def add_file(self, record: FileRecord, body: Path, idem: tuple[str, str] | None) -> FileRecord:
        with self._connect() as conn:
            if idem is not None:
                found = self._idem(conn, record.owner, "file", *idem)
                if found is not None:
                    body.unlink(missing_ok=True)
                    existing = self._file(conn, found)
                    if existing is not None:
                        return existing
                self._remember(conn, record.owner, "file", *idem, record.id)
            self._place(record.id, body)
            conn.execute(
                f"INSERT INTO files ({FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (*file_row(record),),
            )
        return record

    def _file(self, conn: sqlite3.Connection, file_id: str) -> FileRecord | None:
        sql = f"SELECT {FILE_COLUMNS} FROM files WHERE id = ?"
        row = conn.execute(sql, (file_id,)).fetchone()
        return FileRecord(*row) if row else None

    def get_file(self, file_id: str) -> FileRecord | None:
        with self._connect() as conn:
            return self._file(conn, file_id)

    def list_files(
        self, owner: str | None, purpose: str | None, after: str | None, limit: int
    ) -> list[FileRecord]:
        where, args = page_where("files", owner, after)
        if purpose is not None:
            where += " AND purpose = ?"
            args.append(purpose)
        sql = f"SELECT {FILE_COLUMNS} FROM files WHERE {where} ORDER BY created_at DESC, id DESC"
        with self._connect() as conn:
            rows = conn.execute(f"{sql} LIMIT ?", (*args, limit)).fetchall()
        return [FileRecord(*row) for row in rows]

    def delete_file(self, file_id: str) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
        self.file_path(file_id).unlink(missing_ok=True)

    # -- idempotency ------------------------------------------------------------------------------

    def _idem(
        self, conn: sqlite3.Connection, owner: str, kind: str, key: str, digest: str
    ) -> str | None:
        sql = (
            "SELECT digest, object_id FROM idempotency "
            "WHERE owner = ? AND kind = ? AND idem_key = ?"
        )
        row = conn.execute(sql, (owner, kind, key)).fetchone()
        if row is None:
            return None
        if row[0] != digest:
            raise IdempotencyConflict(key)
        return str(row[1])

    def _remember(
        self, conn: sqlite3.Connection, owner: str, kind: str, key: str, digest: str, oid: str
    ) -> None:
        conn.execute(
            "INSERT INTO idempotency (owner, kind, idem_key, digest, object_id) "
            "VALUES (?, ?, ?, ?, ?)",
            (owner, kind, key, digest, oid),
        )

    def idempotent(self, owner: str, kind: str, key: str, digest: str) -> str | None:
        with self._connect() as conn:
            return self._idem(conn, owner, kind, key, digest)

    # -- batches ----------------------------------------------------------------------------------

    def add_batch(self, batch: NewBatch, idem: tuple[str, str] | None) -> BatchRecord:
        record = batch.record
        with self._connect() as conn:
            if idem is not None:
                found = self._idem(conn, record.owner, "batch", *idem)
                if found is not None and (existing := self._batch(conn, found)) is not None:
                    return existing
                self._remember(conn, record.owner, "batch", *idem, record.id)
            marks = ", ".join("?" * 27)
            conn.execute(
                f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES ({marks})", batch_row(record)
            )
            conn.executemany(
                "INSERT INTO lines (batch_id, line_no, custom_id, body, state) "
                "VALUES (?, ?, ?, ?, 'pending')",
                [(record.id, no, cid, body) for no, cid, body in batch.lines],
            )
        return record

    def _batch(self, conn: sqlite3.Connection, batch_id: str) -> BatchRecord | None:
        row = conn.execute(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,))
        found = row.fetchone()
        return batch_record(found) if found else None

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        with self._connect() as conn:
            return self._batch(conn, batch_id)

    def list_batches(self, owner: str | None, after: str | None, limit: int) -> list[BatchRecord]:
        where, args = page_where("batches", owner, after)
        sql = f"SELECT {BATCH_COLUMNS} FROM batches WHERE {where} ORDER BY created_at DESC, id DESC"
        with self._connect() as conn:
            rows = conn.execute(f"{sql} LIMIT ?", (*args, limit)).fetchall()
        return [batch_record(row) for row in rows]

    def active_batches(self) -> list[BatchRecord]:
        marks = ", ".join("?" * len(ACTIVE))
        sql = (
            f"SELECT {BATCH_COLUMNS} FROM batches WHERE status IN ({marks}) ORDER BY created_at, id"
        )
        with self._connect() as conn:
            rows = conn.execute(sql, ACTIVE).fetchall()
        return [batch_record(row) for row in rows]

    def set_status(
        self, batch_id: str, status: str, when: str | None, only_from: Sequence[str]
    ) -> bool:
        marks = ", ".join("?" * len(only_from))
        stamp = f", {when} = ?" if when else ""
        args: list[Any] = [status, *([now()] if when else []), batch_id, *only_from]
        sql = f"UPDATE batches SET status = ?{stamp} WHERE id = ? AND status IN ({marks})"
        with self._connect() as conn:
            return conn.execute(sql, args).rowcount == 1

    # -- lines ------------------------------------------------------------------------------------

    def claim(self, batch_id: str, limit: int) -> list[LineRecord]:
        token = uuid.uuid4().hex
        with self._connect() as conn:
            conn.execute(
                "UPDATE lines SET state = 'running', claim = ? WHERE batch_id = ? AND line_no IN "
                "(SELECT line_no FROM lines WHERE batch_id = ? AND state = 'pending' "
                "ORDER BY line_no LIMIT ?)",
                (token, batch_id, batch_id, limit),
            )
            rows = conn.execute(
                "SELECT batch_id, line_no, custom_id, body, attempts, claim FROM lines "
                "WHERE batch_id = ? AND claim = ? AND state = 'running' ORDER BY line_no",
                (batch_id, token),
            ).fetchall()
        return [LineRecord(*row) for row in rows]

    def retry_later(self, line: LineRecord) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE lines SET attempts = attempts + 1 WHERE batch_id = ? AND line_no = ? "
                "AND claim = ?",
                (line.batch_id, line.line_no, line.claim),
            )

    def finish_line(self, line: LineRecord, outcome: LineOutcome) -> bool:
        state = "done" if outcome.ok else "failed"
        with self._connect() as conn:
            changed = conn.execute(
                "UPDATE lines SET state = ?, result = ?, attempts = attempts + 1 "
                "WHERE batch_id = ? AND line_no = ? AND claim = ? AND state = 'running'",
                (
                    state,
                    orjson.dumps(outcome.result).decode(),
                    line.batch_id,
                    line.line_no,
                    line.claim,
                ),
            ).rowcount
            if changed != 1:
                return False
            counter = "completed" if outcome.ok else "failed"
            conn.execute(
                f"UPDATE batches SET {counter} = {counter} + 1, "
                "prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ?, "
                "cached_tokens = cached_tokens + ?, model = COALESCE(model, ?) WHERE id = ?",
                (
                    outcome.prompt_tokens,
                    outcome.completion_tokens,
                    outcome.cached_tokens,
                    outcome.model,
                    line.batch_id,
                ),
            )
        return True

    def end_unfinished(self, batch_id: str, outcome: LineOutcome) -> int:
        with self._connect() as conn:
            count = conn.execute(
                "UPDATE lines SET state = 'failed', result = ?, claim = NULL "
                "WHERE batch_id = ? AND state IN ('pending', 'running')",
                (orjson.dumps(outcome.result).decode(), batch_id),
            ).rowcount
            conn.execute("UPDATE batches SET failed = failed + ? WHERE id = ?", (count, batch_id))
        return int(count)

    def unfinished(self, batch_id: str) -> int:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM lines WHERE batch_id = ? AND state IN ('pending', 'running')",
                (batch_id,),
            ).fetchone()
        return int(row[0])

    def results(self, batch_id: str) -> Iterator[LineResult]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT line_no, custom_id, state, result FROM lines "
                "WHERE batch_id = ? AND state IN ('done', 'failed') ORDER BY line_no",
                (batch_id,),
            )
            for line_no, custom_id, state, result in rows:
                yield LineResult(line_no, custom_id, state == "done", orjson.loads(result))

    def add_output_file(self, record: FileRecord, body: Path) -> None:
        with self._connect() as conn:
            self._place(record.id, body)
            conn.execute("DELETE FROM files WHERE id = ?", (record.id,))
            conn.execute(
                f"INSERT INTO files ({FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", file_row(record)
            )

    def set_outputs(self, batch_id: str, output_id: str | None, error_id: str | None) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE batches SET output_file_id = ?, error_file_id = ? WHERE id = ?",
                (output_id, error_id, batch_id),
            )

    def recover(self) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE lines SET state = 'pending', claim = NULL WHERE state = 'running'")

    def renew(self, claims: Sequence[str]) -> None:
        """One process owns the file: its claims need no lease."""

    def ping(self) -> None:
        """A local file is always there."""


def page_where(table: str, owner: str | None, after: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause of one page, newest first, after the object ``after``."""
    where, args = "1 = 1", []
    if owner is not None:
        where += " AND owner = ?"
        args.append(owner)
    if after is not None:
        where += (
            f" AND (created_at < (SELECT created_at FROM {table} WHERE id = ?) OR "
            f"(created_at = (SELECT created_at FROM {table} WHERE id = ?) AND id < ?))"
        )
        args += [after, after, after]
    return where, args


def file_row(record: FileRecord) -> tuple[Any, ...]:
    return (
        record.id,
        record.owner,
        record.purpose,
        record.filename,
        record.bytes,
        record.created_at,
    )


def batch_row(r: BatchRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.owner,
        orjson.dumps(r.caller).decode(),
        r.endpoint,
        r.input_file_id,
        r.completion_window,
        r.status,
        None if r.metadata is None else orjson.dumps(r.metadata).decode(),
        None if r.errors is None else orjson.dumps(r.errors).decode(),
        r.model,
        r.output_file_id,
        r.error_file_id,
        r.total,
        r.completed,
        r.failed,
        r.prompt_tokens,
        r.completion_tokens,
        r.cached_tokens,
        r.created_at,
        r.expires_at,
        r.in_progress_at,
        r.finalizing_at,
        r.completed_at,
        r.failed_at,
        r.expired_at,
        r.cancelling_at,
        r.cancelled_at,
    )


def batch_record(row: Sequence[Any]) -> BatchRecord:
    values = list(row)
    values[2] = orjson.loads(values[2])
    for i in (7, 8):
        values[i] = None if values[i] is None else orjson.loads(values[i])
    return BatchRecord(*values)
