"""The model manager: names, aliases and roles, loading and warm-up, load/unload at run time,
eviction under the memory budgets and ``max_loaded_models`` (:mod:`llmserver.core.residency`),
per-model limiters and state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace

from llmserver.backends.base import ModelLoadError
from llmserver.config.model_configs import ModelConfig
from llmserver.config.settings import Settings
from llmserver.core.footprint import (
    MEASURED_BACKENDS,
    Footprint,
    Meter,
    describe_source,
    measured,
    release_memory,
)
from llmserver.core.handle import ModelHandle as ModelHandle
from llmserver.core.handle import ModelState as ModelState
from llmserver.core.handle import build_backend, new_handle
from llmserver.core.load_queue import LoadQueue
from llmserver.core.reasoning import reasoning_format
from llmserver.core.residency import (
    Budgets,
    NoRoomError,
    Resident,
    Swaps,
    apart_in,
    estimate_for,
    plan_room,
    together_in,
)
from llmserver.core.templating import ChatTemplate, TemplateLoadError, UnsafeTemplateError
from llmserver.core.warmup import warm_up
from llmserver.errors import (
    APIError,
    InvalidRequestError,
    ModelNotFoundError,
    ShuttingDownError,
)

logger = logging.getLogger("llmserver.models")

#: how often an unload looks whether the model's running generations have finished
DRAIN_POLL_S = 0.02
#: how often a load waiting for room looks again
LOAD_WAIT_POLL_S = 0.05


class ModelManager:
    """Owns every configured model for the lifetime of the app."""

    def __init__(self, settings: Settings) -> None:
        self._handles: dict[str, ModelHandle] = {}
        self._names: dict[str, str] = {}
        self.max_loaded = settings.max_loaded_models
        # one load or eviction decision at a time, so two loads cannot both take the last place
        self._room = asyncio.Lock()
        self.budgets = Budgets.from_settings(settings)
        #: how long a load waits for busy models to become idle so that they can be evicted
        self.load_wait_s = settings.max_load_wait_s
        #: a model loaded on demand stays at least this long before it may be evicted
        self.min_resident_s = settings.swap_min_resident_s
        #: the loads waiting for room, and the requests behind each: which goes next
        self.queue = LoadQueue(settings.swap_max_wait_s)
        #: the models each model may be resident with (``groups``)
        self._together = together_in(settings.groups)
        #: the models each model may not be resident with (those of other groups)
        self._apart = apart_in(settings.groups)
        self._meter = Meter()
        #: loads that had to evict other models, and what they cost
        self.swaps = Swaps()
        #: set when the server begins to shut down: no new generations, ``/ready`` is 503
        self.draining = False
        self._settings = settings
        for config in settings.models:
            self.add(config)
        for role, target in settings.roles.items():
            if target not in self._names:
                raise ValueError(f"role '{role}' points at '{target}', which is not configured")
            self._names.setdefault(role, self._names[target])
            self._handles[self._names[target]].roles.append(role)
        first = settings.models[0].id
        default = settings.default_model or first
        if default not in self._names:
            raise ValueError(f"default_model '{default}' is not a configured model or alias")
        unknown = sorted(m for m in self._together if m not in self._names)
        if unknown:
            raise ValueError(f"groups name models that are not configured: {', '.join(unknown)}")
        self.default_id = self._names[default]

    def add(self, config: ModelConfig) -> ModelHandle:
        """Take on a model (at start-up, or one created at run time); its names must be new."""
        settings = self._settings
        taken = [n for n in (config.id, *config.aliases) if n in self._names]
        if taken:
            raise InvalidRequestError(f"model name '{taken[0]}' is already used", param="model")
        handle = new_handle(config, settings)
        # shown before the first load; estimated again then (the context may depend on the
        # memory available at that time)
        handle.estimate = handle.footprint = estimate_for(config, self.budgets)
        self._handles[config.id] = handle
        for name in (config.id, *config.aliases):
            self._names[name] = config.id
        return handle

    async def remove(self, name: str) -> None:
        """Unload a model and forget it (a model created at run time, deleted)."""
        handle = self.lookup(name)
        if handle.roles or handle.id == self.default_id:
            raise InvalidRequestError(f"model '{handle.id}' has a role or is the default")
        if any(h.config.derived_from == handle.id for h in self._handles.values()):
            raise InvalidRequestError(f"other models are derived from '{handle.id}'")
        await self.unload(handle.id)
        del self._handles[handle.id]
        for alias in (handle.id, *handle.config.aliases):
            self._names.pop(alias, None)

    def handles(self) -> list[ModelHandle]:
        """Every configured model, in config order."""
        return list(self._handles.values())

    def lookup(self, name: str | None) -> ModelHandle:
        """The model for an id, alias or role (the default when None); 404 if unknown."""
        model_id = self.default_id if name is None else self._names.get(name)
        if model_id is None:
            raise ModelNotFoundError(name or "")
        return self._handles[model_id]

    def resolve(self, name: str | None) -> ModelHandle:
        """Like :meth:`lookup`, but 503 unless the model is loaded and warm, or unloaded and
        allowed to load on demand (then :meth:`ensure_loaded` loads it)."""
        handle = self.lookup(name)
        if self.draining:
            raise ShuttingDownError()
        if handle.config.load_on_demand and handle.state in ("unloaded", "loading"):
            return handle
        handle.check_ready()
        return handle

    async def ensure_loaded(self, handle: ModelHandle) -> None:
        """Load a ``load_on_demand`` model that is not loaded; others are left as they are.

        The request counts as waiting for the model until it is loaded (or the request leaves:
        a client's disconnect cancels this and frees its place)."""
        if handle.state != "ready" and handle.config.load_on_demand:
            with contextlib.ExitStack() as waiting:
                # a variant's requests wait for its base's load too (it loads first)
                for model_id in (handle.id, handle.config.derived_from):
                    if model_id is not None:
                        waiting.enter_context(self.queue.request(model_id))
                await self.load(handle.id)

    def all_ready(self) -> bool:
        """True when no model is loading or failed (unloaded ones are as the operator wants)."""
        return all(h.state in ("ready", "unloaded") for h in self._handles.values())

    def loaded_count(self) -> int:
        """Models loaded or loading right now."""
        return sum(1 for h in self._handles.values() if h.state in ("ready", "loading"))

    def idle(self) -> bool:
        """True when no model has a generation running or waiting."""
        return all(h.limiter.in_use == 0 and h.limiter.waiting == 0 for h in self.handles())

    async def drain(self, grace_s: float) -> bool:
        """Refuse new work, then wait up to ``grace_s`` for running generations to finish.

        True when everything finished in time.
        """
        self.draining = True
        deadline = time.monotonic() + grace_s
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def load_all(self) -> None:
        """Load and warm every ``preload`` model, one after another, up to ``max_loaded_models``;
        a failure marks only that model."""
        loaded = 0
        for handle in self._handles.values():
            if not handle.config.preload:
                continue
            if self.max_loaded is not None and loaded >= self.max_loaded:
                logger.warning("model %s not preloaded: max_loaded_models reached", handle.id)
                handle.state = "unloaded"
                continue
            with contextlib.suppress(APIError):  # the handle keeps its state and reason
                await self.load(handle.id, evict=False)
            loaded += handle.state == "ready"

    async def load(self, name: str, evict: bool = True) -> ModelHandle:
        """Load a model (a no-op when it is ready), evicting the least recently used idle model
        if the cap is reached. Raises 503 with the reason when the model fails to load."""
        handle = self.lookup(name)
        async with handle.lock:
            if handle.state != "ready":
                base = await self._load_base(handle)
                if handle.state == "failed":
                    await self._close(handle)  # a failed start may hold half a model
                evicted, unload_s = await self._wait_for_room(handle, evict)
                if handle.closed:
                    handle.backend = build_backend(handle.config)
                    handle.closed = False
                if base is not None and (sharing := handle.abilities().sharing) is not None:
                    sharing.share_weights(base.backend)
                started = time.perf_counter()
                await self._load(handle)
                if evicted:
                    self.swaps.record(handle.id, evicted, unload_s, time.perf_counter() - started)
        handle.check_ready()
        return handle

    async def _wait_for_room(self, handle: ModelHandle, evict: bool) -> tuple[list[str], float]:
        """Make room for ``handle``; while busy models hold the memory it needs, wait for them
        to finish (their queued work is served first) up to ``max_load_wait_s``, then 503.
        Requests for the same model wait on its lock meanwhile: one load serves them all."""
        deadline = time.monotonic() + self.load_wait_s
        with self.queue.load(handle.id):
            while True:
                # while another waiting load goes first (more requests wait for it, or it is
                # overdue), this one may take only free room: it evicts nothing
                turn = not evict or self.queue.turn(handle.id)
                async with self._room:
                    try:
                        made = await self._make_room(handle, evict, may_evict=turn)
                    except NoRoomError as exc:
                        if not (exc.waitable and evict and time.monotonic() < deadline):
                            if handle.state == "loading":  # a preload that does not fit
                                handle.state, handle.error = "unloaded", exc.message
                            raise
                    else:
                        if made is not None:
                            handle.state = "loading"
                            return made
                if time.monotonic() >= deadline:
                    first = self.queue.first()
                    raise NoRoomError(
                        f"cannot load '{handle.id}' now: the load of '{first}' goes first and "
                        f"max_load_wait_s ({self.load_wait_s:g} s) has passed",
                        param="model",
                        headers={"Retry-After": "5"},
                    )
                await asyncio.sleep(LOAD_WAIT_POLL_S)

    async def _load_base(self, handle: ModelHandle) -> ModelHandle | None:
        """The loaded base of a derived model (loaded now if need be); None for other models."""
        base_id = handle.config.derived_from
        if base_id is None:
            return None
        try:
            return await self.load(base_id)
        except APIError as exc:
            # no room now is not a failure: the next request tries again
            handle.state = "unloaded" if isinstance(exc, NoRoomError) else "failed"
            handle.error = f"its base model '{base_id}' cannot load: {exc.message}"
            raise

    def _held(self, handle: ModelHandle) -> str | None:
        """Why a loaded model stays although idle: a variant uses its weights, or it was
        loaded less than ``swap_min_resident_s`` ago (so interleaved requests for more models
        than fit are served in turns instead of swapping on every change)."""
        if variants := self.variants(handle):
            return f"weights used by {variants[0].id}"
        if time.time() - handle.loaded_at < self.min_resident_s and not self.queue.overdue():
            return "recently loaded"
        return None

    def variants(self, handle: ModelHandle) -> list[ModelHandle]:
        """The loaded (or loading) models derived from ``handle``, which use its weights."""
        return [
            h
            for h in self._handles.values()
            if h.config.derived_from == handle.id and h.state in ("ready", "loading")
        ]

    def residents(self, but: ModelHandle | None = None) -> list[Resident]:
        """The models loaded or loading (except ``but``), as the residency planner sees them."""
        return [
            Resident(h.id, h.footprint, h.last_used, h.kept_because() or self._held(h))
            for h in self._handles.values()
            # a preload not begun yet is "loading" too, but holds nothing until its lock is taken
            if h is not but and (h.state == "ready" or (h.state == "loading" and h.lock.locked()))
        ]

    async def _make_room(
        self, handle: ModelHandle, evict: bool, may_evict: bool = True
    ) -> tuple[list[str], float] | None:
        """Evict what the memory budgets and ``max_loaded_models`` require; 503 when even
        evicting every idle model would not make room (then nothing is evicted). The models
        evicted and the seconds their unloading took; None when eviction was needed but not
        ``may_evict`` (another load's turn)."""
        handle.estimate = await asyncio.to_thread(estimate_for, handle.config, self.budgets)
        if not handle.measured:
            handle.footprint = handle.estimate
        residents = self.residents(handle)
        if not evict:  # start-up: the models listed first keep their place
            residents = [replace(r, kept_because=r.kept_because or "preloaded") for r in residents]
        together = self._together.get(handle.id, frozenset())
        apart = self._apart.get(handle.id, frozenset())
        plan = plan_room(
            handle.id, handle.footprint, residents, self.budgets, self.max_loaded, together, apart
        )
        if plan and not may_evict:
            return None
        started = time.perf_counter()
        for victim in plan:
            logger.info("evicting model %s (least recently used) for %s", victim.id, handle.id)
            await self._unload(self._handles[victim.id])
        return [v.id for v in plan], time.perf_counter() - started

    async def unload(self, name: str) -> ModelHandle:
        """Free a model at run time; its running generations finish first, new ones get 503."""
        handle = self.lookup(name)
        for variant in self.variants(handle):  # they use its weights: they go first
            async with variant.lock:
                await self._unload(variant)
        async with handle.lock:
            await self._unload(handle)
        return handle

    async def _unload(self, handle: ModelHandle) -> None:
        if handle.state == "unloaded" and handle.closed:
            return
        handle.state = "unloaded"
        handle.error = None
        # the limiter signals no "idle" event; running generations are few and short to poll
        while handle.limiter.in_use:  # noqa: ASYNC110
            await asyncio.sleep(DRAIN_POLL_S)
        await self._close(handle)
        handle.template = None
        handle.prompt_format = None
        release_memory()
        logger.info("model %s unloaded", handle.id)

    async def _close(self, handle: ModelHandle) -> None:
        try:
            await asyncio.shield(handle.backend.close())
        except Exception:
            logger.exception("closing model %s failed", handle.id)
        handle.closed = True

    async def _load(self, handle: ModelHandle) -> None:
        handle.state = "loading"
        handle.error = None
        logger.info("loading model %s: %s", handle.id, describe_source(handle.config))
        started = time.perf_counter()
        metering = self._meter.start()
        try:
            await handle.backend.start()
            tokenizer = handle.tokenizer()
            if tokenizer is not None:
                handle.prompt_format = tokenizer.prompt_format()
                fmt = handle.prompt_format
                source = handle.config.chat_template or fmt.chat_template  # config wins
                handle.template = ChatTemplate(source, fmt.bos_token, fmt.eos_token)
                if handle.template.fallback:
                    logger.warning(
                        "model %s has no chat template: using ChatML; set chat_template in "
                        "its config if the model expects another format",
                        handle.id,
                    )
            if (thought := reasoning_format(handle)) is not None:
                logger.info("model %s thinks: %s", handle.id, thought.describe())
            await warm_up(handle)
        except (ModelLoadError, TemplateLoadError, UnsafeTemplateError) as exc:
            self._failed(handle, str(exc))
            return
        except Exception as exc:
            logger.exception("model %s failed to load", handle.id)
            self._failed(handle, f"{type(exc).__name__}: {exc}")
            return
        finally:
            growth = self._meter.finish(metering)
        memory = handle.abilities().memory
        reported = memory.loaded_memory() if memory is not None and growth is not None else None
        self._measured(handle, Footprint(reported) if reported else growth)
        handle.state = "ready"
        handle.loaded_at = time.time()
        handle.touch()
        logger.info("model %s ready in %.2f s", handle.id, time.perf_counter() - started)

    def _measured(self, handle: ModelHandle, taken: Footprint | int | None) -> None:
        """Keep what the load took (as the engine reports it, else the process's memory
        growth), for the budgets and the next load of this model. A load that overlapped
        another is not measured (``growth`` None): llama.cpp's reports and the growth would
        mix the two."""
        if taken is None or handle.config.backend not in MEASURED_BACKENDS:
            return
        estimated = handle.estimate
        now = taken if isinstance(taken, Footprint) else measured(estimated, taken)
        handle.footprint, handle.measured = now, True
        logger.info(
            "model %s takes %s (estimated %s)",
            handle.id,
            handle.footprint.describe(),
            estimated.describe(),
        )

    def _failed(self, handle: ModelHandle, reason: str) -> None:
        handle.state = "failed"
        handle.error = reason
        logger.error("model %s failed to load: %s", handle.id, reason)

    async def close_all(self) -> None:
        """Free every model."""
        # derived models first: their contexts use their bases' weights
        for handle in sorted(self._handles.values(), key=lambda h: h.config.derived_from is None):
            await self._close(handle)
            handle.state = "unloaded"
