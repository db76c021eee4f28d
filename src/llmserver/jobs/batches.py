"""Files and batches as a caller sees them: ownership, idempotency, creation with validation,
cancel. The HTTP surface translates to and from these; the runner does the work."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from llmserver.config.settings import Settings
from llmserver.core.caller import Caller
from llmserver.core.service import Service
from llmserver.errors import ConflictError, InvalidRequestError, NotFoundError
from llmserver.jobs import records as st
from llmserver.jobs.lines import LineHandlers
from llmserver.jobs.records import BatchRecord, FileRecord, NewBatch
from llmserver.jobs.runner import Runner, caller_snapshot
from llmserver.jobs.store import IdempotencyConflict, Store, new_id, now
from llmserver.jobs.validate import check_file

ANONYMOUS = "anonymous"
#: the only completion window OpenAI accepts, in seconds
WINDOWS = {"24h": 24 * 3600}


def owner(caller: Caller) -> str:
    """Whose objects a caller creates and sees."""
    return caller.name or ANONYMOUS


def digest(*parts: bytes) -> str:
    """A request body's fingerprint for idempotency."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def _conflict(key: str) -> ConflictError:
    return ConflictError(
        f"Idempotency-Key '{key}' was already used with a different request body.",
        code="idempotency_key_reused",
    )


class BatchJobs:
    """The app's batch jobs: its store, its runner and the endpoints lines may target."""

    def __init__(
        self,
        store: Store,
        runner: Runner,
        handlers: LineHandlers,
        service: Service,
        settings: Settings,
    ) -> None:
        self.store = store
        self.runner = runner
        self.handlers = handlers
        self.service = service
        self.settings = settings

    def _visible(self, caller: Caller, record_owner: str) -> bool:
        return caller.admin or record_owner == owner(caller)

    # -- files ------------------------------------------------------------------------------------

    async def add_file(
        self, caller: Caller, body: Path, filename: str, purpose: str, idem: str | None, sha: str
    ) -> FileRecord:
        """Store an uploaded body (already on disk, in the store's folder)."""
        if purpose != "batch":
            await asyncio.to_thread(body.unlink, missing_ok=True)
            raise InvalidRequestError(
                f"Invalid purpose '{purpose}': this server accepts 'batch' files only.",
                param="purpose",
                code="invalid_purpose",
            )
        size = (await asyncio.to_thread(body.stat)).st_size
        record = FileRecord(new_id("file-"), owner(caller), purpose, filename, size, now())
        key = (
            None
            if idem is None
            else (idem, digest(sha.encode(), purpose.encode(), filename.encode()))
        )
        try:
            return await asyncio.to_thread(self.store.add_file, record, body, key)
        except IdempotencyConflict:
            await asyncio.to_thread(body.unlink, missing_ok=True)
            raise _conflict(idem or "") from None

    async def file(self, caller: Caller, file_id: str, param: str | None = None) -> FileRecord:
        """A file the caller may see (404 otherwise, also for another key's file)."""
        record = await asyncio.to_thread(self.store.get_file, file_id)
        if record is None or not self._visible(caller, record.owner):
            raise NotFoundError(
                f"No such File object: {file_id}", param=param, code="file_not_found"
            )
        return record

    async def files(
        self, caller: Caller, purpose: str | None, after: str | None, limit: int
    ) -> list[FileRecord]:
        """The caller's files (everyone's for an admin), newest first."""
        who = None if caller.admin else owner(caller)
        return await asyncio.to_thread(self.store.list_files, who, purpose, after, limit)

    async def delete_file(self, caller: Caller, file_id: str) -> FileRecord:
        """Delete one of the caller's files."""
        record = await self.file(caller, file_id)
        await asyncio.to_thread(self.store.delete_file, file_id)
        return record

    # -- batches ----------------------------------------------------------------------------------

    async def create(
        self,
        caller: Caller,
        input_file_id: str,
        endpoint: str,
        window: str,
        metadata: dict[str, str] | None,
        idem: tuple[str, str] | None,
    ) -> BatchRecord:
        """Validate the input file and store the batch (``failed`` with ``errors`` when a line
        is wrong); the same idempotency key and body gives back the first batch."""
        if idem is not None:
            try:
                found = await asyncio.to_thread(
                    self.store.idempotent, owner(caller), "batch", *idem
                )
            except IdempotencyConflict:
                raise _conflict(idem[0]) from None
            if found is not None:
                return await self.batch(caller, found)
        source = await self.file(caller, input_file_id, param="input_file_id")
        if source.purpose != "batch":
            raise InvalidRequestError(
                f"File {input_file_id} has purpose '{source.purpose}', not 'batch'.",
                param="input_file_id",
            )
        handler = self.handlers[endpoint]

        def authorise(model: str | None) -> None:
            self.service.admin.authorise(caller, model)

        path = await asyncio.to_thread(self.store.file_path, source.id)
        limit = self.settings.batch_max_lines
        checked = await asyncio.to_thread(check_file, path, endpoint, handler, authorise, limit)
        created = now()
        life = self.settings.batch_test_expiry_s or WINDOWS[window]
        failed = bool(checked.errors)
        record = BatchRecord(
            id=new_id("batch_"),
            owner=owner(caller),
            caller=caller_snapshot(caller),
            endpoint=endpoint,
            input_file_id=input_file_id,
            completion_window=window,
            status=st.FAILED if failed else st.IN_PROGRESS,
            metadata=metadata,
            errors=checked.errors or None,
            model=None,
            output_file_id=None,
            error_file_id=None,
            total=0 if failed else len(checked.lines),
            completed=0,
            failed=0,
            prompt_tokens=0,
            completion_tokens=0,
            cached_tokens=0,
            created_at=created,
            expires_at=created + round(life) if life >= 1 else created,
            in_progress_at=None if failed else created,
            failed_at=created if failed else None,
        )
        lines = [] if failed else checked.lines
        try:
            stored = await asyncio.to_thread(self.store.add_batch, NewBatch(record, lines), idem)
        except IdempotencyConflict:
            raise _conflict(idem[0] if idem else "") from None
        self.runner.wake()
        return stored

    async def batch(self, caller: Caller, batch_id: str) -> BatchRecord:
        """A batch the caller may see (404 otherwise)."""
        record = await asyncio.to_thread(self.store.get_batch, batch_id)
        if record is None or not self._visible(caller, record.owner):
            raise NotFoundError(f"No such Batch object: {batch_id}", code="batch_not_found")
        return record

    async def wait(self, caller: Caller, batch_id: str, wait_s: float) -> BatchRecord:
        """The batch once its status changes, or after ``wait_s`` seconds."""
        record = await self.batch(caller, batch_id)
        if wait_s > 0 and record.status not in st.FINAL:
            await self.runner.wait_change(batch_id, record.status, wait_s)
            record = await self.batch(caller, batch_id)
        return record

    async def batches(self, caller: Caller, after: str | None, limit: int) -> list[BatchRecord]:
        """The caller's batches (everyone's for an admin), newest first."""
        who = None if caller.admin else owner(caller)
        return await asyncio.to_thread(self.store.list_batches, who, after, limit)

    async def progress(self, caller: Caller, limit: int = 20) -> list[dict[str, Any]]:
        """The dashboard's view (it is the web page's ``BatchSource``): the caller's newest
        batches with their counts; the owning key's name only for an admin."""
        rows = []
        for record in await self.batches(caller, None, limit):
            row: dict[str, Any] = {
                "id": record.id,
                "status": record.status,
                "model": record.model,
                "total": record.total,
                "completed": record.completed,
                "failed": record.failed,
                "created_at": record.created_at,
            }
            if caller.admin:
                row["key_name"] = None if record.owner == ANONYMOUS else record.owner
            rows.append(row)
        return rows

    async def cancel(self, caller: Caller, batch_id: str) -> BatchRecord:
        """Ask the runner to stop a batch; a finished batch is a 409."""
        record = await self.batch(caller, batch_id)
        if record.status == st.CANCELLING:
            return record
        allowed: Sequence[str] = (st.VALIDATING, st.IN_PROGRESS)
        if not await asyncio.to_thread(
            self.store.set_status, batch_id, st.CANCELLING, "cancelling_at", allowed
        ):
            raise ConflictError(
                f"Cannot cancel a batch with status '{record.status}'.",
                code="batch_not_cancellable",
            )
        self.runner.wake()
        return await self.batch(caller, batch_id)


def body_digest(body: dict[str, Any]) -> str:
    """The fingerprint of a JSON request body (key order does not matter)."""
    return digest(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
