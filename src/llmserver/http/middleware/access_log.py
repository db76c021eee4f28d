"""One log line per request (who, what, status, model, tokens, timings; never prompt text); the
finished record then goes to the observers (metrics, recent requests, usage)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserver.errors import InternalError
from llmserver.http.context import request_context
from llmserver.http.errors import ErrorShapes, error_response
from llmserver.observability.logs import AccessRecord, FinishedRequest, RequestObserver
from llmserver.observability.metrics import OTHER

logger = logging.getLogger("llmserver.access")
errors_logger = logging.getLogger("llmserver.errors")

TEXT = (
    '%(client)s key=%(key_name)s "%(method)s %(path)s" %(status)d model=%(model)s '
    "backend=%(backend)s prompt_tokens=%(prompt_tokens)d completion_tokens=%(completion_tokens)d "
    "cached_tokens=%(cached_tokens)d reasoning_tokens=%(reasoning_tokens)d "
    "draft_tokens=%(draft_tokens)s accepted_tokens=%(accepted_tokens)s "
    "ttft_ms=%(ttft_ms)s latency_ms=%(latency_ms).1f "
    "tokens_per_s=%(tokens_per_s)s stream=%(streamed)s response_cache=%(response_cache)s "
    "router_tokens=%(router_tokens)s"
)


def access_fields(
    scope: Scope, record: AccessRecord, status: int, latency_s: float
) -> dict[str, Any]:
    """The access line's fields (also the JSON line's keys)."""
    # the address the allowlist decided on (X-Forwarded-For only from a trusted proxy)
    client = request_context(scope).client_address
    if client is None:
        peer = scope.get("client")
        client = peer[0] if peer else "-"
    usage = record.usage
    ttft = record.ttft_s
    rate = usage.completion_tokens / latency_s if usage.completion_tokens and latency_s else None
    return {
        "client": client,
        "key_name": record.key_name or "-",
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "model": record.model or "-",
        "backend": record.backend or "-",
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "draft_tokens": usage.draft_tokens,
        "accepted_tokens": usage.accepted_tokens if usage.draft_tokens is not None else None,
        "ttft_ms": None if ttft is None else round(ttft * 1000, 1),
        "latency_ms": round(latency_s * 1000, 1),
        "tokens_per_s": None if rate is None else round(rate, 1),
        "streamed": record.streamed,
        "response_cache": usage.response_cache,
        "error_code": record.error_code,
        # tokens other models spent for this request (the router's for model: auto)
        "router_tokens": sum(u.total_tokens for _, u in record.extra) or None,
    }


class AccessLogMiddleware:
    """Logs when the response has been sent completely (so streamed usage is final), then hands
    the finished request to each observer.

    ``observers`` is the app's list, filled when it starts (they live as long as the running app)
    and read here for every request."""

    def __init__(
        self, app: ASGIApp, observers: Sequence[RequestObserver], shapes: ErrorShapes
    ) -> None:
        self.app = app
        self.observers = observers
        self.shapes = shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = request_context(scope)
        record = context.access
        record.request_id = context.request_id
        for observer in self.observers:
            observer.request_started(record)
        started = time.perf_counter()
        status = 0

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception:
            if status:  # the response has begun; nothing sensible is left to send
                raise
            # answered here rather than by Starlette's outermost error middleware, so the 500
            # passes the request-id middleware and this line logs it as a 500
            errors_logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            response = error_response(scope, InternalError(), self.shapes)
            await response(scope, receive, send_and_watch)
        finally:
            self._finish(scope, record, status or 499, time.perf_counter() - started)

    def _finish(self, scope: Scope, record: AccessRecord, status: int, latency_s: float) -> None:
        if logger.isEnabledFor(logging.INFO):
            fields = access_fields(scope, record, status, latency_s)
            logger.info(TEXT, {k: "-" if v is None else v for k, v in fields.items()}, extra=fields)
        # the route template, set by routing; never the raw path
        endpoint = getattr(scope.get("route"), "path", None) or OTHER
        done = FinishedRequest(record, scope["method"], scope["path"], endpoint, status, latency_s)
        for observer in self.observers:
            observer.request_finished(done)
