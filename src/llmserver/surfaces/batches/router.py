"""The Files and Batches routes: ``/v1/files`` and ``/v1/batches``, as the ``openai`` package
calls them. Policy (ownership, idempotency, validation) lives in :mod:`llmserver.jobs`."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse, Response

from llmserver.errors import InvalidRequestError
from llmserver.http.context import app_context
from llmserver.http.middleware.body_limit import too_large
from llmserver.http.respond import caller, json_response
from llmserver.jobs.batches import BatchJobs, body_digest
from llmserver.surfaces.batches.translate import BatchCreateRequest, batch_object, file_object, page

router = APIRouter(prefix="/v1")

#: longest ``?wait=`` accepted, in seconds
MAX_WAIT_S = 600.0
CHUNK = 1 << 20

Limit = Annotated[int, Query(ge=1, le=10_000)]


def jobs(request: Request) -> BatchJobs:
    """The app's batch jobs."""
    return app_context(request.app).jobs


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= 255:
        raise InvalidRequestError(
            "Idempotency-Key must be 1 to 255 characters.", param="Idempotency-Key"
        )
    return key


@router.post("/files")
async def create_file(request: Request) -> Response:
    """``POST /v1/files`` (multipart: ``file``, ``purpose``); streamed to disk, 413 past
    ``batch_max_file_bytes`` before it is read whole."""
    idem = _idempotency_key(request)
    form = await request.form(max_files=1, max_fields=8)
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, UploadFile):
        raise InvalidRequestError("Missing required parameter: 'file'.", param="file")
    if not isinstance(purpose, str) or not purpose:
        raise InvalidRequestError("Missing required parameter: 'purpose'.", param="purpose")
    batch_jobs = jobs(request)
    tmp = batch_jobs.store.file_path(f".upload-{uuid.uuid4().hex}")
    sha = hashlib.sha256()
    limit = batch_jobs.settings.batch_max_file_bytes
    try:
        with tmp.open("wb") as out:
            size = 0
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                sha.update(chunk)
                out.write(chunk)
        record = await batch_jobs.add_file(
            caller(request), tmp, upload.filename or "upload.jsonl", purpose, idem, sha.hexdigest()
        )
    finally:
        tmp.unlink(missing_ok=True)  # moved into place when stored
        await form.close()
    return json_response(file_object(record))


@router.get("/files")
async def list_files(
    request: Request, purpose: str | None = None, after: str | None = None, limit: Limit = 10_000
) -> Response:
    """``GET /v1/files``: the caller's files, newest first."""
    found = await jobs(request).files(caller(request), purpose, after, limit + 1)
    return json_response(page([file_object(f) for f in found], limit))


@router.get("/files/{file_id}")
async def get_file(request: Request, file_id: str) -> Response:
    """``GET /v1/files/{id}``."""
    return json_response(file_object(await jobs(request).file(caller(request), file_id)))


@router.get("/files/{file_id}/content")
async def file_content(request: Request, file_id: str) -> Response:
    """``GET /v1/files/{id}/content``: the bytes, streamed from disk."""
    batch_jobs = jobs(request)
    record = await batch_jobs.file(caller(request), file_id)
    # a shared store may copy the body out of its database first
    path = await asyncio.to_thread(batch_jobs.store.file_path, record.id)
    return FileResponse(path, media_type="application/jsonl")


@router.delete("/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> Response:
    """``DELETE /v1/files/{id}``."""
    record = await jobs(request).delete_file(caller(request), file_id)
    return json_response({"id": record.id, "object": "file", "deleted": True})


@router.post("/batches")
async def create_batch(request: Request, req: BatchCreateRequest) -> Response:
    """``POST /v1/batches``: validated at once; ``failed`` with ``errors`` naming each line."""
    key = _idempotency_key(request)
    body = req.model_dump(include={"input_file_id", "endpoint", "completion_window", "metadata"})
    idem = None if key is None else (key, body_digest(body))
    record = await jobs(request).create(
        caller(request), req.input_file_id, req.endpoint, req.completion_window, req.metadata, idem
    )
    return json_response(batch_object(record))


@router.get("/batches")
async def list_batches(
    request: Request, after: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> Response:
    """``GET /v1/batches`` (``after``, ``limit``): newest first."""
    found = await jobs(request).batches(caller(request), after, limit + 1)
    return json_response(page([batch_object(b) for b in found], limit))


@router.get("/batches/{batch_id}")
async def get_batch(
    request: Request, batch_id: str, wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0
) -> Response:
    """``GET /v1/batches/{id}``; ``?wait=S`` answers when the status changes or after S s."""
    record = await jobs(request).wait(caller(request), batch_id, wait)
    return json_response(batch_object(record))


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, batch_id: str) -> Response:
    """``POST /v1/batches/{id}/cancel``: ``cancelling``, then ``cancelled`` with partial output."""
    return json_response(batch_object(await jobs(request).cancel(caller(request), batch_id)))
