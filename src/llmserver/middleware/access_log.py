"""One log line per request: method, path, status, model, tokens, latency. Never prompt text."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserver.observability import AccessRecord

logger = logging.getLogger("llmserver.access")


class AccessLogMiddleware:
    """Logs when the response has been sent completely (so streamed usage is final)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = AccessRecord()
        scope.setdefault("state", {})["access"] = record
        started = time.perf_counter()
        status = 0

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            usage = record.usage
            logger.info(
                "%s %s %s model=%s prompt_tokens=%d completion_tokens=%d stream=%s latency_ms=%.1f",
                scope["method"],
                scope["path"],
                status or 499,
                record.model or "-",
                usage.prompt_tokens,
                usage.completion_tokens,
                record.streamed,
                (time.perf_counter() - started) * 1000,
            )
