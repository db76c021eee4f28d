"""The stored objects of batch jobs: files, batches and lines, as plain typed records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: OpenAI's batch statuses
VALIDATING = "validating"
FAILED = "failed"
IN_PROGRESS = "in_progress"
FINALIZING = "finalizing"
COMPLETED = "completed"
EXPIRED = "expired"
CANCELLING = "cancelling"
CANCELLED = "cancelled"
#: the statuses the runner drives
ACTIVE = (IN_PROGRESS, FINALIZING, CANCELLING)
#: statuses a batch never leaves
FINAL = (FAILED, COMPLETED, EXPIRED, CANCELLED)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One uploaded (or generated) file; its body lives on disk under the store."""

    id: str
    owner: str
    purpose: str
    filename: str
    bytes: int
    created_at: int


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One batch as stored; ``caller`` is the creating key's permissions as JSON."""

    id: str
    owner: str
    caller: dict[str, Any]
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    metadata: dict[str, str] | None
    errors: list[dict[str, Any]] | None
    model: str | None
    output_file_id: str | None
    error_file_id: str | None
    total: int
    completed: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    created_at: int
    expires_at: int
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A validated batch and its lines ``(line_no, custom_id, body JSON)`` to store at once."""

    record: BatchRecord
    lines: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LineRecord:
    """One claimed line: ``claim`` is the token the runner must hold to finish it."""

    batch_id: str
    line_no: int
    custom_id: str
    body: str
    attempts: int
    claim: str


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """What a line ended with: ``result`` is its output-file line without ``custom_id``."""

    ok: bool
    result: dict[str, Any]
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class LineResult:
    """A finished line read back for the output files."""

    line_no: int
    custom_id: str
    ok: bool
    result: dict[str, Any]
