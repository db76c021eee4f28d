"""Stored responses of the Responses API in PostgreSQL (``store: postgresql://...``): the
``responses`` table of :mod:`llmserver.jobs.response_store`, plus the gateway that ran each
response, so a restarting gateway fails only its own interrupted background runs, never a run
still going on another gateway."""

from __future__ import annotations

from llmserver.jobs.response_store import (
    COLUMNS,
    SCHEMA,
    StoredResponse,
    interrupted_body,
    response_row,
    stored,
)
from llmserver.pg import Database, q

PG_SCHEMA = (
    *SCHEMA,
    "ALTER TABLE responses ADD COLUMN IF NOT EXISTS gateway VARCHAR(200)",
)


class PostgresResponseStore:
    """Stored responses in the shared database ``db``; ``gateway`` is this process's id."""

    def __init__(self, db: Database, gateway: str) -> None:
        self.db = db
        self.gateway = gateway
        db.add_schema(PG_SCHEMA)

    def put(self, record: StoredResponse) -> None:
        """Store ``record``, replacing an earlier version of it."""
        with self.db.connect() as conn:
            conn.execute(
                q(
                    f"INSERT INTO responses ({COLUMNS}, gateway) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
                    "body = excluded.body, events = excluded.events"
                ),
                (*response_row(record), self.gateway),
            )

    def get(self, response_id: str, owner: str, now: int) -> StoredResponse | None:
        """The response if ``owner`` created it and it has not expired, else None."""
        with self.db.connect() as conn:
            row = conn.execute(
                q(f"SELECT {COLUMNS} FROM responses WHERE id = ? AND owner = ? AND expires_at > ?"),
                (response_id, owner, now),
            ).fetchone()
        return None if row is None else stored(row)

    def interrupted(self) -> int:
        """This gateway id's background responses still running become ``failed``."""
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT id, body FROM responses WHERE status IN ('queued', 'in_progress') "
                "AND gateway = %s FOR UPDATE",
                (self.gateway,),
            ).fetchall()
            for response_id, raw in rows:
                conn.execute(
                    "UPDATE responses SET status = 'failed', body = %s WHERE id = %s",
                    (interrupted_body(raw), response_id),
                )
        return len(rows)

    def delete(self, response_id: str, owner: str) -> bool:
        """Remove ``owner``'s response; False when there was none."""
        with self.db.connect() as conn:
            cursor = conn.execute(
                "DELETE FROM responses WHERE id = %s AND owner = %s", (response_id, owner)
            )
        return cursor.rowcount > 0

    def purge(self, now: int) -> int:
        """Remove the responses past their retention; how many."""
        with self.db.connect() as conn:
            cursor = conn.execute("DELETE FROM responses WHERE expires_at <= %s", (now,))
        return int(cursor.rowcount)
