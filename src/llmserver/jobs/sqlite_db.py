"""One SQLite connection per unit of work, for the stores that share the batch database."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def transaction(db: Path) -> Iterator[sqlite3.Connection]:
    """A connection to ``db`` holding one transaction, committed when the block ends (rolled
    back when it raises), then closed. Write-ahead logging lets readers and the one writer of
    several processes work side by side; a committed row survives a power cut."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        with conn:
            yield conn
    finally:
        conn.close()
