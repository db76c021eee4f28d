"""Generation slots per model with a bounded FIFO queue and a maximum wait; time limits."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from llmserver.errors import InferenceTimeoutError, RateLimitError

T = TypeVar("T")

BUSY_MESSAGE = "concurrent inference limit exceeded"


class Limiter:
    """``slots`` generations at once; up to ``max_queue`` more wait at most ``max_wait_s``.

    A freed slot is handed straight to the oldest waiter, so nobody can overtake the queue.
    """

    def __init__(self, slots: int, max_queue: int, max_wait_s: float | None) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        """Slots taken right now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Requests queued for a slot."""
        return sum(1 for w in self._waiters if not w.done())

    def _busy(self) -> RateLimitError:
        retry = max(1, math.ceil(self.max_wait_s or 1))
        return RateLimitError(
            BUSY_MESSAGE, code="concurrency_limit_exceeded", headers={"Retry-After": str(retry)}
        )

    async def acquire(self) -> None:
        """Take a slot, waiting in line if allowed; raise 429 when full or after the wait."""
        if self._in_use < self.slots and not self._waiters:
            self._in_use += 1
            return
        if self.waiting >= self.max_queue:
            raise self._busy()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.max_wait_s)
        except TimeoutError:
            if not self._abandon(waiter):
                return
            raise self._busy() from None
        except asyncio.CancelledError:
            if not self._abandon(waiter):
                self.release()
            raise

    def _abandon(self, waiter: asyncio.Future[None]) -> bool:
        """Leave the queue. False when the slot had already been handed over."""
        if waiter.done():
            return False
        waiter.cancel()
        self._waiters.remove(waiter)
        return True

    def release(self) -> None:
        """Give the slot to the oldest live waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_use -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with limiter.slot():`` around one generation."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()


class Deadline:
    """A time limit for one API call's generations, started when its slot is taken."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._at = asyncio.get_running_loop().time() + timeout_s

    async def bound(self, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """Relay ``source``; past the deadline, cancel it and raise :class:`InferenceTimeoutError`.

        The timeout is entered and left around each single ``anext`` (never across a ``yield``),
        so it always lives in one task whichever task consumes this iterator, and cancelling the
        pending ``anext`` is what stops the backend (its worker sees the cancellation).
        """
        try:
            while True:
                scope = asyncio.timeout_at(self._at)
                try:
                    async with scope:
                        item = await anext(source)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if scope.expired():
                        raise InferenceTimeoutError(self.timeout_s) from None
                    raise
                yield item
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
