"""Generation slots per model with a bounded FIFO queue and a maximum wait; time limits.

Two priority classes share a model's slots. Interactive requests queue as before (bounded, with a
maximum wait, then 429). Background work (batch lines) waits in a queue of its own, without limit
or time-out, and gets a slot only when no interactive request waits, while more than
``reserved`` slots would stay free for interactive requests, and while fewer than
``background_max`` background generations run on the model. The class of the work is the
:data:`priority` context variable (set by the batch runner around each line), so the core's
entry points need no extra argument: like the request id, it follows the task that does the work.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Literal, TypeVar

from llmserver.errors import InferenceTimeoutError, RateLimitError

T = TypeVar("T")

BUSY_MESSAGE = "concurrent inference limit exceeded"

Priority = Literal["interactive", "background"]

#: the priority class of the work the current task does (a context variable, so tasks a line
#: starts inherit it; the one per-task "global", like the request id in observability.logs)
priority: contextvars.ContextVar[Priority] = contextvars.ContextVar(
    "llmserver_priority", default="interactive"
)


@contextmanager
def background() -> Iterator[None]:
    """Run the body's generations as background work (batch lines)."""
    token = priority.set("background")
    try:
        yield
    finally:
        priority.reset(token)


class Limiter:
    """``slots`` generations at once; up to ``max_queue`` more wait at most ``max_wait_s``.

    A freed slot goes to the oldest interactive waiter, so nobody can overtake that queue; only
    when none waits may background work take it (see the module docstring). ``reserved`` is
    kept below ``slots`` so background work can always run one at a time: a model with a
    single slot lends it to background work when no interactive request waits.
    """

    def __init__(
        self,
        slots: int,
        max_queue: int,
        max_wait_s: float | None,
        reserved: int = 1,
        background_max: int | None = None,
    ) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.reserved = max(0, min(reserved, slots - 1))
        self.background_max = background_max
        self._in_use = 0
        self._background = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._background_waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        """Slots taken right now (both classes)."""
        return self._in_use

    @property
    def background_in_use(self) -> int:
        """Slots taken by background work right now."""
        return self._background

    @property
    def waiting(self) -> int:
        """Interactive requests queued for a slot."""
        return sum(1 for w in self._waiters if not w.done())

    @property
    def background_waiting(self) -> int:
        """Background generations queued for a slot."""
        return sum(1 for w in self._background_waiters if not w.done())

    def _busy(self) -> RateLimitError:
        retry = max(1, math.ceil(self.max_wait_s or 1))
        return RateLimitError(
            BUSY_MESSAGE, code="concurrency_limit_exceeded", headers={"Retry-After": str(retry)}
        )

    def _background_may_start(self) -> bool:
        if self.waiting:
            return False
        if self.background_max is not None and self._background >= self.background_max:
            return False
        return self._in_use < self.slots - self.reserved

    async def acquire(self) -> None:
        """Take a slot, waiting in line if allowed; raise 429 when full or after the wait."""
        if self._in_use < self.slots and not self.waiting:
            self._in_use += 1
            return
        if self.waiting >= self.max_queue:
            raise self._busy()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.max_wait_s)
        except TimeoutError:
            if not self._abandon(self._waiters, waiter):
                return
            raise self._busy() from None
        except asyncio.CancelledError:
            if not self._abandon(self._waiters, waiter):
                self.release()
            raise

    async def acquire_background(self) -> None:
        """Take a slot for background work, waiting (without limit) until one may be lent."""
        if self._background_may_start() and not self.background_waiting:
            self._in_use += 1
            self._background += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._background_waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if not self._abandon(self._background_waiters, waiter):
                self.release(background=True)
            raise

    def _abandon(self, queue: deque[asyncio.Future[None]], waiter: asyncio.Future[None]) -> bool:
        """Leave the queue. False when the slot had already been handed over."""
        if waiter.done() and not waiter.cancelled():
            return False
        waiter.cancel()
        if waiter in queue:
            queue.remove(waiter)
        return True

    def release(self, background: bool = False) -> None:
        """Free a slot and hand it on: to the oldest live interactive waiter, else (if the rules
        allow) to the oldest background waiter."""
        self._in_use -= 1
        if background:
            self._background -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        while self._in_use < self.slots and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)
        while self._background_waiters and self._background_may_start():
            waiter = self._background_waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                self._background += 1
                waiter.set_result(None)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with limiter.slot():`` around one generation, in the current task's class."""
        if priority.get() == "background":
            await self.acquire_background()
            try:
                yield
            finally:
                self.release(background=True)
            return
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

    async def bound(self, source: AsyncIterator[T]) -> AsyncGenerator[T, None]:
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
