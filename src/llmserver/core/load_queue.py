"""Which waiting load goes next when loads wait for room: the swap scheduler's order.

Requests for a model that is not loaded gather behind that model's one load (its lock); the
loads themselves wait here while the resident models serve their own work. When room frees,
the load for the model with the most requests waiting goes first, so one swap serves the most
requests; a load whose oldest request has waited ``swap_max_wait_s`` goes before any other
(oldest first), so no request starves behind busier models. A request that leaves (its client
disconnected) stops counting at once, and a load nobody waits for is cancelled with the request
that ran it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Waiting:
    """One model's waiting load and requests."""

    #: when each waiting request arrived (monotonic seconds)
    requests: list[float] = field(default_factory=list)
    #: when its load began waiting for room; None while no load of it waits
    load_since: float | None = None

    def since(self) -> float:
        """When the first of its requests (or its load) began waiting."""
        times = [*self.requests, *([] if self.load_since is None else [self.load_since])]
        return min(times)


class LoadQueue:
    """The loads waiting for room and the requests behind each, by model."""

    def __init__(self, max_wait_s: float) -> None:
        self.max_wait_s = max_wait_s
        self._models: dict[str, _Waiting] = {}

    @contextmanager
    def request(self, model_id: str) -> Iterator[None]:
        """A request waits for ``model_id`` to load while this is entered."""
        waiting = self._models.setdefault(model_id, _Waiting())
        arrived = time.monotonic()
        waiting.requests.append(arrived)
        try:
            yield
        finally:
            waiting.requests.remove(arrived)
            self._forget(model_id)

    @contextmanager
    def load(self, model_id: str) -> Iterator[None]:
        """The load of ``model_id`` waits for room while this is entered."""
        waiting = self._models.setdefault(model_id, _Waiting())
        waiting.load_since = time.monotonic()
        try:
            yield
        finally:
            waiting.load_since = None
            self._forget(model_id)

    def _forget(self, model_id: str) -> None:
        waiting = self._models.get(model_id)
        if waiting is not None and not waiting.requests and waiting.load_since is None:
            del self._models[model_id]

    def waiting(self, model_id: str) -> int:
        """Requests waiting for ``model_id`` to load."""
        waiting = self._models.get(model_id)
        return 0 if waiting is None else len(waiting.requests)

    def first(self, now: float | None = None) -> str | None:
        """The model whose waiting load goes next: the oldest one overdue
        (``swap_max_wait_s``), else the one with the most requests waiting (the oldest of
        those on a tie); None when no load waits."""
        now = time.monotonic() if now is None else now
        loads = {m: w for m, w in self._models.items() if w.load_since is not None}
        if not loads:
            return None
        overdue = [(w.since(), m) for m, w in loads.items() if now - w.since() >= self.max_wait_s]
        if overdue:
            return min(overdue)[1]
        return min(loads, key=lambda m: (-len(loads[m].requests), loads[m].since()))

    def turn(self, model_id: str) -> bool:
        """True when the load of ``model_id`` may take the room that is free now."""
        return self.first() in (None, model_id)

    def overdue(self, now: float | None = None) -> bool:
        """True when some waiting load has waited ``swap_max_wait_s`` (then the resident
        models' ``swap_min_resident_s`` no longer holds them)."""
        now = time.monotonic() if now is None else now
        return any(
            now - w.since() >= self.max_wait_s
            for w in self._models.values()
            if w.load_since is not None
        )
