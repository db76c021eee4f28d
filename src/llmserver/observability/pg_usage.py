"""Token usage in PostgreSQL, when the ``store`` setting names one: the ``usage`` table of
:mod:`llmserver.observability.accounting`, with every gateway adding its counts to the same
rows, so ``/admin/usage``, ``llmserver usage`` and the dashboard's charts show the whole
cluster's usage per key, model and day."""

from __future__ import annotations

import datetime as dt

from llmserver.observability.accounting import COLUMNS, Tally, UsageRow
from llmserver.pg import Database

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS usage (
        day VARCHAR(10) NOT NULL,
        key_name VARCHAR(200) NOT NULL,
        model VARCHAR(200) NOT NULL,
        requests BIGINT NOT NULL DEFAULT 0,
        prompt_tokens BIGINT NOT NULL DEFAULT 0,
        completion_tokens BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (day, key_name, model)
    )""",
)
UPSERT = """
INSERT INTO usage (day, key_name, model, requests, prompt_tokens, completion_tokens)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (day, key_name, model) DO UPDATE SET
    requests = usage.requests + excluded.requests,
    prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = usage.completion_tokens + excluded.completion_tokens
"""


class PostgresUsageStore:
    """The shared ``usage`` table in ``db``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.add_schema(SCHEMA)

    def __str__(self) -> str:
        return "the usage table in PostgreSQL"

    def add(self, tally: Tally) -> None:
        """Add a batch of counts in one transaction (keys in a fixed order: two gateways
        adding to the same rows at once never deadlock)."""
        rows = [(*key, *tally[key]) for key in sorted(tally)]
        with self.db.connect() as conn, conn.cursor() as cursor:
            cursor.executemany(UPSERT, rows)

    def query(self, since: dt.date | None = None) -> list[UsageRow]:
        """Usage from ``since`` (a UTC day) on, oldest first."""
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM usage WHERE day >= %s ORDER BY day, key_name, model"
        )
        with self.db.connect() as conn:
            rows = conn.execute(sql, (since.isoformat() if since else "",)).fetchall()
        return [UsageRow(d, k, m, int(r), int(p), int(c)) for d, k, m, r, p, c in rows]
