"""The dashboard's snapshot: what the server is doing now, as the caller may see it.

An admin key (or anyone, on a server without keys) sees every model, every key's recent requests
and usage, replica URLs and the log level; any other key sees the models it may use, and only its
own requests and usage. Nothing here holds prompt or reply text, or key text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any, Protocol

from starlette.requests import HTTPConnection

from llmserver import __version__
from llmserver.core.caller import Caller
from llmserver.core.views import ModelView
from llmserver.http.context import app_context
from llmserver.http.respond import caller, service
from llmserver.observability.accounting import UsageRecorder
from llmserver.observability.logs import current_level
from llmserver.observability.recent import ModelWindow, RequestSummary

#: how many days of usage the snapshot carries (today included)
USAGE_DAYS = 30
#: how many recent requests it carries
RECENT_LIMIT = 50


class BatchSource(Protocol):
    """What the dashboard needs from the batch jobs, once they exist: each job's progress as
    the caller may see it (the app's batch jobs are one)."""

    async def progress(self, caller: Caller) -> list[dict[str, Any]]:
        """Jobs, newest first: ``id``, ``status``, ``model``, ``total``, ``completed``,
        ``failed``, ``created_at``, and ``key_name`` for an admin."""


def _model(view: ModelView, state: str, window: ModelWindow, admin: bool) -> dict[str, Any]:
    replicas = [{"url": url, "healthy": up} for url, up in view.replicas] if admin else None
    return {
        "id": view.id,
        "backend": view.backend,
        "state": state,
        "error": view.error,
        "aliases": list(view.aliases),
        "roles": list(view.roles),
        "embedding": view.embedding,
        "context_length": view.context_length,
        "memory_bytes": sum(bytes_ for _, bytes_ in view.memory),
        "memory_measured": view.memory_measured,
        "slots": view.slots,
        "slots_in_use": view.slots_in_use,
        "waiting": view.waiting,
        "replicas": replicas,
        "replicas_total": len(view.replicas),
        "replicas_healthy": sum(1 for _, up in view.replicas if up),
        "tokens_per_s": window.tokens_per_s,
        "requests": window.requests,
        "rejected_429": window.rejected,
        "errors": window.errors,
        "ttft_ms": window.ttft_ms,
        "latency_ms": window.latency_ms,
    }


def _request(item: RequestSummary) -> dict[str, Any]:
    return {
        "time": dt.datetime.fromtimestamp(item.time, dt.UTC).isoformat(timespec="seconds"),
        "key_name": item.key_name,
        "method": item.method,
        "endpoint": item.endpoint,
        "model": item.model,
        "status": item.status,
        "prompt_tokens": item.prompt_tokens,
        "completion_tokens": item.completion_tokens,
        "latency_ms": item.latency_ms,
        "ttft_ms": item.ttft_ms,
        "streamed": item.streamed,
        "error_code": item.error_code,
    }


def _who(who: Caller) -> str | None:
    """The key name whose rows a caller may see; None: everyone's ("" matches nobody: a caller
    without a key sees no one's)."""
    if who.admin:
        return None
    return who.name or ""


async def usage_rows(recorder: UsageRecorder, who: Caller, today: dt.date) -> list[dict[str, Any]]:
    """The last :data:`USAGE_DAYS` days of usage, the caller's own rows unless it is admin."""
    since = today - dt.timedelta(days=USAGE_DAYS - 1)
    await asyncio.to_thread(recorder.flush)  # the last second's counts too
    rows = await asyncio.to_thread(recorder.store.query, since)
    only = _who(who)
    return [row.body() for row in rows if only is None or row.key_name == only]


async def snapshot(conn: HTTPConnection) -> dict[str, Any]:
    """One snapshot for this connection's caller."""
    context = app_context(conn.app)
    who = caller(conn)
    svc = service(conn)
    views = svc.admin.models(who)
    readiness = await svc.admin.readiness()
    recent = context.recent
    windows = recent.window(v.id for v in views)
    only = _who(who)
    last = recent.last(only, RECENT_LIMIT)
    today = dt.datetime.now(dt.UTC).date()
    source: BatchSource = context.jobs
    server: dict[str, Any] = {
        "version": __version__,
        "uptime_s": round(time.monotonic() - context.started, 1),
        "default_model": svc.admin.default_model,
        "draining": readiness.draining,
        "ready": readiness.ready,
    }
    if who.admin:
        server["log_level"] = current_level()
    return {
        "object": "dashboard.snapshot",
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "caller": {"name": who.name, "admin": who.admin, "authenticated": who.authenticated},
        "server": server,
        "window_s": recent.window_s,
        "models": [
            _model(v, readiness.states.get(v.id, v.state), windows[v.id], who.admin) for v in views
        ],
        "recent": [_request(item) for item in last],
        "usage": {
            "today": today.isoformat(),
            "days": USAGE_DAYS,
            "rows": await usage_rows(context.usage, who, today),
        },
        "batches": await source.progress(who),
    }
