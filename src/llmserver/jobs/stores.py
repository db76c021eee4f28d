"""The stores one app uses, chosen by the ``store`` setting: SQLite under ``data_dir`` (the
embedded default) or one PostgreSQL database that several gateways share (batch jobs, files,
stored responses)."""

from __future__ import annotations

from dataclasses import dataclass

from llmserver.config.settings import Settings
from llmserver.jobs.response_store import Responses, ResponseStore
from llmserver.jobs.sqlite_store import SQLiteStore
from llmserver.jobs.store import Store
from llmserver.pg import Database


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return url.startswith(("postgresql://", "postgres://"))


@dataclass
class Stores:
    """The batch store, the responses store and the shared database they use (None: SQLite)."""

    jobs: Store
    responses: Responses
    db: Database | None = None

    def close(self) -> None:
        """Close the database's connections."""
        if self.db is not None:
            self.db.close()


def open_stores(settings: Settings) -> Stores:
    """The stores ``settings.store`` asks for (nothing is connected yet with PostgreSQL: the
    schema is made on first use, so a gateway starts while its database is down)."""
    folder = settings.data_file(None, "batches")
    if not is_postgres(settings.store):
        # one table more in the batch store's database
        return Stores(SQLiteStore(folder), ResponseStore(folder / "batches.sqlite3"))
    from llmserver.jobs.postgres_responses import PostgresResponseStore
    from llmserver.jobs.postgres_store import PostgresStore

    db = Database(settings.store)
    gateway = settings.gateway()
    jobs = PostgresStore(db, folder / "pg-cache", gateway, settings.store_lease_s)
    return Stores(jobs, PostgresResponseStore(db, gateway), db)
