"""The batch runner: a low-priority caller of the core service that works through stored lines.

One task drives every active batch, oldest first. It claims pending lines up to
``batch_max_concurrency`` and runs each through the endpoint's
:class:`~llmserver.jobs.lines.LineHandler` with the creating key's :class:`Caller`, inside
:func:`~llmserver.core.scheduling.background`, so each generation waits in the model's
background queue (never ahead of an interactive request, never in its reserved slots).

A transient failure (5xx or 429: engine error, upstream down, timeout) is retried with
exponential backoff ``batch_retries`` times; any other error becomes an error line. Each line's
result goes to the store in the same transaction as its state change. At ``expires_at``
unfinished lines become ``batch_expired`` error lines; on cancel, running lines are aborted and
they and the pending ones become ``batch_cancelled``. Finalizing rebuilds the output and error
files from the rows, so doing it twice (after a crash) gives the same files.

With a shared store (PostgreSQL) a claim is a lease that the loop renews every third of
``store_lease_s`` while the line runs; lines of a gateway that died are claimed again once
their lease ran out. On start-up (:meth:`Runner.start`) this process's running lines go back
to pending, then the loop resumes every
``in_progress`` batch, redoes ``finalizing`` and ends ``cancelling`` as ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from llmserver.config.settings import Settings
from llmserver.core.caller import Caller
from llmserver.core.scheduling import background
from llmserver.core.service import Service
from llmserver.core.usage import Usage
from llmserver.errors import (
    APIError,
    AuthenticationError,
    InternalError,
    ShuttingDownError,
    StoreUnavailableError,
)
from llmserver.jobs import records as st
from llmserver.jobs.lines import LineHandlers
from llmserver.jobs.records import BatchRecord, FileRecord, LineOutcome, LineRecord
from llmserver.jobs.store import Store, now
from llmserver.observability.logs import request_id_var
from llmserver.surrogates import lone_surrogates_replaced

logger = logging.getLogger("llmserver.batch")
access_logger = logging.getLogger("llmserver.access")

#: counts one served line against its key (usage database, rate-limit budget)
UsageSink = Callable[[Caller, str, Usage], Awaitable[None]]
#: the creating key's permissions now (None: the key was revoked), from the stored snapshot
CallerLookup = Callable[[dict[str, Any]], Caller | None]
#: how often the loop looks at the store when nothing wakes it (expiry, other processes)
POLL_S = 0.5


def output_file_ids(batch_id: str) -> tuple[str, str]:
    """The fixed ids of a batch's output and error files (finalizing twice reuses them)."""
    stem = batch_id.removeprefix("batch_")
    return f"file-{stem}-output", f"file-{stem}-errors"


def caller_snapshot(caller: Caller) -> dict[str, Any]:
    """What is stored of the creating key."""
    return {
        "name": caller.name,
        "models": sorted(caller.models),
        "admin": caller.admin,
        "mask_pii": caller.mask_pii,
        "pii_restore": caller.pii_restore,
        "authenticated": caller.authenticated,
    }


def caller_from_snapshot(data: dict[str, Any]) -> Caller:
    """The stored permissions as a Caller."""
    return Caller(
        name=data.get("name"),
        models=frozenset(data.get("models") or ()),
        admin=bool(data.get("admin")),
        mask_pii=bool(data.get("mask_pii")),
        pii_restore=bool(data.get("pii_restore")),
        authenticated=bool(data.get("authenticated")),
    )


def _transient(err: APIError) -> bool:
    return err.status >= 500 or err.status == 429


def _skipped(code: str, message: str) -> LineOutcome:
    return LineOutcome(False, {"response": None, "error": {"code": code, "message": message}})


class Runner:
    """Drives every active batch to its end; one per app."""

    def __init__(
        self,
        store: Store,
        service: Service,
        handlers: LineHandlers,
        settings: Settings,
        usage: UsageSink,
        lookup: CallerLookup = caller_from_snapshot,
    ) -> None:
        self.store = store
        self.service = service
        self.handlers = handlers
        self.settings = settings
        self.usage = usage
        self.lookup = lookup
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
        #: the claim token of each running line, for renewing its lease
        self._claims: dict[tuple[str, int], str] = {}
        self._renewed = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        #: the server is shutting down: claim nothing more, leave unfinished lines for the next
        #: start
        self._draining = False

    # -- life cycle -------------------------------------------------------------------------------

    async def start(self, after: Awaitable[Any] | None = None) -> None:
        """Void the claims of a previous process and start the loop (once ``after``, the models'
        loading, is done, so resumed lines do not fail on a model still loading)."""
        try:
            await asyncio.to_thread(self.store.recover)
        except StoreUnavailableError:  # the database is down: leases free the lines later
            logger.warning("the batch store is unreachable at start-up; batches wait for it")
        self._task = asyncio.create_task(self._loop(after), name="batch-runner")

    async def stop(self) -> None:
        """Stop the loop and abort running lines (they stay running in the store, and go back to
        pending on the next start)."""
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None

    def wake(self) -> None:
        """Look at the store now (a batch was created or cancelled)."""
        self._wake.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, batch_id: str, status: str, timeout_s: float) -> None:
        """Return when the batch's status is no longer ``status``, or after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            record = await asyncio.to_thread(self.store.get_batch, batch_id)
            if record is None or record.status != status:
                return
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, 1.0))

    # -- the loop ---------------------------------------------------------------------------------

    async def _loop(self, after: Awaitable[Any] | None) -> None:
        if after is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(after)
        while True:
            try:
                for batch in await asyncio.to_thread(self.store.active_batches):
                    await self._drive(batch)
            except asyncio.CancelledError:
                raise
            except StoreUnavailableError:
                logger.warning("the batch store is unreachable; batches wait for it")
                await asyncio.sleep(POLL_S * 4)
            except Exception:  # a store hiccup must not end batch processing for good
                logger.exception("batch runner pass failed; trying again")
            await self._renew()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def _renew(self) -> None:
        """Extend the leases of the running lines (every third of the lease)."""
        if time.monotonic() - self._renewed < self.settings.store_lease_s / 3:
            return
        self._renewed = time.monotonic()
        try:
            await asyncio.to_thread(self.store.renew, list(self._claims.values()))
        except Exception:  # the lease may run out; the line's result is then refused
            logger.warning("could not renew the leases of %d batch lines", len(self._claims))

    def _lines_of(self, batch_id: str) -> list[asyncio.Task[None]]:
        return [task for (bid, _), task in self._running.items() if bid == batch_id]

    async def _drive(self, batch: BatchRecord) -> None:
        if batch.status == st.CANCELLING:
            await self._end(batch, "batch_cancelled", "the batch was cancelled", st.CANCELLED)
        elif batch.status == st.FINALIZING:
            await self._finalize(batch, st.COMPLETED, "completed_at")
        elif now() >= batch.expires_at:
            await self._end(batch, "batch_expired", "the batch expired first", st.EXPIRED)
        else:
            await self._feed(batch)

    async def _feed(self, batch: BatchRecord) -> None:
        room = self.settings.batch_max_concurrency - len(self._running)
        if room > 0 and not self._draining:
            for line in await asyncio.to_thread(self.store.claim, batch.id, room):
                task = asyncio.create_task(self._run_line(batch, line))
                self._running[(batch.id, line.line_no)] = task
                self._claims[(batch.id, line.line_no)] = line.claim
        if self._draining:
            return
        if self._lines_of(batch.id):
            return
        if await asyncio.to_thread(self.store.unfinished, batch.id):
            return
        if await asyncio.to_thread(
            self.store.set_status, batch.id, st.FINALIZING, "finalizing_at", (st.IN_PROGRESS,)
        ):
            self._notify()
            await self._finalize(batch, st.COMPLETED, "completed_at")

    async def _end(self, batch: BatchRecord, code: str, why: str, status: str) -> None:
        """Abort the batch's running lines and fail the unfinished ones with ``code``."""
        tasks = self._lines_of(batch.id)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        message = f"This request was not run: {why}."
        await asyncio.to_thread(self.store.end_unfinished, batch.id, _skipped(code, message))
        stamp = "cancelled_at" if status == st.CANCELLED else "expired_at"
        await self._finalize(batch, status, stamp)

    async def _finalize(self, batch: BatchRecord, status: str, stamp: str) -> None:
        await asyncio.to_thread(self._write_outputs, batch)
        moved = await asyncio.to_thread(self.store.set_status, batch.id, status, stamp, st.ACTIVE)
        if moved:
            logger.info("batch %s %s", batch.id, status)
            self._notify()

    def _write_outputs(self, batch: BatchRecord) -> None:
        """Both files from the rows, in input order (a thread; safe to repeat)."""
        out_id, err_id = output_file_ids(batch.id)
        # names of their own: two gateways may finalize one batch at once (same content)
        tag = uuid.uuid4().hex
        out_tmp = self.store.file_path(f".{out_id}.{tag}.tmp")
        err_tmp = self.store.file_path(f".{err_id}.{tag}.tmp")
        counts = {True: 0, False: 0}
        with out_tmp.open("wb") as out, err_tmp.open("wb") as err:
            for result in self.store.results(batch.id):
                line = {
                    "id": result.result.get("id") or f"batch_req_{batch.id}_{result.line_no}",
                    "custom_id": result.custom_id,
                    "response": result.result.get("response"),
                    "error": result.result.get("error"),
                }
                (out if result.ok else err).write(orjson.dumps(line) + b"\n")
                counts[result.ok] += 1
        ids: list[str | None] = []
        for file_id, tmp, name, n in (
            (out_id, out_tmp, "output.jsonl", counts[True]),
            (err_id, err_tmp, "errors.jsonl", counts[False]),
        ):
            if not n:
                tmp.unlink(missing_ok=True)
                ids.append(None)
                continue
            record = FileRecord(
                file_id,
                batch.owner,
                "batch_output",
                f"{batch.id}_{name}",
                tmp.stat().st_size,
                now(),
            )
            self.store.add_output_file(record, Path(tmp))
            ids.append(file_id)
        self.store.set_outputs(batch.id, ids[0], ids[1])

    # -- one line ---------------------------------------------------------------------------------

    async def _run_line(self, batch: BatchRecord, line: LineRecord) -> None:
        request_id = uuid.uuid4().hex
        request_id_var.set(request_id)  # this task's own context: its log lines carry the id
        started = time.perf_counter()
        try:
            outcome = await self._attempts(batch, line, request_id)
            if outcome is None:  # shutting down: the line stays claimed until the next start
                return
            if await asyncio.to_thread(self.store.finish_line, line, outcome):
                self._log(batch, line, outcome, time.perf_counter() - started)
        finally:
            self._running.pop((batch.id, line.line_no), None)
            self._claims.pop((batch.id, line.line_no), None)
            self._wake.set()

    async def _attempts(
        self, batch: BatchRecord, line: LineRecord, request_id: str
    ) -> LineOutcome | None:
        handler = self.handlers[batch.endpoint]
        caller = self.lookup(batch.caller)
        if caller is None:
            err: APIError = AuthenticationError(
                "The API key that created this batch was revoked.", code="invalid_api_key"
            )
            return self._error(request_id, err, handler.error_body(err))
        body = orjson.loads(lone_surrogates_replaced(line.body.encode()))
        attempt = line.attempts
        while True:
            try:
                with background():
                    answer = await handler.run(self.service, caller, body)
            except ShuttingDownError:
                self._draining = True
                return None
            except APIError as exc:
                err = exc
            except Exception:
                logger.exception("batch %s line %d failed", batch.id, line.line_no)
                err = InternalError()
            else:
                await self.usage(caller, answer.model, answer.usage)
                response = {"status_code": 200, "request_id": request_id, "body": answer.body}
                usage = answer.usage
                return LineOutcome(
                    True,
                    {"id": f"batch_req_{request_id}", "response": response, "error": None},
                    answer.model,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    usage.cached_tokens,
                )
            if not _transient(err) or attempt >= self.settings.batch_retries:
                return self._error(request_id, err, handler.error_body(err))
            attempt += 1
            await asyncio.to_thread(self.store.retry_later, line)
            delay = self.settings.batch_retry_backoff_s * 2 ** (attempt - 1)
            logger.warning(
                "batch %s line %d: %s (%s); retry %d in %.1f s",
                batch.id,
                line.line_no,
                err.code,
                err.status,
                attempt,
                delay,
            )
            await asyncio.sleep(delay)

    def _error(self, request_id: str, err: APIError, body: dict[str, Any]) -> LineOutcome:
        response = {"status_code": err.status, "request_id": request_id, "body": body}
        return LineOutcome(
            False, {"id": f"batch_req_{request_id}", "response": response, "error": None}
        )

    def _log(self, batch: BatchRecord, line: LineRecord, outcome: LineOutcome, took: float) -> None:
        response = outcome.result.get("response") or {}
        fields = {
            "batch_id": batch.id,
            "line": line.line_no,
            "custom_id": line.custom_id,
            "key_name": batch.caller.get("name") or "-",
            "path": batch.endpoint,
            "status": response.get("status_code", 0),
            "model": outcome.model or "-",
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "latency_ms": round(took * 1000, 1),
        }
        access_logger.info(
            'batch=%(batch_id)s line=%(line)d key=%(key_name)s "BATCH %(path)s" %(status)d '
            "model=%(model)s prompt_tokens=%(prompt_tokens)d "
            "completion_tokens=%(completion_tokens)d latency_ms=%(latency_ms).1f",
            fields,
            extra=fields,
        )
