"""``create_app(settings)``: the FastAPI app, its lifespan, routers and middleware."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI

from llmserver import __version__
from llmserver.api import embeddings, openai, status
from llmserver.errors import install_exception_handlers
from llmserver.middleware.access_log import AccessLogMiddleware
from llmserver.models import ModelManager
from llmserver.service import Service
from llmserver.settings import Settings

logger = logging.getLogger("llmserver.app")


def create_app(settings: Settings) -> FastAPI:
    """Build the app. Models load in the background once it starts, so ``/health`` answers at
    once and ``/ready`` turns 200 when every model is loaded and warm."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        models = ModelManager(settings)
        app.state.settings = settings
        app.state.models = models
        app.state.service = Service(models, settings)
        app.state.started = time.monotonic()
        loading = asyncio.create_task(models.load_all())
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await models.close_all()
            logger.info("models closed")

    app = FastAPI(
        title="llmserver",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    install_exception_handlers(app)
    app.include_router(status.router)
    app.include_router(openai.router)
    app.include_router(embeddings.router)
    app.add_middleware(AccessLogMiddleware)
    return app
