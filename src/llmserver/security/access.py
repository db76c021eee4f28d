"""The start-up check that keeps a LAN server from opening by mistake.

Per-request decisions (which models a key may use, admin) are the core's: see
:class:`llmserver.core.caller.Caller`.
"""

from __future__ import annotations

import ipaddress

from llmserver.config.settings import Settings, SettingsError
from llmserver.security.keys import KeyStore


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
