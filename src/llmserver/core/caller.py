"""Who is asking: an API key's name and permissions, or anyone when keys are off."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llmserver.errors import AuthenticationError, PermissionDeniedError
from llmserver.security.keys import ApiKey


@dataclass(frozen=True, slots=True)
class Caller:
    """The permissions a request runs with; surfaces build it, the core decides with it.

    ``models`` empty means every model. Without keys (loopback, or ``insecure_no_auth``) the
    caller is :meth:`anyone`: no name, every model, admin.
    """

    name: str | None = None
    models: frozenset[str] = frozenset()
    admin: bool = False
    mask_pii: bool = False
    #: masked values come back in the answers (numbered placeholders; implies masking)
    pii_restore: bool = False
    #: a key was presented and checked (False for :meth:`anyone` and for a missing key)
    authenticated: bool = False

    @classmethod
    def anyone(cls) -> Caller:
        """The caller of a server without keys."""
        return cls(admin=True)

    @classmethod
    def of_key(cls, key: ApiKey) -> Caller:
        """The caller that presented ``key`` (and had it checked)."""
        return cls(
            name=key.name,
            models=frozenset(key.models),
            admin=key.admin,
            mask_pii=key.mask_pii,
            pii_restore=key.pii_restore,
            authenticated=True,
        )

    def may_use(self, names: Iterable[str]) -> bool:
        """Whether this caller may use a model known by any of ``names`` (id and aliases)."""
        return not self.models or any(name in self.models for name in names)

    def check_admin(self) -> None:
        """401 for a request without a key, 403 for a key that is not an admin key."""
        if self.admin:
            return
        if not self.authenticated:
            raise AuthenticationError("Missing API key.", code="missing_api_key")
        raise PermissionDeniedError("This endpoint needs an admin key.", code="admin_required")
