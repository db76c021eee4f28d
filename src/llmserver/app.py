"""``create_app(settings)``: the FastAPI app, its lifespan, the surfaces' routers and middleware."""

from __future__ import annotations

from fastapi import FastAPI

from llmserver import __version__
from llmserver.composition import lifespan
from llmserver.config.settings import Settings, SettingsError
from llmserver.http.errors import install_exception_handlers
from llmserver.http.middleware.rate_limit import RateLimits
from llmserver.http.middleware.stack import install_middleware
from llmserver.http.surface import error_shapes
from llmserver.observability.logs import RequestObserver
from llmserver.security.access import check_safe_start
from llmserver.security.key_table import KeyTable
from llmserver.security.keys import KeyFileError, KeyStore, static_keys
from llmserver.surfaces.catalog import surfaces


def create_app(settings: Settings) -> FastAPI:
    """Build the app. Models load in the background once it starts, so ``/health`` answers at
    once and ``/ready`` turns 200 when every model is loaded and warm.

    Raises :class:`SettingsError` when the keys file is unreadable, or when the server would
    listen beyond loopback with no keys (see ``check_safe_start``)."""
    try:
        keys = KeyStore(
            settings.data_file(settings.keys_file, "keys.json"),
            static_keys(settings.api_key),
            None if settings.keys_store is None else KeyTable(settings.keys_store),
        )
    except KeyFileError as exc:
        raise SettingsError(str(exc)) from None
    check_safe_start(settings, keys)
    rate_limits = RateLimits(settings)  # fails start-up on a bad storage URL
    described = surfaces(settings)
    #: metrics, recent requests and usage: registered by the lifespan, fed by the access log
    observers: list[RequestObserver] = []
    app = FastAPI(
        title="llmserver",
        version=__version__,
        lifespan=lifespan(settings, keys, rate_limits, described, observers),
        docs_url=None,  # served by the admin surface, from the package rather than a CDN
        redoc_url=None,
    )
    shapes = error_shapes(described)
    install_exception_handlers(app, shapes)
    for surface in described:  # routes are matched in order: the catalog lists hot ones early
        for router in surface.routers:
            app.include_router(router)
    install_middleware(app, settings, keys, rate_limits, shapes, observers)
    return app
