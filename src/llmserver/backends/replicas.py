"""Replicas of one upstream model: least-outstanding choice, marking down, background probes,
and failing over to another replica."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from llmserver.errors import APIError

logger = logging.getLogger("llmserver.backends.upstream")

Probe = Callable[[str], Awaitable[bool]]
T = TypeVar("T")


class ReplicaFailed(Exception):
    """A replica could not serve; the request may go to another one."""

    def __init__(self, error: APIError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(eq=False)
class Replica:
    """One base URL serving the model."""

    url: str
    up: bool = True
    outstanding: int = 0
    error: str | None = None
    probe_task: asyncio.Task[None] | None = field(default=None, repr=False)


class ReplicaSet:
    """Picks the live replica with the fewest outstanding requests; probes down ones."""

    def __init__(self, urls: list[str], probe: Probe, interval_s: float) -> None:
        self.replicas = [Replica(url) for url in urls]
        self._probe = probe
        self._interval_s = interval_s

    def pick(self, exclude: set[Replica]) -> Replica | None:
        """The live replica with the fewest outstanding requests (config order breaks ties)."""
        live = [r for r in self.replicas if r.up and r not in exclude]
        return min(live, key=lambda r: r.outstanding) if live else None

    def mark_down(self, replica: Replica, reason: str) -> None:
        """Take a replica out of rotation and probe it until it answers again."""
        replica.error = reason
        if not replica.up:
            return
        replica.up = False
        logger.warning("upstream replica %s is down: %s", replica.url, reason)
        replica.probe_task = asyncio.create_task(self._watch(replica))

    async def _watch(self, replica: Replica) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            if await self._probe(replica.url):
                replica.up, replica.error = True, None
                logger.info("upstream replica %s is back", replica.url)
                return

    def states(self) -> dict[str, bool]:
        """Replica URL -> whether it is in rotation."""
        return {r.url: r.up for r in self.replicas}

    async def close(self) -> None:
        """Stop every background probe."""
        for replica in self.replicas:
            task, replica.probe_task = replica.probe_task, None
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def failover(
    replicas: ReplicaSet,
    request_id: str,
    stream: Callable[[Replica], AsyncIterator[T]],
    unavailable: Callable[[], APIError],
) -> AsyncIterator[T]:
    """Stream from the least busy live replica, moving on to another only before the first
    item; a replica that fails is marked down."""
    tried: set[Replica] = set()
    last: APIError | None = None
    while (replica := replicas.pick(tried)) is not None:
        tried.add(replica)
        replica.outstanding += 1
        produced = False
        try:
            async for item in stream(replica):
                produced = True
                yield item
            return
        except ReplicaFailed as exc:
            replicas.mark_down(replica, exc.error.message)
            if produced:
                raise exc.error from None
            last = exc.error
            logger.info("retrying request %s on another replica", request_id)
        finally:
            replica.outstanding -= 1
    raise last or unavailable()
