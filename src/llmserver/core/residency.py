"""Which models may be resident together: memory budgets per device, and the choice of models
to evict so that another fits.

The model manager asks :func:`plan_room` before every load (start-up, on demand, an admin load,
Ollama's empty-prompt load). The plan evicts idle models, least recently used first, never a
pinned one and never one with requests running or queued; when even that cannot make room it
raises a 503 that names the model and the memory it needs, before anything is unloaded.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llmserver.backends.llamacpp_context import available_memory
from llmserver.config.model_configs import ModelConfig
from llmserver.config.settings import Settings
from llmserver.core.footprint import GPU0, HOST, Footprint, estimate, gib
from llmserver.errors import ServiceUnavailableError

logger = logging.getLogger("llmserver.models")


class NoRoomError(ServiceUnavailableError):
    """503: the model does not fit in the memory budget, even with every idle model evicted.

    ``waitable``: models that are busy (or loading) hold the memory it needs, so waiting for
    them to finish may make room; pinned models never will.
    """

    default_code = "insufficient_memory"
    waitable: bool = False


@dataclass(frozen=True, slots=True)
class Resident:
    """A loaded (or loading) model as the planner sees it."""

    id: str
    footprint: Footprint
    last_used: float
    #: why it may not be evicted now (``pinned``, ``busy``, ``loading``); None: it may
    kept_because: str | None


class Budgets:
    """The bytes loaded models may take on each device; None: no limit.

    A device the settings leave out gets what the machine reports minus ``memory_reserve``:
    the memory available at start-up for ``host``, a GPU's total memory (read through torch
    where it is installed) for ``cuda:N``.
    """

    def __init__(self, limits: Mapping[str, int | None], reserve: int = 0) -> None:
        self._limits: dict[str, int | None] = dict(limits)
        self._reserve = reserve

    @classmethod
    def from_settings(cls, settings: Settings) -> Budgets:
        """The configured budgets; ``host`` from the machine when not configured."""
        limits = {k: None if v is None else int(v) for k, v in settings.memory_budget.items()}
        reserve = int(settings.memory_reserve)
        budgets = cls(limits, reserve)
        if HOST not in limits:
            found = available_memory()
            budgets._limits[HOST] = None if found is None else max(0, found - reserve)
        return budgets

    def limit(self, device: str) -> int | None:
        """The budget of ``device`` (a GPU not configured is read from the machine, once)."""
        if device not in self._limits:
            total = _gpu_total(device)
            self._limits[device] = None if total is None else max(0, total - self._reserve)
            logger.info(
                "memory budget of %s: %s",
                device,
                "no limit" if total is None else gib(self._limits[device] or 0),
            )
        return self._limits[device]

    def devices(self) -> list[str]:
        """Every device with a budget known so far."""
        return list(self._limits)


def _gpu_total(device: str) -> int | None:
    """A CUDA device's total memory through torch, when torch is already importable and sees
    it; None otherwise (then the device has no limit unless one is configured)."""
    import importlib.util

    if not device.startswith("cuda") or importlib.util.find_spec("torch") is None:
        return None
    with contextlib.suppress(Exception):  # no driver, no device: no limit rather than a crash
        import torch

        if torch.cuda.is_available():
            index = int(device.partition(":")[2] or 0)
            return int(torch.cuda.get_device_properties(index).total_memory)
    return None


def used(residents: Sequence[Resident], device: str) -> int:
    """Bytes the residents hold on ``device``."""
    return sum(r.footprint.on(device) for r in residents)


def plan_room(
    model_id: str,
    need: Footprint,
    residents: Sequence[Resident],
    budgets: Budgets,
    max_loaded: int | None,
    together: frozenset[str] = frozenset(),
    apart: frozenset[str] = frozenset(),
) -> list[Resident]:
    """The residents to evict, in order, so that ``need`` fits on every device and the count
    stays within ``max_loaded``. Raises :class:`NoRoomError` when no choice of idle models does.

    ``together``: the models that share a group with the one to load; when the model is in a
    group, the models outside it go first (each set least recently used first). ``apart``: the
    models of other groups, which may not be resident beside it: those that are idle go
    whether or not their room is needed (a busy one stays until its work is done).
    """
    evictable = sorted(
        (r for r in residents if r.kept_because is None),
        key=lambda r: (bool(together) and r.id in together, r.last_used),
    )
    staying = list(residents)
    victims = [r for r in evictable if r.id in apart]
    for victim in victims:
        evictable.remove(victim)
        staying.remove(victim)

    def short() -> tuple[str | None, bool]:
        for device, bytes_ in need.by_device.items():
            limit = budgets.limit(device)
            if bytes_ and limit is not None and used(staying, device) + bytes_ > limit:
                return device, False
        return None, max_loaded is not None and len(staying) >= max_loaded

    while True:
        device, over_count = short()
        if device is None and not over_count:
            return victims
        helpful = [r for r in evictable if device is None or r.footprint.on(device) > 0]
        if not helpful:
            error = _no_room(model_id, need, device, staying, budgets, max_loaded)
            error.waitable = any(
                r.kept_because in ("busy", "loading", "recently loaded")
                and (device is None or r.footprint.on(device) > 0)
                for r in staying
            )
            raise error
        victim = helpful[0]
        evictable.remove(victim)
        staying.remove(victim)
        victims.append(victim)


def _no_room(
    model_id: str,
    need: Footprint,
    device: str | None,
    staying: Sequence[Resident],
    budgets: Budgets,
    max_loaded: int | None,
) -> NoRoomError:
    kept = ", ".join(f"{r.id} ({r.kept_because})" for r in staying)
    if device is None:
        message = (
            f"cannot load '{model_id}': max_loaded_models ({max_loaded}) reached and no loaded "
            f"model may be evicted now: {kept}"
        )
    else:
        limit = budgets.limit(device) or 0
        message = (
            f"cannot load '{model_id}': it needs {gib(need.on(device))} of {device} memory and "
            f"the {device} budget is {gib(limit)}"
        )
        held = used(staying, device)
        if held:
            message += f", {gib(held)} of it held by models that may not be evicted now: {kept}"
    return NoRoomError(message, param="model", headers={"Retry-After": "5"})


def together_in(groups: list[list[str]]) -> dict[str, frozenset[str]]:
    """For each model named in ``groups``, the other models it shares a group with."""
    together: dict[str, set[str]] = {}
    for group in groups:
        for model_id in group:
            together.setdefault(model_id, set()).update(m for m in group if m != model_id)
    return {m: frozenset(others) for m, others in together.items()}


def apart_in(groups: list[list[str]]) -> dict[str, frozenset[str]]:
    """For each model named in ``groups``, the grouped models it shares no group with (they
    may not be resident beside it). Models in no group are apart from none."""
    grouped = {m for group in groups for m in group}
    together = together_in(groups)
    return {m: frozenset(grouped - together[m] - {m}) for m in together}


class Swaps:
    """Loads that evicted other models: how many, and the seconds they took (the evicted
    models' unloading plus the new model's load)."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0

    def record(self, model_id: str, evicted: list[str], unload_s: float, load_s: float) -> None:
        """Count one swap and log its cost."""
        self.count += 1
        self.seconds += unload_s + load_s
        logger.info(
            "swap: %s unloaded in %.2f s, %s loaded in %.2f s",
            ", ".join(evicted),
            unload_s,
            model_id,
            load_s,
        )


@dataclass(frozen=True, slots=True)
class DeviceUse:
    """One device's budget and the bytes loaded models hold on it (for /v1/models, /metrics)."""

    device: str
    budget: int | None
    used: int


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """Each device's budget and use, and the swaps so far."""

    devices: list[DeviceUse]
    swaps: int
    swap_seconds: float


def budget_use(budgets: Budgets, residents: Sequence[Resident]) -> list[DeviceUse]:
    """Every known device's budget and use."""
    devices = budgets.devices()
    for resident in residents:
        devices += [d for d in resident.footprint.by_device if d not in devices]
    return [DeviceUse(d, budgets.limit(d), used(residents, d)) for d in devices]


def estimate_for(config: ModelConfig, budgets: Budgets) -> Footprint:
    """:func:`~llmserver.core.footprint.estimate` of ``config`` (vLLM's share is of the GPU
    budget, read only for vLLM models)."""
    gpu = budgets.limit(GPU0) if config.backend == "vllm" else None
    return estimate(config, gpu)
