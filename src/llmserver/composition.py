"""What one running app is made of, put together when it starts and taken apart when it stops:
the model manager and the service, the observers of requests (metrics, recent requests, usage)
and the batch jobs, with the line handlers the surfaces describe."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from llmserver.config.settings import Settings
from llmserver.core.caller import Caller
from llmserver.core.manager import ModelManager
from llmserver.core.service import Service
from llmserver.core.usage import Usage
from llmserver.errors import StoreUnavailableError
from llmserver.http.context import AppContext, attach_context
from llmserver.http.middleware.rate_limit import RateLimits
from llmserver.http.surface import Surface, line_handlers
from llmserver.jobs.batches import BatchJobs
from llmserver.jobs.lines import LineHandlers
from llmserver.jobs.response_runs import Count, ResponseRuns
from llmserver.jobs.runner import Runner, caller_from_snapshot
from llmserver.jobs.store import Store
from llmserver.jobs.stores import Stores, open_stores
from llmserver.observability.accounting import (
    UsageRecorder,
    Usages,
    UsageStore,
    usage_db_path,
)
from llmserver.observability.logs import RequestObserver
from llmserver.observability.metrics import Metrics
from llmserver.observability.recent import Recent
from llmserver.privacy import PIIMasker
from llmserver.security.keys import KeyStore

logger = logging.getLogger("llmserver.app")

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def lifespan(
    settings: Settings,
    keys: KeyStore,
    rate_limits: RateLimits,
    surfaces: Sequence[Surface],
    observers: list[RequestObserver],
) -> Lifespan:
    """The app's lifespan: builds its :class:`AppContext` and registers the request observers
    in ``observers`` (the list the access-log middleware was given) while it runs. Models load
    in the background, so ``/health`` answers at once."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        models = ModelManager(settings)
        service = Service(models, settings, PIIMasker(mode=settings.pii_mask_mode))
        started = time.monotonic()
        metrics = Metrics(
            [m.id for m in settings.models],
            lambda: service.admin.models(Caller.anyone()),
            service.admin.memory,
            settings.gateway(),
        )
        recent = Recent()
        stores = open_stores(settings)
        usage = UsageRecorder(usage_store(settings, stores))
        usage.start()
        loading = asyncio.create_task(service.admin.load_all())
        handlers = line_handlers(surfaces)
        count = usage_counter(keys, usage, rate_limits)
        keys.start()
        jobs = create_jobs(settings, stores.jobs, service, handlers, keys, count)
        with contextlib.suppress(StoreUnavailableError):  # the database may come later
            if lost := await asyncio.to_thread(stores.responses.interrupted):
                logger.warning("%d background responses were cut short by a restart", lost)
        responses = ResponseRuns(stores.responses, settings.responses_retention_s, count)
        await jobs.runner.start(after=loading)
        observers[:] = [metrics, recent, usage]
        context = AppContext(
            settings,
            service,
            models,
            keys,
            started,
            metrics,
            recent,
            usage,
            jobs,
            loading,
            responses,
        )
        attach_context(app, context)
        try:
            yield
        finally:
            observers.clear()
            await responses.close()
            await jobs.runner.stop()
            await asyncio.to_thread(stores.close)
            await asyncio.to_thread(keys.close)
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await service.admin.close()
            await service.close_caches()
            await asyncio.to_thread(usage.stop)
            logger.info("models closed")

    return run


def usage_store(settings: Settings, stores: Stores) -> Usages:
    """Usage in the shared PostgreSQL when the ``store`` setting names one, else SQLite."""
    if stores.db is None:
        return UsageStore(usage_db_path(settings))
    from llmserver.observability.pg_usage import PostgresUsageStore

    return PostgresUsageStore(stores.db)


def usage_counter(keys: KeyStore, usage: UsageRecorder, rate_limits: RateLimits) -> Count:
    """Charges work that runs after its request was answered (batch lines, background
    responses) to its key: the usage records and the key's token rate limits."""

    async def count(caller: Caller, model: str, used: Usage) -> None:
        usage.record(caller.name, model, used.prompt_tokens, used.completion_tokens)
        key = keys.named(caller.name) if caller.name else None
        limits = key.rate_limits() if key is not None else None
        await rate_limits.charge(caller.name, limits, used.total_tokens)

    return count


def create_jobs(
    settings: Settings,
    store: Store,
    service: Service,
    handlers: LineHandlers,
    keys: KeyStore,
    count: Count,
) -> BatchJobs:
    """Batch jobs for one app (start its runner in the lifespan): the ``store``, the runner
    with the surfaces' line handlers, usage and rate-limit accounting (``count``), and the
    creating key looked up anew for every line (a revoked key's lines fail with 401)."""

    def lookup(snapshot: dict[str, object]) -> Caller | None:
        stored = caller_from_snapshot(dict(snapshot))
        if stored.name is None or not stored.authenticated:
            return stored
        key = keys.named(stored.name)
        return None if key is None else Caller.of_key(key)

    runner = Runner(store, service, handlers, settings, count, lookup)
    return BatchJobs(store, runner, handlers, service, settings)
