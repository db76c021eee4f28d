"""The :class:`~llmserver.jobs.store.Store` for several gateways: PostgreSQL (``store:
postgresql://...``). The same tables and statements as :mod:`llmserver.jobs.sqlite_store`, and:

- **Claims** take pending lines with ``FOR UPDATE SKIP LOCKED`` (two gateways never take the
  same line) and give them a lease (``lease_until``, the database's clock, so gateways' clocks
  need not agree) and the claiming gateway's id. A runner renews its leases; a line whose lease
  ran out (its gateway died or lost the database) is claimed again under a new token, and the
  old claimant's result is refused (:meth:`finish_line` checks the token), so each line's
  result is written exactly once.
- **File bodies live in the database**, as ``bytea`` chunks of 1 MiB in ``file_chunks``: every
  gateway reads every file with no shared disk to set up, and a file is in the same backup as
  the batch that uses it. Each gateway copies a body it needs (validation, download) into a
  local cache under ``data_dir`` once; cached copies are named by id and creation time, so an
  output file written again is fetched again.
"""

from __future__ import annotations

import contextlib
import os
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
from llmserver.jobs.sqlite_store import (
    BATCH_COLUMNS,
    FILE_COLUMNS,
    SCHEMA,
    batch_record,
    batch_row,
    file_row,
    page_where,
)
from llmserver.jobs.store import IdempotencyConflict, now
from llmserver.pg import Database, q

CHUNK = 1 << 20

PG_SCHEMA = (
    *SCHEMA,
    "ALTER TABLE lines ADD COLUMN IF NOT EXISTS claimed_by VARCHAR(200)",
    "ALTER TABLE lines ADD COLUMN IF NOT EXISTS lease_until TIMESTAMPTZ",
    "CREATE INDEX IF NOT EXISTS lines_by_claim ON lines (claim)",
    """CREATE TABLE IF NOT EXISTS file_chunks (
        file_id VARCHAR(64) NOT NULL,
        seq INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (file_id, seq)
    )""",
)

_LEASE = "now() + make_interval(secs => %s)"


class PostgresStore:
    """Batch jobs and files in PostgreSQL, shared by every gateway using ``db``."""

    def __init__(self, db: Database, cache: Path, gateway: str, lease_s: float) -> None:
        self.db = db
        self.cache = cache.expanduser()
        self.cache.mkdir(parents=True, exist_ok=True)
        self.gateway = gateway
        self.lease_s = lease_s
        db.add_schema(PG_SCHEMA)

    # -- file bodies ------------------------------------------------------------------------------

    def _cached(self, record: FileRecord) -> Path:
        return self.cache / f"{record.id}.{record.created_at}"

    def file_path(self, file_id: str) -> Path:
        if file_id.startswith("."):  # an upload being written
            return self.cache / file_id
        record = self.get_file(file_id)
        if record is None:
            return self.cache / file_id  # callers look the record up first; a 404 is theirs
        target = self._cached(record)
        if target.exists() and target.stat().st_size == record.bytes:
            return target
        tmp = self.cache / f".{file_id}.{uuid.uuid4().hex}.part"
        with self.db.connect() as conn, tmp.open("wb") as out:
            cursor = conn.execute(
                "SELECT data FROM file_chunks WHERE file_id = %s ORDER BY seq", (file_id,)
            )
            for (data,) in cursor:
                out.write(data)
        os.replace(tmp, target)
        return target

    def _put_body(self, conn: Any, record: FileRecord, body: Path) -> None:
        conn.execute("DELETE FROM file_chunks WHERE file_id = %s", (record.id,))
        with body.open("rb") as handle:
            seq = 0
            while data := handle.read(CHUNK):
                conn.execute(
                    "INSERT INTO file_chunks (file_id, seq, data) VALUES (%s, %s, %s)",
                    (record.id, seq, data),
                )
                seq += 1

    def _keep(self, record: FileRecord, body: Path) -> None:
        """The uploaded body becomes this gateway's cached copy."""
        with contextlib.suppress(OSError):
            os.replace(body, self._cached(record))

    # -- files ------------------------------------------------------------------------------------

    def add_file(self, record: FileRecord, body: Path, idem: tuple[str, str] | None) -> FileRecord:
        with self.db.connect() as conn:
            if idem is not None:
                found = self._idem(conn, record.owner, "file", *idem)
                if found is not None:
                    body.unlink(missing_ok=True)
                    existing = self._file(conn, found)
                    if existing is not None:
                        return existing
                self._remember(conn, record.owner, "file", *idem, record.id)
            self._put_body(conn, record, body)
            conn.execute(
                q(f"INSERT INTO files ({FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"), file_row(record)
            )
        self._keep(record, body)
        return record

    def _file(self, conn: Any, file_id: str) -> FileRecord | None:
        sql = f"SELECT {FILE_COLUMNS} FROM files WHERE id = %s"
        row = conn.execute(sql, (file_id,)).fetchone()
        return FileRecord(*row) if row else None

    def get_file(self, file_id: str) -> FileRecord | None:
        with self.db.connect() as conn:
            return self._file(conn, file_id)

    def list_files(
        self, owner: str | None, purpose: str | None, after: str | None, limit: int
    ) -> list[FileRecord]:
        where, args = page_where("files", owner, after)
        if purpose is not None:
            where += " AND purpose = ?"
            args.append(purpose)
        sql = f"SELECT {FILE_COLUMNS} FROM files WHERE {where} ORDER BY created_at DESC, id DESC"
        with self.db.connect() as conn:
            rows = conn.execute(q(f"{sql} LIMIT ?"), (*args, limit)).fetchall()
        return [FileRecord(*row) for row in rows]

    def delete_file(self, file_id: str) -> None:
        with self.db.connect() as conn:
            record = self._file(conn, file_id)
            conn.execute("DELETE FROM files WHERE id = %s", (file_id,))
            conn.execute("DELETE FROM file_chunks WHERE file_id = %s", (file_id,))
        if record is not None:
            self._cached(record).unlink(missing_ok=True)

    # -- idempotency ------------------------------------------------------------------------------

    def _idem(self, conn: Any, owner: str, kind: str, key: str, digest: str) -> str | None:
        row = conn.execute(
            "SELECT digest, object_id FROM idempotency "
            "WHERE owner = %s AND kind = %s AND idem_key = %s",
            (owner, kind, key),
        ).fetchone()
        if row is None:
            return None
        if row[0] != digest:
            raise IdempotencyConflict(key)
        return str(row[1])

    def _remember(self, conn: Any, owner: str, kind: str, key: str, digest: str, oid: str) -> None:
        conn.execute(
            "INSERT INTO idempotency (owner, kind, idem_key, digest, object_id) "
            "VALUES (%s, %s, %s, %s, %s)",
            (owner, kind, key, digest, oid),
        )

    def idempotent(self, owner: str, kind: str, key: str, digest: str) -> str | None:
        with self.db.connect() as conn:
            return self._idem(conn, owner, kind, key, digest)

    # -- batches ----------------------------------------------------------------------------------

    def add_batch(self, batch: NewBatch, idem: tuple[str, str] | None) -> BatchRecord:
        record = batch.record
        with self.db.connect() as conn:
            if idem is not None:
                found = self._idem(conn, record.owner, "batch", *idem)
                if found is not None and (existing := self._batch(conn, found)) is not None:
                    return existing
                self._remember(conn, record.owner, "batch", *idem, record.id)
            marks = ", ".join(["%s"] * 27)
            conn.execute(
                f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES ({marks})", batch_row(record)
            )
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO lines (batch_id, line_no, custom_id, body, state) "
                    "VALUES (%s, %s, %s, %s, 'pending')",
                    [(record.id, no, cid, body) for no, cid, body in batch.lines],
                )
        return record

    def _batch(self, conn: Any, batch_id: str) -> BatchRecord | None:
        row = conn.execute(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = %s", (batch_id,))
        found = row.fetchone()
        return batch_record(found) if found else None

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        with self.db.connect() as conn:
            return self._batch(conn, batch_id)

    def list_batches(self, owner: str | None, after: str | None, limit: int) -> list[BatchRecord]:
        where, args = page_where("batches", owner, after)
        sql = f"SELECT {BATCH_COLUMNS} FROM batches WHERE {where} ORDER BY created_at DESC, id DESC"
        with self.db.connect() as conn:
            rows = conn.execute(q(f"{sql} LIMIT ?"), (*args, limit)).fetchall()
        return [batch_record(row) for row in rows]

    def active_batches(self) -> list[BatchRecord]:
        sql = f"SELECT {BATCH_COLUMNS} FROM batches WHERE status = ANY(%s) ORDER BY created_at, id"
        with self.db.connect() as conn:
            rows = conn.execute(sql, (list(ACTIVE),)).fetchall()
        return [batch_record(row) for row in rows]

    def set_status(
        self, batch_id: str, status: str, when: str | None, only_from: Sequence[str]
    ) -> bool:
        stamp = f", {when} = %s" if when else ""
        args: list[Any] = [status, *([now()] if when else []), batch_id, list(only_from)]
        sql = f"UPDATE batches SET status = %s{stamp} WHERE id = %s AND status = ANY(%s)"
        with self.db.connect() as conn:
            return int(conn.execute(sql, args).rowcount) == 1

    # -- lines ------------------------------------------------------------------------------------

    def claim(self, batch_id: str, limit: int) -> list[LineRecord]:
        token = uuid.uuid4().hex
        with self.db.connect() as conn:
            rows = conn.execute(
                "WITH picked AS (SELECT line_no FROM lines WHERE batch_id = %s AND "
                "(state = 'pending' OR (state = 'running' AND "
                "(lease_until IS NULL OR lease_until < now()))) "
                "ORDER BY line_no LIMIT %s FOR UPDATE SKIP LOCKED) "
                f"UPDATE lines SET state = 'running', claim = %s, claimed_by = %s, "
                f"lease_until = {_LEASE} FROM picked "
                "WHERE lines.batch_id = %s AND lines.line_no = picked.line_no "
                "RETURNING lines.batch_id, lines.line_no, lines.custom_id, lines.body, "
                "lines.attempts, lines.claim",
                (batch_id, limit, token, self.gateway, self.lease_s, batch_id),
            ).fetchall()
        return sorted((LineRecord(*row) for row in rows), key=lambda line: line.line_no)

    def renew(self, claims: Sequence[str]) -> None:
        if not claims:
            return
        with self.db.connect() as conn:
            conn.execute(
                f"UPDATE lines SET lease_until = {_LEASE} "
                "WHERE claim = ANY(%s) AND state = 'running'",
                (self.lease_s, list(claims)),
            )

    def retry_later(self, line: LineRecord) -> None:
        with self.db.connect() as conn:
            conn.execute(
                "UPDATE lines SET attempts = attempts + 1 WHERE batch_id = %s AND line_no = %s "
                "AND claim = %s",
                (line.batch_id, line.line_no, line.claim),
            )

    def finish_line(self, line: LineRecord, outcome: LineOutcome) -> bool:
        state = "done" if outcome.ok else "failed"
        with self.db.connect() as conn:
            changed = conn.execute(
                "UPDATE lines SET state = %s, result = %s, attempts = attempts + 1, "
                "lease_until = NULL WHERE batch_id = %s AND line_no = %s AND claim = %s "
                "AND state = 'running'",
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
                "prompt_tokens = prompt_tokens + %s, completion_tokens = completion_tokens + %s, "
                "cached_tokens = cached_tokens + %s, model = COALESCE(model, %s) WHERE id = %s",
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
        with self.db.connect() as conn:
            count = conn.execute(
                "UPDATE lines SET state = 'failed', result = %s, claim = NULL, lease_until = NULL "
                "WHERE batch_id = %s AND state IN ('pending', 'running')",
                (orjson.dumps(outcome.result).decode(), batch_id),
            ).rowcount
            conn.execute("UPDATE batches SET failed = failed + %s WHERE id = %s", (count, batch_id))
        return int(count)

    def unfinished(self, batch_id: str) -> int:
        with self.db.connect() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM lines "
                "WHERE batch_id = %s AND state IN ('pending', 'running')",
                (batch_id,),
            ).fetchone()
        return int(row[0]) if row else 0

    def results(self, batch_id: str) -> Iterator[LineResult]:
        with self.db.connect() as conn, conn.cursor(name=f"results_{uuid.uuid4().hex}") as cur:
            cur.execute(
                "SELECT line_no, custom_id, state, result FROM lines "
                "WHERE batch_id = %s AND state IN ('done', 'failed') ORDER BY line_no",
                (batch_id,),
            )
            for line_no, custom_id, state, result in cur:
                yield LineResult(line_no, custom_id, state == "done", orjson.loads(result))

    def add_output_file(self, record: FileRecord, body: Path) -> None:
        with self.db.connect() as conn:
            # two gateways finalizing one batch write the same file in turn, not interleaved
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (record.id,))
            self._put_body(conn, record, body)
            conn.execute("DELETE FROM files WHERE id = %s", (record.id,))
            conn.execute(
                q(f"INSERT INTO files ({FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"), file_row(record)
            )
        self._keep(record, body)

    def set_outputs(self, batch_id: str, output_id: str | None, error_id: str | None) -> None:
        with self.db.connect() as conn:
            conn.execute(
                "UPDATE batches SET output_file_id = %s, error_file_id = %s WHERE id = %s",
                (output_id, error_id, batch_id),
            )

    def recover(self) -> None:
        """Lines this gateway id held before a restart go back at once (others wait for their
        lease)."""
        with self.db.connect() as conn:
            conn.execute(
                "UPDATE lines SET state = 'pending', claim = NULL, lease_until = NULL "
                "WHERE state = 'running' AND claimed_by = %s",
                (self.gateway,),
            )

    def ping(self) -> None:
        self.db.ping()
