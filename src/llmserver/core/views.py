"""What the core shows of its models: read-only snapshots, and readiness with engine health."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from llmserver.core.capabilities import capabilities, context_length
from llmserver.core.manager import ModelHandle, ModelManager, ModelState

logger = logging.getLogger("llmserver.models")

#: how long ``/ready`` waits for an engine to say whether it can serve
HEALTH_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class ModelView:
    """One model as surfaces may see it (never its backend object)."""

    id: str
    backend: str
    state: ModelState
    error: str | None
    aliases: tuple[str, ...]
    roles: tuple[str, ...]
    loaded_at: float
    slots: int
    slots_in_use: int
    waiting: int
    embedding: bool
    context_length: int | None
    #: the names of what the model can do (:mod:`llmserver.core.capabilities`)
    capabilities: tuple[str, ...] = ()
    #: each upstream replica's URL (from the configuration) and whether it is in rotation
    replicas: tuple[tuple[str, bool], ...] = ()
    #: bytes the model holds (loaded) or will hold (not loaded) on each device
    memory: tuple[tuple[str, int], ...] = ()
    #: ``memory`` was measured over the model's last load (else it is the estimate)
    memory_measured: bool = False
    #: bytes by device the model's files say it takes (estimated before each load)
    memory_estimate: tuple[tuple[str, int], ...] = ()
    #: the CPU threads the loaded model computes with now (llama.cpp); None: not reported
    threads: int | None = None

    @classmethod
    def of(cls, handle: ModelHandle) -> ModelView:
        """A snapshot of ``handle`` now."""
        abilities = handle.abilities()
        replicated = abilities.replicated
        replicas = tuple(replicated.replica_states().items()) if replicated is not None else ()
        return cls(
            id=handle.id,
            backend=handle.config.backend,
            state=handle.state,
            error=handle.error,
            aliases=tuple(handle.config.aliases),
            roles=tuple(handle.roles),
            loaded_at=handle.loaded_at,
            slots=handle.limiter.slots,
            slots_in_use=handle.limiter.in_use,
            waiting=handle.limiter.waiting,
            embedding=handle.embedder() is not None,
            context_length=context_length(handle),
            capabilities=capabilities(handle).names(),
            replicas=replicas,
            memory=tuple(sorted(handle.footprint.by_device.items())),
            memory_measured=handle.measured,
            memory_estimate=tuple(sorted(handle.estimate.by_device.items())),
            threads=abilities.threads.compute_threads() if abilities.threads else None,
        )


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the server can serve every model it should, and each model's state.

    A model whose engine says it cannot serve (a dead engine, an unreachable upstream) is
    ``unhealthy`` even though it is loaded.
    """

    ready: bool
    draining: bool
    states: dict[str, str]


async def _healthy(handle: ModelHandle) -> bool:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            return bool(await handle.backend.health())
    except Exception:
        logger.warning("health check of model %s failed", handle.id, exc_info=True)
        return False


async def readiness(manager: ModelManager) -> Readiness:
    """Every model's state; loaded ones are asked for their health, all at once."""
    handles = manager.handles()
    loaded = [h for h in handles if h.state == "ready"]
    health = await asyncio.gather(*(_healthy(h) for h in loaded))
    unhealthy = {h.id for h, ok in zip(loaded, health, strict=True) if not ok}
    states = {h.id: "unhealthy" if h.id in unhealthy else h.state for h in handles}
    ready = manager.all_ready() and not unhealthy and not manager.draining
    return Readiness(ready, manager.draining, states)
