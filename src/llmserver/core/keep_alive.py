"""Idle-unload timers (Ollama's ``keep_alive``): a model unloads once it has been idle for the
duration its last request asked for.

Only models that load on demand get a timer: unloading one costs the next request a load, never
a 503. Other models stay as the operator configured them (they unload only when asked to), and
a ``keep_alive`` sent for them is noted in the log and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from llmserver.core.manager import ModelHandle, ModelManager

logger = logging.getLogger("llmserver.models")

#: how often a timer that has run out looks again while its model is still busy
BUSY_RECHECK_S = 0.5


@dataclass
class _Timer:
    seconds: float
    armed: float
    task: asyncio.Task[None]


class KeepAlive:
    """One idle timer per model, restarted by every use of the model."""

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager
        self._timers: dict[str, _Timer] = {}

    def set(self, handle: ModelHandle, seconds: float | None) -> bool:
        """Unload ``handle`` after ``seconds`` idle (None: never); False when the model has no
        timer because it does not load on demand."""
        self._cancel(handle.id)
        if seconds is None:
            return True
        if not handle.config.load_on_demand:
            logger.info("keep_alive for model %s ignored: it does not load on demand", handle.id)
            return False
        timer = _Timer(seconds, time.monotonic(), asyncio.create_task(self._run(handle)))
        self._timers[handle.id] = timer
        return True

    def _deadline(self, handle: ModelHandle, timer: _Timer) -> float:
        return max(timer.armed, handle.last_used) + timer.seconds

    def expires_at(self, handle: ModelHandle) -> float | None:
        """When the model unloads if nobody uses it (Unix time); None: it stays loaded."""
        timer = self._timers.get(handle.id)
        if timer is None:
            return None
        return time.time() + max(0.0, self._deadline(handle, timer) - time.monotonic())

    async def _run(self, handle: ModelHandle) -> None:
        while True:
            timer = self._timers.get(handle.id)
            if timer is None:
                return
            wait = self._deadline(handle, timer) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif handle.busy():
                await asyncio.sleep(BUSY_RECHECK_S)
            else:
                break
        self._timers.pop(handle.id, None)
        if handle.state == "ready":
            logger.info("model %s idle for its keep_alive: unloading", handle.id)
            await self._manager.unload(handle.id)

    def _cancel(self, model_id: str) -> None:
        timer = self._timers.pop(model_id, None)
        if timer is not None and timer.task is not asyncio.current_task():
            timer.task.cancel()

    async def close(self) -> None:
        """Stop every timer."""
        timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer.task
