"""Stored responses at run time: the store, and the background runs still going.

A background response (``background: true``) runs in a task of its own, owned by the app
rather than by the request that created it; its events so far live in a :class:`LiveRun`, so
``GET /v1/responses/{id}?stream=true`` can follow it and ``/cancel`` can stop it. Once the run
ends its events are in the store and the live run is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from llmserver.core.caller import Caller
from llmserver.core.usage import Usage
from llmserver.jobs.response_store import Responses

logger = logging.getLogger("llmserver.responses")

#: seconds between two deletions of expired responses
PURGE_EVERY_S = 60

#: charges a finished background run's usage to its key (usage records, token rate limits)
Count = Callable[[Caller, str, Usage], Awaitable[None]]


class LiveRun:
    """A background response while it runs: the response object as it grows and its events
    so far, for followers."""

    def __init__(self, body: dict[str, Any]) -> None:
        #: the response object, updated in place as the run goes
        self.body = body
        self.events: list[dict[str, Any]] = []
        self.done = False
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def add(self, event: dict[str, Any]) -> None:
        """Record an event and wake the followers."""
        self.events.append(event)
        self._wake()

    def end(self) -> None:
        """No more events will come."""
        self.done = True
        self._wake()

    async def follow(self, after: int) -> AsyncIterator[dict[str, Any]]:
        """The events after sequence number ``after``, as they come, until the run ends."""
        seen = 0
        while True:
            changed = self._changed
            while seen < len(self.events):
                event = self.events[seen]
                seen += 1
                if event["sequence_number"] > after:
                    yield event
            if self.done:
                return
            await changed.wait()


@dataclass(slots=True)
class ResponseRuns:
    """The app's stored responses and its background runs."""

    store: Responses
    #: how long a stored response is kept, in seconds
    retention_s: float
    count: Count
    live: dict[str, LiveRun] = field(default_factory=dict)
    #: when expired responses were last deleted (Unix seconds)
    purged_at: int = 0

    def purge_due(self, now: int) -> bool:
        """Whether to delete expired responses now: at most once a minute, so a busy server
        does not pay a write for it on every request."""
        if now - self.purged_at < PURGE_EVERY_S:
            return False
        self.purged_at = now
        return True

    def start(self, response_id: str, run: LiveRun, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (which feeds ``run``) in the background as ``response_id``."""
        self.live[response_id] = run
        task = asyncio.create_task(work, name=f"response {response_id}")
        run.task = task

        def ended(done: asyncio.Task[None]) -> None:
            self.live.pop(response_id, None)
            if not done.cancelled() and (exc := done.exception()) is not None:
                logger.error("background response %s failed: %r", response_id, exc)

        task.add_done_callback(ended)

    async def cancel(self, response_id: str) -> bool:
        """Stop a background run and wait until it has stored its end; False when it is not
        running."""
        run = self.live.get(response_id)
        if run is None or run.task is None:
            return False
        run.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run.task
        if not run.done:  # cancelled before it ever ran: its own ending never happened
            run.body["status"] = "cancelled"
            run.end()
        return True

    async def close(self) -> None:
        """Cancel every background run (the app is stopping); each stores itself cancelled."""
        for response_id in list(self.live):
            await self.cancel(response_id)
