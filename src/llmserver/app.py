"""``create_app(settings)``: the FastAPI app, its lifespan, routers and middleware."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from llmserver import __version__
from llmserver.config.settings import Settings, SettingsError
from llmserver.core.caller import Caller
from llmserver.core.manager import ModelManager
from llmserver.core.service import Service
from llmserver.http.errors import install_exception_handlers, openai_error
from llmserver.http.middleware.access_log import AccessLogMiddleware
from llmserver.http.middleware.allowlist import AllowlistMiddleware
from llmserver.http.middleware.auth import AuthMiddleware
from llmserver.http.middleware.body_limit import BodyLimitMiddleware
from llmserver.http.middleware.browser import BrowserRedirectMiddleware
from llmserver.http.middleware.rate_limit import RateLimitMiddleware, RateLimits
from llmserver.http.middleware.request_id import RequestIdMiddleware
from llmserver.observability.accounting import UsageRecorder, UsageStore, usage_db_path
from llmserver.observability.metrics import Metrics
from llmserver.observability.recent import Recent
from llmserver.privacy import PIIMasker
from llmserver.security.access import check_safe_start
from llmserver.security.keys import KeyFileError, KeyStore, static_keys
from llmserver.surfaces.admin import status, telemetry, whoami
from llmserver.surfaces.admin.docs import install_docs
from llmserver.surfaces.anthropic import router as anthropic
from llmserver.surfaces.anthropic.translate import anthropic_error
from llmserver.surfaces.batches import router as batches
from llmserver.surfaces.batches.wiring import create_jobs
from llmserver.surfaces.ollama import router as ollama
from llmserver.surfaces.ollama.errors import ollama_error
from llmserver.surfaces.openai import batch_lines
from llmserver.surfaces.openai import router as openai
from llmserver.surfaces.simple import errors as simple_errors
from llmserver.surfaces.simple import router as simple
from llmserver.surfaces.ui import pages as ui_pages
from llmserver.surfaces.ui import router as ui

logger = logging.getLogger("llmserver.app")


def create_app(settings: Settings) -> FastAPI:
    """Build the app. Models load in the background once it starts, so ``/health`` answers at
    once and ``/ready`` turns 200 when every model is loaded and warm.

    Raises :class:`SettingsError` when the keys file is unreadable, or when the server would
    listen beyond loopback with no keys (see ``check_safe_start``)."""
    try:
        keys = KeyStore(
            settings.data_file(settings.keys_file, "keys.json"), static_keys(settings.api_key)
        )
    except KeyFileError as exc:
        raise SettingsError(str(exc)) from None
    check_safe_start(settings, keys)
    rate_limits = RateLimits(settings)  # fails start-up on a bad storage URL

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        models = ModelManager(settings)
        app.state.settings = settings
        app.state.models = models  # the core's own; only tests look at it from outside
        app.state.pii = PIIMasker(mode=settings.pii_mask_mode)
        service = app.state.service = Service(models, settings, app.state.pii)
        app.state.keys = keys
        app.state.started = time.monotonic()
        app.state.metrics = Metrics(
            [m.id for m in settings.models], lambda: service.admin.models(Caller.anyone())
        )
        app.state.recent = Recent()
        app.state.usage = UsageRecorder(UsageStore(usage_db_path(settings)))
        app.state.usage.start()
        app.state.rate_limits = rate_limits
        loading = asyncio.create_task(service.admin.load_all())
        app.state.loading = loading  # the server reports (or exits) when it is done
        app.state.jobs = create_jobs(
            settings, service, batch_lines.handlers(), keys, app.state.usage, rate_limits
        )
        app.state.batch_source = app.state.jobs  # the dashboard's batch progress
        await app.state.jobs.runner.start(after=loading)
        try:
            yield
        finally:
            await app.state.jobs.runner.stop()
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await service.admin.close()
            await asyncio.to_thread(app.state.usage.stop)
            logger.info("models closed")

    app = FastAPI(
        title="llmserver",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, from the package rather than a CDN
        redoc_url=None,
    )
    install_exception_handlers(app)
    #: each surface's error shape, by path prefix (the default is OpenAI's); /api is Ollama's;
    #: /api/v1 (seed 001's aliases) is named so that it wins over the shorter /api
    simple_shape = simple_errors.error_shape(settings.error_language)
    app.state.error_shapes = [
        ("/api", ollama_error),
        ("/api/v1", openai_error),
        *((path, simple_shape) for path in simple.PATHS),
        (anthropic.PREFIX, anthropic_error),
    ]
    install_docs(app)
    app.include_router(status.router)
    app.include_router(openai.router)
    app.include_router(ollama.router)  # early: routes are matched in order, these are hot
    app.include_router(openai.aliases())
    app.include_router(telemetry.router)
    app.include_router(simple.router)
    app.include_router(whoami.router)
    app.include_router(anthropic.router)
    app.include_router(ui_pages.router)
    app.include_router(ui.router)
    app.include_router(batches.router)
    # Middleware, outermost first (each add_middleware call wraps the ones before it):
    #   request id -> access log -> body size (413) -> allowlist -> CORS -> browser's GET / to
    #   the page -> auth -> rate limit
    # Refusals are logged with the request id; CORS preflights and 401s carry CORS headers; the
    # rate limit runs after authentication because it counts per API key name, which
    # authentication puts in scope["state"], so a refused caller never touches a budget.
    app.add_middleware(
        RateLimitMiddleware, limits=rate_limits, max_body_bytes=settings.max_body_bytes
    )
    app.add_middleware(AuthMiddleware, store=keys, status_requires_key=settings.status_requires_key)
    app.add_middleware(BrowserRedirectMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=settings.cors_methods,
            allow_headers=settings.cors_headers,
        )
    app.add_middleware(
        AllowlistMiddleware,
        allowed=settings.allowed_ips,
        trusted_proxies=settings.trusted_proxies,
    )
    # uploads have their own, larger limit (multipart framing on top of the file itself)
    uploads = {"/v1/files": settings.batch_max_file_bytes + 16_384}
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes, uploads=uploads)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: every line of the request has the id
    return app
