"""IP allowlist: the client address, from the peer or from a trusted proxy's X-Forwarded-For."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from llmserver.errors import PermissionDeniedError
from llmserver.http.context import request_context
from llmserver.http.errors import ErrorShapes, error_response

logger = logging.getLogger("llmserver.allowlist")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(items: Iterable[str]) -> list[Network]:
    """Parse addresses and CIDR ranges (validated by the settings already)."""
    return [ipaddress.ip_network(item, strict=False) for item in items]


def _within(address: str, nets: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in nets)


def client_address(scope: Scope, trusted: list[Network]) -> str:
    """The caller's address. ``X-Forwarded-For`` counts only when the direct peer is a trusted
    proxy, and is read right to left past trusted hops: the entries left of the first untrusted
    one were written by the client and can say anything."""
    peer = scope["client"][0] if scope.get("client") else ""
    if not trusted or not _within(peer, trusted):
        return peer
    hops: list[str] = []
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            hops += [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop
    return hops[0] if hops else peer


class AllowlistMiddleware:
    """403 unless the client address is in ``allowed`` (an empty list allows everyone)."""

    def __init__(
        self,
        app: ASGIApp,
        allowed: list[str],
        trusted_proxies: list[str],
        shapes: ErrorShapes,
    ) -> None:
        self.app = app
        self.allowed = networks(allowed)
        self.trusted = networks(trusted_proxies)
        self.shapes = shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        address = client_address(scope, self.trusted)
        request_context(scope).client_address = address
        if self.allowed and not _within(address, self.allowed):
            logger.warning("refused %s %s from %s: not in allowed_ips", *_where(scope), address)
            error = PermissionDeniedError(
                "Your address is not allowed to use this server.", code="ip_not_allowed"
            )
            await error_response(scope, error, self.shapes)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _where(scope: Scope) -> tuple[str, str]:
    return scope.get("method", "-"), scope["path"]
