"""API keys: made once, shown once, stored only as hashes in a JSON keys file.

A key is 32 random bytes from :mod:`secrets` (256 bits), so a plain SHA-256 of it is enough:
slow password hashes (bcrypt, scrypt) exist to protect guessable passwords, and nobody can
search a 2**256 space however fast the hash is. A fast hash also lets every request be checked
without a cache of plaintext keys. Hashes are compared with :func:`hmac.compare_digest`, against
every stored key, so the time taken does not say which key came close.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

KEY_PREFIX = "llms-"
FILE_VERSION = 1
#: how often a running server looks at the keys file for changes (revocations)
RELOAD_INTERVAL_S = 1.0
#: how often a gateway reads a shared keys table again
TABLE_INTERVAL_S = 0.5


class KeyFileError(Exception):
    """The keys file cannot be read or written; the message names the path."""


@dataclass
class ApiKey:
    """One key as stored: its name, the SHA-256 of its text, and what it may do."""

    name: str
    hash: str
    models: list[str] = field(default_factory=list)  # empty: every model
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    admin: bool = False
    revoked: bool = False
    mask_pii: bool = False
    pii_restore: bool = False
    created: float = 0.0

    def allows(self, names: list[str]) -> bool:
        """Whether this key may use a model known by any of ``names`` (its id and aliases)."""
        return not self.models or any(name in self.models for name in names)

    def rate_limits(self) -> dict[str, int | None] | None:
        """The rate limits for the traffic limiter, or None when the key has none."""
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            return None
        return {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
        }


def hash_key(text: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def new_key_text() -> str:
    """A fresh random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def read_keys(path: Path) -> list[ApiKey]:
    """Every key in the file; an absent file has none."""
    path = path.expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"keys file {path} cannot be read: {exc}") from None
    try:
        return [ApiKey(**entry) for entry in data["keys"]]
    except (KeyError, TypeError) as exc:
        raise KeyFileError(f"keys file {path} is malformed: {exc}") from None


def write_keys(path: Path, keys: list[ApiKey]) -> None:
    """Replace the file atomically, readable by its owner only."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"version": FILE_VERSION, "keys": [asdict(k) for k in keys]}, indent=2)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(body + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_key(path: Path, name: str, **options: Any) -> str:
    """Add a key called ``name`` and return its text (the only time it is seen)."""
    keys = read_keys(path)
    if any(k.name == name for k in keys):
        raise KeyFileError(f"a key named '{name}' already exists in {path.expanduser()}")
    text = new_key_text()
    keys.append(ApiKey(name=name, hash=hash_key(text), created=time.time(), **options))
    write_keys(path, keys)
    return text


def revoke_key(path: Path, name: str) -> None:
    """Mark the key called ``name`` revoked (kept, so the name is not reused by mistake)."""
    keys = read_keys(path)
    for key in keys:
        if key.name == name:
            key.revoked = True
            write_keys(path, keys)
            return
    raise KeyFileError(f"no key named '{name}' in {path.expanduser()}")


def static_keys(hashes: list[str]) -> list[ApiKey]:
    """Keys given as ``--api-key`` / ``LLMSERVER_API_KEY`` (already hashed by the settings):
    named ``api-key-1``, ``api-key-2``, ... in logs; every model, admin, like vLLM's key."""
    return [ApiKey(name=f"api-key-{i}", hash=h, admin=True) for i, h in enumerate(hashes, 1)]


class KeySource(Protocol):
    """Keys kept elsewhere than the file: the PostgreSQL table of
    :mod:`llmserver.security.key_table`, shared by several gateways."""

    def read(self) -> list[ApiKey]:
        """Every key (an exception when the keys cannot be read)."""

    def close(self) -> None:
        """Release its connections."""


class KeyStore:
    """The keys a running server accepts: the keys file's, re-read when the file changes (or
    a shared ``table``'s, read again every half second by :meth:`start`'s thread), and any
    static ones from the settings."""

    def __init__(
        self, path: Path, static: list[ApiKey] | None = None, table: KeySource | None = None
    ) -> None:
        self.path = path.expanduser()
        self.table = table
        self._static = list(static or [])
        #: the table could not be read yet: authentication stays on, only static keys pass
        self._unread = False
        if table is None:
            self._keys = read_keys(self.path) + self._static
        else:
            self._read_table()
        self._stamp = self._file_stamp()
        self._checked = time.monotonic()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def _read_table(self) -> None:
        assert self.table is not None
        try:
            self._keys = self.table.read() + self._static
            self._unread = False
        except Exception:  # unreachable: keep the keys we had (none at first: fail closed)
            if not hasattr(self, "_keys"):
                self._keys = list(self._static)
                self._unread = True

    def start(self) -> None:
        """Keep a shared table's keys current (a thread; nothing to do for the file)."""
        if self.table is None or self._poller is not None:
            return
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, name="keys-table", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(TABLE_INTERVAL_S):
            self._read_table()

    def close(self) -> None:
        """Stop the thread of :meth:`start`."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(10)
            self._poller = None

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _refresh(self) -> None:
        if self.table is not None:  # the poller keeps a table's keys current
            return
        now = time.monotonic()
        if now - self._checked < RELOAD_INTERVAL_S:
            return
        self._checked = now
        stamp = self._file_stamp()
        if stamp != self._stamp:
            # a broken file keeps the keys we had rather than opening the server
            with contextlib.suppress(KeyFileError):
                self._keys = read_keys(self.path) + self._static
                self._stamp = stamp

    @property
    def configured(self) -> bool:
        """Whether any key exists (revoked ones count: authentication stays on). The file is
        looked at again here too, so the first key created while the server runs turns
        authentication on within a second."""
        self._refresh()
        return bool(self._keys) or self._unread

    def verify(self, text: str) -> ApiKey | None:
        """The live key whose hash matches ``text``, else None."""
        self._refresh()
        digest = hash_key(text)
        found: ApiKey | None = None
        for key in self._keys:
            # no early exit: every stored hash is compared
            if hmac.compare_digest(digest, key.hash) and found is None:
                found = key
        if found is None or found.revoked:
            return None
        return found

    def named(self, name: str) -> ApiKey | None:
        """The live key called ``name``, else None (revoked or deleted)."""
        self._refresh()
        for key in self._keys:
            if key.name == name and not key.revoked:
                return key
        return None
