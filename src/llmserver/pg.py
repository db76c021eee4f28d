"""A PostgreSQL connection pool for the state that several gateways share (batch jobs,
stored responses): psycopg 3 with ``psycopg-pool`` (the ``state`` extra), imported only when a
``postgresql://`` store is configured. An unreachable server becomes
:class:`~llmserver.errors.StoreUnavailableError` (503) at this one boundary; the schema is
created on the first connection that works, so a gateway starts (and serves what needs no
database) while PostgreSQL is still down."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from llmserver.errors import StoreUnavailableError

if TYPE_CHECKING:
    import psycopg

#: an arbitrary, fixed advisory lock id: gateways starting together create the schema in turn
SCHEMA_LOCK = 0x6C6C6D73


class Database:
    """One pool to one PostgreSQL database, with the schemas of the stores using it."""

    def __init__(self, url: str, max_size: int = 8, timeout_s: float = 5.0) -> None:
        import psycopg
        import psycopg_pool

        self._errors: tuple[type[BaseException], ...] = (
            psycopg.OperationalError,
            psycopg_pool.PoolTimeout,
        )
        self.pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            timeout=timeout_s,
            open=True,
            # a connection broken by a server restart is replaced, not handed out
            check=psycopg_pool.ConnectionPool.check_connection,
        )
        self._schemas: list[Sequence[str]] = []
        self._created = 0
        self._lock = threading.Lock()

    def add_schema(self, statements: Sequence[str]) -> None:
        """Statements (``CREATE ... IF NOT EXISTS``) to run before the first use."""
        self._schemas.append(statements)

    def _create(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            todo = self._schemas[self._created :]
            if not todo:
                return
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statements in todo:
                for statement in statements:
                    conn.execute(statement)
            conn.commit()
            self._created += len(todo)

    @contextlib.contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in one transaction (committed at the end, rolled back on an error)."""
        try:
            with self.pool.connection() as conn:
                if self._created < len(self._schemas):
                    self._create(conn)
                yield conn
        except self._errors as exc:
            raise StoreUnavailableError() from exc

    def ping(self) -> None:
        """``SELECT 1`` (:class:`StoreUnavailableError` when it fails)."""
        with self.connect() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        """Close every connection."""
        self.pool.close()


def q(sql: str) -> str:
    """A portable statement written with ``?`` marks, in psycopg's ``%s`` style."""
    return sql.replace("?", "%s")
