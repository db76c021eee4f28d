"""API-key authentication (pure ASGI). Decisions use ``scope["path"]`` only.

The key's name, never its text, goes into the access record and the logs. Keys are accepted in
the ``Authorization: Bearer`` and ``x-api-key`` headers only: a key in a URL ends up in proxy
logs, browser history and Referer headers, so a query-string key is refused with a 401.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from llmserver.errors import AuthenticationError
from llmserver.http.context import request_context
from llmserver.http.errors import ErrorShapes, error_response
from llmserver.security.keys import ApiKey, KeyStore

logger = logging.getLogger("llmserver.auth")

#: always open: process liveness and model readiness probes, the API's description, and the
#: web page's files (which hold no data: the page asks for a key before it calls the keyed API)
OPEN_PATHS = frozenset(
    {"/health", "/ready", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/ui"}
)
#: always open: the documentation pages' JavaScript and CSS, and the web page's files
OPEN_PREFIXES = ("/docs-assets/", "/ui/")
#: open when ``status_requires_key`` is off
STATUS_PATHS = frozenset({"/", "/metrics"})
_QUERY_KEY_NAMES = frozenset({"api_key", "api-key", "apikey", "key", "token", "access_token"})


class AuthMiddleware:
    """401 unless the request carries a live key; records who the caller is in the scope."""

    def __init__(
        self,
        app: ASGIApp,
        store: KeyStore,
        status_requires_key: bool,
        shapes: ErrorShapes,
    ) -> None:
        self.app = app
        self.store = store
        self.shapes = shapes
        self.open_paths = OPEN_PATHS if status_requires_key else OPEN_PATHS | STATUS_PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.store.configured:
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.open_paths or scope["path"].startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        try:
            key = self._authenticate(scope)
        except AuthenticationError as error:
            address = request_context(scope).client_address or "-"
            logger.warning(
                "refused %s %s from %s: %s",
                scope.get("method", "-"),
                scope["path"],
                address,
                error.code,
            )
            await error_response(scope, error, self.shapes)(scope, receive, send)
            return
        context = request_context(scope)
        context.key = key
        context.access.key_name = key.name
        context.rate_limits = key.rate_limits()
        await self.app(scope, receive, send)

    def _authenticate(self, scope: Scope) -> ApiKey:
        text = presented_key(scope)
        key = self.store.verify(text)
        if key is None:
            raise AuthenticationError(
                "Incorrect API key provided (or the key was revoked).", code="invalid_api_key"
            )
        return key


def presented_key(scope: Scope) -> str:
    """The key text from the headers; a missing key or a wrong scheme raises a 401."""
    headers: dict[bytes, bytes] = dict(scope.get("headers", []))
    auth = headers.get(b"authorization")
    if auth is not None:
        scheme, _, token = auth.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer":
            raise AuthenticationError(
                "Unsupported authorization scheme: send 'Authorization: Bearer <key>'.",
                code="invalid_auth_scheme",
            )
        if token.strip():
            return token.strip()
    api_key = headers.get(b"x-api-key")
    if api_key is not None and api_key.strip():
        return api_key.decode("latin-1").strip()
    query = scope.get("query_string", b"").decode("latin-1")
    if any(name.lower() in _QUERY_KEY_NAMES for name, _ in parse_qsl(query)):
        raise AuthenticationError(
            "API keys in the URL are not accepted: send 'Authorization: Bearer <key>'.",
            code="api_key_in_query",
        )
    raise AuthenticationError(
        "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
        code="missing_api_key",
    )
