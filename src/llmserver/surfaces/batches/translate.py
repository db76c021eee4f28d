"""Stored records -> OpenAI's ``file`` and ``batch`` objects, and the create-batch request."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmserver.jobs.records import BatchRecord, FileRecord

Endpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]


class BatchCreateRequest(BaseModel):
    """``POST /v1/batches``; unknown fields (``output_expires_after``) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    input_file_id: str = Field(min_length=1)
    endpoint: Endpoint
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None


def file_object(record: FileRecord) -> dict[str, Any]:
    """OpenAI's ``file`` object."""
    return {
        "id": record.id,
        "object": "file",
        "bytes": record.bytes,
        "created_at": record.created_at,
        "filename": record.filename,
        "purpose": record.purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def batch_object(r: BatchRecord) -> dict[str, Any]:
    """OpenAI's ``batch`` object, with summed usage of the lines done so far."""
    errors = None if r.errors is None else {"object": "list", "data": r.errors}
    return {
        "id": r.id,
        "object": "batch",
        "endpoint": r.endpoint,
        "model": r.model,
        "errors": errors,
        "input_file_id": r.input_file_id,
        "completion_window": r.completion_window,
        "status": r.status,
        "output_file_id": r.output_file_id,
        "error_file_id": r.error_file_id,
        "created_at": r.created_at,
        "in_progress_at": r.in_progress_at,
        "expires_at": r.expires_at,
        "finalizing_at": r.finalizing_at,
        "completed_at": r.completed_at,
        "failed_at": r.failed_at,
        "expired_at": r.expired_at,
        "cancelling_at": r.cancelling_at,
        "cancelled_at": r.cancelled_at,
        "request_counts": {"total": r.total, "completed": r.completed, "failed": r.failed},
        "usage": {
            "input_tokens": r.prompt_tokens,
            "input_tokens_details": {"cached_tokens": r.cached_tokens},
            "output_tokens": r.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": r.prompt_tokens + r.completion_tokens,
        },
        "metadata": r.metadata,
    }


def page(data: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A cursor page: ``data`` holds up to ``limit + 1`` objects (the extra one means more)."""
    shown = data[:limit]
    return {
        "object": "list",
        "data": shown,
        "first_id": shown[0]["id"] if shown else None,
        "last_id": shown[-1]["id"] if shown else None,
        "has_more": len(data) > limit,
    }
