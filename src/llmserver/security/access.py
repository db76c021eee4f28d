"""Per-request access decisions the routes make: which key called, which models it may use,
whether it is an admin, and the start-up check that keeps a LAN server from opening by mistake.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import HTTPConnection

from llmserver.errors import AuthenticationError, PermissionDeniedError
from llmserver.core.manager import ModelHandle
from llmserver.security.keys import ApiKey, KeyStore
from llmserver.config.settings import Settings, SettingsError


def caller(request: HTTPConnection) -> ApiKey | None:
    """The authenticated key of this request; None when authentication is off."""
    key: ApiKey | None = request.scope.get("state", {}).get("api_key")
    return key


def auth_enabled(request: HTTPConnection) -> bool:
    """Whether this server checks keys (it does as soon as the keys file has any)."""
    store: KeyStore | None = getattr(request.app.state, "keys", None)
    return store is not None and store.configured


def may_use(request: HTTPConnection, handle: ModelHandle) -> bool:
    """Whether the caller's key may use this model (any key may when it names no models)."""
    key = caller(request)
    return key is None or key.allows([handle.id, *handle.config.aliases])


def check_model(request: HTTPConnection, handle: ModelHandle) -> ModelHandle:
    """403 unless the caller may use ``handle``; returns it for chaining."""
    if not may_use(request, handle):
        raise PermissionDeniedError(
            f"This API key may not use the model '{handle.id}'.",
            param="model",
            code="model_not_allowed",
        )
    return handle


def check_admin(request: HTTPConnection) -> None:
    """403 unless the caller's key is an admin key. Without keys everyone is admin: that is
    only possible on loopback or with ``insecure_no_auth``."""
    if not auth_enabled(request):
        return
    key = caller(request)
    if key is None:
        raise AuthenticationError("Missing API key.", code="missing_api_key")
    if not key.admin:
        raise PermissionDeniedError("This endpoint needs an admin key.", code="admin_required")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_safe_start(settings: Settings, store: KeyStore) -> None:
    """Refuse to serve on a non-loopback address with no keys, unless told to be insecure."""
    if store.configured or settings.insecure_no_auth or is_loopback(settings.host):
        return
    raise SettingsError(
        f"refusing to serve on {settings.host} without API keys: anyone on the network could "
        "use it.\n  Create a key first:  llmserver keys create --name my-app\n"
        f"  (keys file: {store.path}), or pass --insecure-no-auth to serve without keys."
    )
