"""The durable store of batch jobs, as the rest of the jobs layer sees it: a small
:class:`Store` interface. :mod:`llmserver.jobs.sqlite_store` is the embedded default (SQLite in
WAL mode under ``data_dir``, file bodies on disk beside it).

The schema and every statement of that implementation are plain SQL that Postgres runs too, so a
server-database store for several processes sharing one queue is an addition. The one step that
needs care there is :meth:`Store.claim`: it marks the next pending lines with a fresh claim
token in one ``UPDATE ... WHERE line_no IN (SELECT ...)`` and then reads back the rows carrying
that token; with Postgres (:mod:`llmserver.jobs.postgres_store`) the sub-select gains
``FOR UPDATE SKIP LOCKED`` and a claim carries a lease: the runner renews its claims
(:meth:`Store.renew`), and a line whose lease ran out (its gateway died) is claimed again.

A line's result is written in the same transaction as its state change and the batch's
counters (:meth:`Store.finish_line`), and only while the line is still claimed by the caller's
token, so a line that ran twice (a crash between the work and the commit) is counted once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from llmserver.jobs.records import (
    BatchRecord,
    FileRecord,
    LineOutcome,
    LineRecord,
    LineResult,
    NewBatch,
)


def new_id(prefix: str) -> str:
    """A fresh object id such as ``batch_3f...``."""
    return f"{prefix}{uuid.uuid4().hex}"


def now() -> int:
    """Unix seconds, as OpenAI's timestamps are."""
    return int(time.time())


class IdempotencyConflict(Exception):
    """The idempotency key was used before with another request body."""


class Store(Protocol):
    """What the batch surface and the runner need from durable storage."""

    def file_path(self, file_id: str) -> Path:
        """A local path holding the body of ``file_id`` (a store that keeps bodies in its
        database copies it into a local cache first; blocking), or where an upload in
        progress may be written (ids starting with ``.``)."""

    def add_file(self, record: FileRecord, body: Path, idem: tuple[str, str] | None) -> FileRecord:
        """Move ``body`` in as the file's content and store ``record`` (or, with an idempotency
        ``(key, digest)`` seen before, return the original; :class:`IdempotencyConflict`)."""

    def get_file(self, file_id: str) -> FileRecord | None:
        """One file, or None."""

    def list_files(
        self, owner: str | None, purpose: str | None, after: str | None, limit: int
    ) -> list[FileRecord]:
        """Files newest first (``owner`` None: everyone's), after the cursor ``after``."""

    def delete_file(self, file_id: str) -> None:
        """Remove a file and its body."""

    def idempotent(self, owner: str, kind: str, key: str, digest: str) -> str | None:
        """The object id stored for this idempotency key (:class:`IdempotencyConflict` when the
        digest differs), or None when the key is new."""

    def add_batch(self, batch: NewBatch, idem: tuple[str, str] | None) -> BatchRecord:
        """Store a validated batch with all its lines pending, in one transaction."""

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        """One batch, or None."""

    def list_batches(self, owner: str | None, after: str | None, limit: int) -> list[BatchRecord]:
        """Batches newest first, after the cursor ``after``."""

    def active_batches(self) -> list[BatchRecord]:
        """Batches the runner must drive (in progress, cancelling, finalizing), oldest first."""

    def set_status(
        self, batch_id: str, status: str, when: str | None, only_from: Sequence[str]
    ) -> bool:
        """Move a batch to ``status`` (stamping the ``when`` column) if it is in ``only_from``."""

    def claim(self, batch_id: str, limit: int) -> list[LineRecord]:
        """Mark up to ``limit`` pending lines as running, in input order, and return them."""

    def retry_later(self, line: LineRecord) -> None:
        """Count an attempt of a claimed line that will be tried again."""

    def finish_line(self, line: LineRecord, outcome: LineOutcome) -> bool:
        """Write a claimed line's result, state and the batch's counters in one transaction;
        False when the claim was lost (the line was finished or reset meanwhile)."""

    def end_unfinished(self, batch_id: str, outcome: LineOutcome) -> int:
        """Fail every pending or running line of a batch with ``outcome`` (expiry, cancel)."""

    def unfinished(self, batch_id: str) -> int:
        """Lines of the batch not yet done or failed."""

    def results(self, batch_id: str) -> Iterator[LineResult]:
        """Every finished line's result, in input order."""

    def add_output_file(self, record: FileRecord, body: Path) -> None:
        """Store an output or error file under its fixed id, replacing an earlier attempt's."""

    def set_outputs(self, batch_id: str, output_id: str | None, error_id: str | None) -> None:
        """Link the batch's output and error files."""

    def recover(self) -> None:
        """After a restart: this process's running lines back to pending (their claims are
        void)."""

    def renew(self, claims: Sequence[str]) -> None:
        """Extend the lease of the lines held under ``claims`` (no-op without leases)."""

    def ping(self) -> None:
        """Raise :class:`StoreUnavailableError` when the store cannot be reached."""
