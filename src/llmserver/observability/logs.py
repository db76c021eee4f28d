"""Logging set-up (text or JSON lines, console and a daily file), request ids in every line, and
the per-request access record."""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import logging.handlers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from llmserver.core.usage import Timing, Usage

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
#: with several gateways (a shared store or a gateway id): each line names its gateway
GATEWAY_LOG_FORMAT = "%(asctime)s %(levelname)s %(gateway)s %(name)s [%(request_id)s]: %(message)s"
LOG_FILE = "llmserver.log"
LOG_BACKUPS = 30  # days of rotated files kept

#: the id of the request being served; a context variable is the one per-task "global" there is,
#: and it is inherited by the tasks (streams, generations) a request starts
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "llmserver_request_id", default=None
)


@dataclass(slots=True)
class AccessRecord:
    """What one request did, filled in by the handler and logged by the access middleware."""

    request_id: str | None = None
    key_name: str | None = None  # filled in by authentication; never the key itself
    model: str | None = None
    backend: str | None = None
    usage: Usage = field(default_factory=Usage)
    streamed: bool = False
    timing: Timing | None = None  # the generation's, linked by the route like ``usage``
    error_code: str | None = None  # set by the exception handlers in errors.py
    #: other models' work for this request, charged to its key too: (model, its usage), e.g.
    #: the router model's for ``model: "auto"``
    extra: list[tuple[str, Usage]] = field(default_factory=list)

    @property
    def charged_tokens(self) -> int:
        """Every token this request cost: its own and the extra work's."""
        own = self.usage.prompt_tokens + self.usage.completion_tokens
        return own + sum(u.prompt_tokens + u.completion_tokens for _, u in self.extra)

    @property
    def ttft_s(self) -> float | None:
        """Seconds from the start of the generation to its first token."""
        return self.timing.ttft_s if self.timing is not None else None


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """A request once its response has been sent: what the access log hands its observers."""

    record: AccessRecord
    method: str
    path: str
    #: the route template, never the raw path (``other`` when no route matched)
    endpoint: str
    #: the status sent, 499 when the client left before any
    status: int
    latency_s: float


class RequestObserver(Protocol):
    """Something that counts requests (metrics, the recent-requests view, usage), registered
    once with the access-log middleware."""

    def request_started(self, record: AccessRecord) -> None:
        """A request arrived; ``record`` fills in while it is served."""

    def request_finished(self, done: FinishedRequest) -> None:
        """Its response has been sent completely (streamed usage is final)."""


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id ("-" outside a request), and with the
    gateway's id when there are several gateways."""

    def __init__(self, gateway: str | None = None) -> None:
        super().__init__()
        self.gateway = gateway

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        if self.gateway is not None:
            record.gateway = self.gateway
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
_STANDARD |= {"message", "asctime", "color_message"}  # the last: uvicorn's colour duplicate


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(
    level: str, fmt: str = "text", log_dir: Path | None = None, gateway: str | None = None
) -> None:
    """Console (and, with ``log_dir``, a file rotated at midnight and kept 30 days) at ``level``;
    each line names ``gateway`` when one is given.

    Calling it again replaces the handlers it installed before.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_llmserver", False)]:
        root.removeHandler(old)
        old.close()
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_dir is not None:
        log_dir = log_dir.expanduser()
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.TimedRotatingFileHandler(
                log_dir / LOG_FILE, when="midnight", backupCount=LOG_BACKUPS, encoding="utf-8"
            )
        )
    text = LOG_FORMAT if gateway is None else GATEWAY_LOG_FORMAT
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(text)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RequestIdFilter(gateway))
        handler._llmserver = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    set_level(level)
    # uvicorn's own access log would duplicate ours
    logging.getLogger("uvicorn.access").disabled = True


def set_level(level: str) -> None:
    """Change the log level of the whole process (and uvicorn's loggers) at run time."""
    value = level.upper()
    logging.getLogger().setLevel(value)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(value)


def current_level() -> str:
    """The root logger's level name, lower case."""
    return logging.getLevelName(logging.getLogger().level).lower()
