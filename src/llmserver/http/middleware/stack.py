"""The app's middleware, in order, each given what it needs."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from llmserver.config.settings import Settings
from llmserver.http.errors import ErrorShapes
from llmserver.http.middleware.access_log import AccessLogMiddleware
from llmserver.http.middleware.allowlist import AllowlistMiddleware
from llmserver.http.middleware.auth import AuthMiddleware
from llmserver.http.middleware.body_limit import BodyLimitMiddleware
from llmserver.http.middleware.browser import BrowserRedirectMiddleware
from llmserver.http.middleware.rate_limit import RateLimitMiddleware, RateLimits
from llmserver.http.middleware.request_id import RequestIdMiddleware
from llmserver.observability.logs import RequestObserver
from llmserver.security.keys import KeyStore


def install_middleware(
    app: FastAPI,
    settings: Settings,
    keys: KeyStore,
    rate_limits: RateLimits,
    shapes: ErrorShapes,
    observers: Sequence[RequestObserver],
) -> None:
    """Middleware, outermost first (each ``add_middleware`` call wraps the ones before it):
    request id -> access log -> body size (413) -> allowlist -> CORS -> browser's GET / to the
    page -> auth -> rate limit.

    Refusals are logged with the request id; CORS preflights and 401s carry CORS headers; the
    rate limit runs after authentication because it counts per API key name, which
    authentication puts in the request context, so a refused caller never touches a budget, and
    inside the body limit, whose buffered body it estimates tokens from."""
    app.add_middleware(RateLimitMiddleware, limits=rate_limits, shapes=shapes)
    app.add_middleware(
        AuthMiddleware,
        store=keys,
        status_requires_key=settings.status_requires_key,
        shapes=shapes,
    )
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
        shapes=shapes,
    )
    # uploads have their own, larger limit (multipart framing on top of the file itself)
    uploads = {
        "/v1/files": settings.batch_max_file_bytes + 16_384,
        "/api/blobs/": settings.max_blob_bytes,  # Ollama's model files (LoRA adapters)
    }
    app.add_middleware(
        BodyLimitMiddleware, limit=settings.max_body_bytes, shapes=shapes, uploads=uploads
    )
    app.add_middleware(AccessLogMiddleware, observers=observers, shapes=shapes)
    app.add_middleware(RequestIdMiddleware)  # outermost: every line of the request has the id
