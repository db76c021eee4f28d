"""API keys in PostgreSQL (``keys_store: postgresql://...``), for several gateways: the same
:class:`~llmserver.security.keys.ApiKey` entries as the keys file, one row each, hashes only.
``llmserver keys`` writes the table; every gateway's :class:`~llmserver.security.keys.KeyStore`
reads it again every half second in a background thread, so a created or revoked key holds on
every gateway within a second, and the request path never waits for the database."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from llmserver.errors import StoreUnavailableError
from llmserver.pg import Database
from llmserver.security.keys import ApiKey, KeyFileError, hash_key, new_key_text

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS api_keys (
        name VARCHAR(200) PRIMARY KEY,
        entry TEXT NOT NULL
    )""",
)


class KeyTable:
    """The ``api_keys`` table of the database at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = Database(url, max_size=2)
        self.db.add_schema(SCHEMA)

    def read(self) -> list[ApiKey]:
        """Every key, oldest first (:class:`StoreUnavailableError` when unreachable)."""
        with self.db.connect() as conn:
            rows = conn.execute("SELECT entry FROM api_keys").fetchall()
        keys = [ApiKey(**json.loads(entry)) for (entry,) in rows]
        return sorted(keys, key=lambda k: (k.created, k.name))

    def create(self, name: str, **options: Any) -> str:
        """Add a key called ``name``; its text (the only time it is seen)."""
        text = new_key_text()
        key = ApiKey(name=name, hash=hash_key(text), created=time.time(), **options)
        with self._writing() as conn:
            inserted = conn.execute(
                "INSERT INTO api_keys (name, entry) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (name, json.dumps(asdict(key))),
            ).rowcount
        if inserted != 1:
            raise KeyFileError(f"a key named '{name}' already exists in {self.where()}")
        return text

    def revoke(self, name: str) -> None:
        """Mark the key called ``name`` revoked (kept, so the name is not reused by mistake)."""
        with self._writing() as conn:
            row = conn.execute(
                "SELECT entry FROM api_keys WHERE name = %s FOR UPDATE", (name,)
            ).fetchone()
            if row is None:
                raise KeyFileError(f"no key named '{name}' in {self.where()}")
            entry = json.loads(row[0])
            entry["revoked"] = True
            conn.execute(
                "UPDATE api_keys SET entry = %s WHERE name = %s", (json.dumps(entry), name)
            )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Any]:
        """A transaction; an unreachable database is a :class:`KeyFileError` (the commands
        print it)."""
        try:
            with self.db.connect() as conn:
                yield conn
        except StoreUnavailableError:
            raise KeyFileError(f"{self.where()} cannot be reached") from None

    def where(self) -> str:
        """The database, without its password."""
        return "the keys table of " + self.url.split("@")[-1]

    def close(self) -> None:
        """Close the connections."""
        self.db.close()
