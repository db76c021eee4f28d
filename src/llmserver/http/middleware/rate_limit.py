"""Request and token rate limits per minute, per API key (per client address without one).

Counters live in a ``limits`` storage: in memory by default, or at a storage URL such as
``redis://host:6379`` so several server processes share one budget. Fixed one-minute windows.

Tokens: at admission a request is charged an estimate (its body bytes / 4 for the prompt, plus
``max_tokens`` (or ``max_completion_tokens``) x ``n`` x the number of prompts when given); when
the response has been sent, the charge is corrected to the real usage from the access record
(the difference is added or given back). A refused request is charged nothing: both budgets are
tested before either is charged.

Every limited response carries OpenAI's ``x-ratelimit-*`` headers. This middleware runs after
authentication, which puts the key in the request context: its name is the caller's identity,
and its own limits (``requests_per_minute`` and ``tokens_per_minute``; a key present with None
means unlimited for that key) replace the server's. It runs inside the body-limit middleware,
which has buffered the body for the token estimate.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import orjson
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserver.config.settings import Settings, SettingsError
from llmserver.errors import RateLimitError, StoreUnavailableError
from llmserver.http.context import request_context
from llmserver.http.errors import ErrorShapes, error_response

logger = logging.getLogger("llmserver.ratelimit")

#: never rate limited: probes, the status page, docs
EXEMPT_PATHS = frozenset({"/", "/health", "/ready", "/metrics", "/docs", "/openapi.json"})


#: files and batches (and everything under them): counted as requests, never charged tokens
#: here (a batch's lines are charged to the key's token budget as they run)
UNMETERED_PATHS = frozenset({"/v1/files", "/v1/batches"})


def storage_url(url: str) -> str:
    """The asyncio variant of a ``limits`` storage URL (``memory://`` -> ``async+memory://``)."""
    return url if url.startswith("async+") else f"async+{url}"


@dataclass(frozen=True, slots=True)
class Budget:
    """The limits that apply to one caller."""

    identity: str
    requests: RateLimitItem | None
    tokens: RateLimitItem | None


class RateLimits:
    """The app's rate-limit counters and defaults."""

    def __init__(self, settings: Settings) -> None:
        url = storage_url(settings.rate_limit_storage)
        # redis-py, the one Redis client the server uses (the shared response cache too)
        options = {"implementation": "redispy"} if url.startswith("async+redis") else {}
        try:
            self.storage: Any = storage_from_string(url, **options)
        except ConfigurationError as exc:
            raise SettingsError(f"rate_limit_storage: {exc}") from exc
        self.strategy = FixedWindowRateLimiter(self.storage)
        self.requests_per_minute = settings.rate_limit_requests_per_minute
        self.tokens_per_minute = settings.rate_limit_tokens_per_minute

    def budget(self, scope: Scope) -> Budget | None:
        """Who is calling and which limits apply; None when no limit does."""
        context = request_context(scope)
        override = context.rate_limits or {}
        rpm = override.get("requests_per_minute", self.requests_per_minute)
        tpm = override.get("tokens_per_minute", self.tokens_per_minute)
        if rpm is None and tpm is None:
            return None
        key_name = context.access.key_name
        client = scope.get("client")
        identity = f"key:{key_name}" if key_name else f"addr:{client[0] if client else '-'}"
        return Budget(
            identity,
            RateLimitItemPerMinute(rpm) if rpm else None,
            RateLimitItemPerMinute(tpm) if tpm else None,
        )

    async def admit(self, budget: Budget, estimate: int) -> RateLimitError | None:
        """Charge one request and ``estimate`` tokens, or return the 429 without charging."""
        req, tok = budget.requests, budget.tokens
        if req is not None and not await self.strategy.test(req, "requests", budget.identity):
            return await self._refusal(budget, req, "requests")
        cost = min(estimate, tok.amount) if tok is not None else 0
        if tok is not None and not await self.strategy.test(
            tok, "tokens", budget.identity, cost=max(cost, 1)
        ):
            return await self._refusal(budget, tok, "tokens")
        if req is not None:
            await self.strategy.hit(req, "requests", budget.identity)
        if tok is not None and estimate > 0:
            await self.strategy.hit(tok, "tokens", budget.identity, cost=estimate)
        return None

    async def reconcile(self, budget: Budget, estimate: int, used: int) -> None:
        """Correct the token charge from the estimate to what the request really used."""
        tok = budget.tokens
        if tok is None or used == estimate:
            return
        if used > estimate:
            await self.strategy.hit(tok, "tokens", budget.identity, cost=used - estimate)
            return
        key = tok.key_for("tokens", budget.identity)
        refund = min(estimate - used, await self.storage.get(key))
        if refund > 0:
            await self.storage.incr(key, tok.get_expiry(), amount=-refund)

    async def charge(
        self, key_name: str | None, limits: dict[str, int | None] | None, tokens: int
    ) -> None:
        """Count ``tokens`` used outside a request (a batch line) against the key's token
        budget. Never refuses: the key's next interactive requests see the smaller budget."""
        tpm = (limits or {}).get("tokens_per_minute", self.tokens_per_minute)
        if not tpm or not key_name or tokens <= 0:
            return
        await self.strategy.hit(
            RateLimitItemPerMinute(tpm), "tokens", f"key:{key_name}", cost=tokens
        )

    async def headers(self, budget: Budget) -> list[tuple[bytes, bytes]]:
        """OpenAI's ``x-ratelimit-*`` headers for this caller, as raw ASGI headers."""
        out: list[tuple[bytes, bytes]] = []
        for kind, item in (("requests", budget.requests), ("tokens", budget.tokens)):
            if item is None:
                continue
            stats = await self.strategy.get_window_stats(item, kind, budget.identity)
            reset = max(0.0, stats.reset_time - time.time())
            out += [
                (f"x-ratelimit-limit-{kind}".encode(), str(item.amount).encode()),
                (f"x-ratelimit-remaining-{kind}".encode(), str(stats.remaining).encode()),
                (f"x-ratelimit-reset-{kind}".encode(), duration(reset).encode()),
            ]
        return out

    async def _refusal(self, budget: Budget, item: RateLimitItem, kind: str) -> RateLimitError:
        stats = await self.strategy.get_window_stats(item, kind, budget.identity)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        return RateLimitError(
            f"Rate limit reached for {kind} per minute: limit {item.amount}. "
            f"Please try again in {wait} s.",
            headers={"Retry-After": str(wait)},
        )


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s"


def estimate_tokens(body: bytes) -> int:
    """The admission charge: body bytes / 4, plus the completion tokens the request asks for."""
    prompt = math.ceil(len(body) / 4)
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return prompt
    if not isinstance(data, dict):
        return prompt
    wanted = (
        data.get("max_completion_tokens")
        or data.get("max_tokens")
        or data.get("max_output_tokens")  # the Responses API's
    )
    n = data.get("n")
    prompts = data.get("prompt")
    if not isinstance(wanted, int) or wanted < 1:
        return prompt
    copies = (n if isinstance(n, int) and n > 0 else 1) * (
        len(prompts) if isinstance(prompts, list) and prompts else 1
    )
    return prompt + wanted * copies


class RateLimitMiddleware:
    """429 for callers over their request or token budget; ``x-ratelimit-*`` headers."""

    def __init__(self, app: ASGIApp, limits: RateLimits, shapes: ErrorShapes) -> None:
        self.app = app
        self.limits = limits
        self.shapes = shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        budget = self.limits.budget(scope)
        if budget is None:
            await self.app(scope, receive, send)
            return
        if any(scope["path"] == p or scope["path"].startswith(p + "/") for p in UNMETERED_PATHS):
            await self._unmetered(scope, receive, send, budget)
            return
        body = request_context(scope).body or b""
        estimate = estimate_tokens(body) if budget.tokens is not None else 0
        try:
            refusal = await self.limits.admit(budget, estimate)
            headers = await self.limits.headers(budget)
        except Exception as exc:  # the counters' storage (Redis) is unreachable: a clear 503
            await self._unavailable(scope, receive, send, exc)
            return
        if refusal is not None:
            refusal.headers.update({k.decode(): v.decode() for k, v in headers})
            await error_response(scope, refusal, self.shapes)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if budget.tokens is not None:
                await self._reconcile(scope, budget, estimate)

    async def _unmetered(self, scope: Scope, receive: Receive, send: Send, budget: Budget) -> None:
        """A request counted against the request budget only; its body is not read here."""
        try:
            refusal = await self.limits.admit(Budget(budget.identity, budget.requests, None), 0)
        except Exception as exc:
            await self._unavailable(scope, receive, send, exc)
            return
        if refusal is not None:
            await error_response(scope, refusal, self.shapes)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _unavailable(
        self, scope: Scope, receive: Receive, send: Send, exc: Exception
    ) -> None:
        logger.warning("rate-limit storage unreachable: %s", exc)
        err = StoreUnavailableError("rate-limit counters")
        await error_response(scope, err, self.shapes)(scope, receive, send)

    async def _reconcile(self, scope: Scope, budget: Budget, estimate: int) -> None:
        used = request_context(scope).access.charged_tokens  # the router's tokens too
        try:
            await self.limits.reconcile(budget, estimate, used)
        except Exception:  # a storage hiccup must not turn a served request into an error
            logger.exception("rate-limit reconciliation failed")
