"""The app's and each request's typed state: one :class:`AppContext` per running app, built in
its lifespan, and one :class:`RequestContext` per request, filled in by the middleware.

Routes, the shutdown and the middleware read them through :func:`app_context` and
:func:`request_context` only; nothing else lives on ``app.state`` or in ``scope["state"]``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.types import Scope

from llmserver.config.settings import Settings
from llmserver.core.manager import ModelManager
from llmserver.core.service import Service
from llmserver.jobs.batches import BatchJobs
from llmserver.jobs.response_runs import ResponseRuns
from llmserver.observability.accounting import UsageRecorder
from llmserver.observability.logs import AccessRecord
from llmserver.observability.metrics import Metrics
from llmserver.observability.recent import Recent
from llmserver.security.keys import ApiKey, KeyStore

#: the one name each of them has (on ``app.state``, and in ``scope["state"]``)
_NAME = "llmserver"


@dataclass(frozen=True, slots=True)
class AppContext:
    """Everything a running app is made of, built once when it starts."""

    settings: Settings
    #: the only way from a route to a model
    service: Service
    #: the core's own: the start-up report and tests read it, routes never do
    models: ModelManager
    keys: KeyStore
    #: ``time.monotonic()`` when the app started (for the uptime)
    started: float
    metrics: Metrics
    recent: Recent
    usage: UsageRecorder
    jobs: BatchJobs
    #: loading the preloaded models; the server reports (or exits) when it is done
    loading: asyncio.Task[None]
    #: the Responses API's stored responses and background runs
    responses: ResponseRuns


def attach_context(app: Starlette, context: AppContext) -> None:
    """Make ``context`` the app's (the lifespan does, each time the app starts)."""
    setattr(app.state, _NAME, context)


def app_context(app: Starlette) -> AppContext:
    """The running app's context; a RuntimeError before its lifespan has started it."""
    context = getattr(app.state, _NAME, None)
    if not isinstance(context, AppContext):
        raise RuntimeError("the app has not started: its lifespan builds the app context")
    return context


@dataclass(slots=True)
class RequestContext:
    """What the middleware learn about one request, outermost first, for the ones inside and
    the route."""

    #: set by the request-id middleware
    request_id: str | None = None
    #: the address the allowlist decided on (X-Forwarded-For only from a trusted proxy)
    client_address: str | None = None
    #: what the request did, logged by the access-log middleware once it has been answered
    access: AccessRecord = field(default_factory=AccessRecord)
    #: the authenticated key; None when authentication is off or the path is open
    key: ApiKey | None = None
    #: the key's own rate limits (a limit present with None: unlimited for this key); None:
    #: the server's apply
    rate_limits: dict[str, int | None] | None = None
    #: the body the body-limit middleware buffered (None for uploads, which it streams), so
    #: the rate limiter estimates tokens without reading it again
    body: bytes | None = None


def request_context(scope: Scope) -> RequestContext:
    """This request's context, created by the first middleware that asks."""
    state = scope.setdefault("state", {})
    context = state.get(_NAME)
    if context is None:
        context = state[_NAME] = RequestContext()
    assert isinstance(context, RequestContext)
    return context
