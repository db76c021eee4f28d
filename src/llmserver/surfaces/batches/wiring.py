"""The app's batch jobs, wired: the SQLite store under ``data_dir``, the runner with the
endpoints' line handlers, usage and rate-limit accounting, and the creating key looked up anew
for every line (a revoked key's lines fail with 401)."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.core.caller import Caller
from llmserver.core.service import Service
from llmserver.core.usage import Usage
from llmserver.http.middleware.rate_limit import RateLimits
from llmserver.jobs.batches import BatchJobs
from llmserver.jobs.lines import LineHandlers
from llmserver.jobs.runner import Runner, caller_from_snapshot
from llmserver.jobs.sqlite_store import SQLiteStore
from llmserver.observability.accounting import UsageRecorder
from llmserver.security.keys import KeyStore


def create_jobs(
    settings: Settings,
    service: Service,
    handlers: LineHandlers,
    keys: KeyStore,
    usage: UsageRecorder,
    rate_limits: RateLimits,
) -> BatchJobs:
    """Batch jobs for one app (start its runner in the lifespan)."""
    store = SQLiteStore(settings.data_file(None, "batches"))

    async def count(caller: Caller, model: str, used: Usage) -> None:
        usage.record(caller.name, model, used.prompt_tokens, used.completion_tokens)
        key = keys.named(caller.name) if caller.name else None
        limits = key.rate_limits() if key is not None else None
        await rate_limits.charge(caller.name, limits, used.total_tokens)

    def lookup(snapshot: dict[str, object]) -> Caller | None:
        stored = caller_from_snapshot(dict(snapshot))
        if stored.name is None or not stored.authenticated:
            return stored
        key = keys.named(stored.name)
        if key is None:
            return None
        return Caller(
            name=key.name,
            models=frozenset(key.models),
            admin=key.admin,
            mask_pii=key.mask_pii,
            authenticated=True,
        )

    runner = Runner(store, service, handlers, settings, count, lookup)
    return BatchJobs(store, runner, handlers, service, settings)
