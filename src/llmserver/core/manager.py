"""The model manager: names, aliases and roles, loading and warm-up, load/unload at run time,
eviction under ``max_loaded_models``, per-model limiters and state."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from llmserver.backends.abilities import Abilities, Embedding, Generating, Tokenizing
from llmserver.backends.base import (
    Backend,
    BackendFactory,
    GenerationRequest,
    ModelLoadError,
    PromptFormat,
    SamplingParams,
)
from llmserver.config import registry
from llmserver.config.model_configs import ModelConfig
from llmserver.config.settings import Settings
from llmserver.core.reasoning import reasoning_format
from llmserver.core.scheduling import Limiter
from llmserver.core.templating import ChatTemplate, TemplateLoadError, UnsafeTemplateError
from llmserver.errors import (
    APIError,
    InvalidRequestError,
    ModelLoadFailedError,
    ModelNotFoundError,
    ModelNotReadyError,
    ServiceUnavailableError,
    ShuttingDownError,
)

logger = logging.getLogger("llmserver.models")
T = TypeVar("T")

#: scorers that run here and are warmed up with one pair
LOCAL_RERANKERS = ("cross-encoder", "rank-pooling")
ModelState = Literal["loading", "ready", "failed", "unloaded"]
#: how often an unload looks whether the model's running generations have finished
DRAIN_POLL_S = 0.02


@dataclass
class ModelHandle:
    """One configured model and everything the server keeps for it."""

    config: ModelConfig
    backend: Backend
    limiter: Limiter
    timeout_s: float = 120.0
    state: ModelState = "loading"
    error: str | None = None
    prompt_format: PromptFormat | None = None
    template: ChatTemplate | None = None
    loaded_at: float = field(default=0.0)
    #: monotonic time of the last request that took a slot (least recently used goes first)
    last_used: float = field(default=0.0)
    #: the backend was closed; loading again builds a fresh one
    closed: bool = False
    roles: list[str] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: (backend, its abilities), found once per backend object
    _abilities: tuple[Backend, Abilities] | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        """The model's id."""
        return self.config.id

    def busy(self) -> bool:
        """True while a generation holds or waits for one of its slots."""
        return self.limiter.in_use > 0 or self.limiter.waiting > 0

    def touch(self) -> None:
        """Mark the model as just used."""
        self.last_used = time.monotonic()

    def check_ready(self) -> None:
        """Raise 503 (with the failure reason, if any) unless the model is loaded and warm."""
        if self.state == "ready":
            return
        failed = self.state == "failed"
        reason = "model load failed" if failed else f"model is {self.state}"
        detail = f": {self.error}" if self.error else ""
        error = ModelLoadFailedError if failed else ModelNotReadyError
        raise error(f"{reason}{detail}", param="model", headers={"Retry-After": "5"})

    def abilities(self) -> Abilities:
        """What the backend can do besides start, health and close."""
        backend = self.backend
        if self._abilities is None or self._abilities[0] is not backend:
            self._abilities = (backend, Abilities.of(backend))
        return self._abilities[1]

    def tokenizer(self) -> Tokenizing | None:
        """The backend's tokenizer, when it has one."""
        return self.abilities().tokenizing

    def embedder(self) -> Embedding | None:
        """The backend, when its model serves embeddings."""
        return self.abilities().embedder()

    def generator(self) -> Generating:
        """The backend, when its model generates text; else 400 (an embedding model)."""
        generator = self.abilities().generator()
        if generator is not None:
            return generator
        config = self.config
        if getattr(config, "rerank", False) is True or getattr(config, "task", None) == "rerank":
            raise InvalidRequestError(
                f"model '{self.id}' is a reranker; use /v1/rerank", param="model"
            )
        if self.abilities().embedding is not None:  # loaded or not: the message is the same
            raise InvalidRequestError(
                f"model '{self.id}' is an embedding model; use /v1/embeddings", param="model"
            )
        raise InvalidRequestError(f"model '{self.id}' does not generate text", param="model")


class ModelManager:
    """Owns every configured model for the lifetime of the app."""

    def __init__(self, settings: Settings) -> None:
        self._handles: dict[str, ModelHandle] = {}
        self._names: dict[str, str] = {}
        self.max_loaded = settings.max_loaded_models
        # one load or eviction decision at a time, so two loads cannot both take the last place
        self._room = asyncio.Lock()
        #: set when the server begins to shut down: no new generations, ``/ready`` is 503
        self.draining = False
        for config in settings.models:
            backend = _build(config)
            limiter = Limiter(
                _slots(config, settings, backend.max_parallel),
                _pick(config.max_queue, settings.max_queue),
                _pick(config.max_queue_wait_s, settings.max_queue_wait_s),
                reserved=settings.batch_reserved_slots,
                background_max=settings.batch_max_concurrency,
            )
            timeout = _pick(config.inference_timeout_s, settings.inference_timeout_s)
            state: ModelState = "loading" if config.preload else "unloaded"
            self._handles[config.id] = ModelHandle(
                config, backend, limiter, timeout_s=timeout, state=state
            )
            for name in (config.id, *config.aliases):
                self._names[name] = config.id
        for role, target in settings.roles.items():
            if target not in self._names:
                raise ValueError(f"role '{role}' points at '{target}', which is not configured")
            self._names.setdefault(role, self._names[target])
            self._handles[self._names[target]].roles.append(role)
        first = settings.models[0].id
        default = settings.default_model or first
        if default not in self._names:
            raise ValueError(f"default_model '{default}' is not a configured model or alias")
        self.default_id = self._names[default]

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
        """Load a ``load_on_demand`` model that is not loaded; others are left as they are."""
        if handle.state != "ready" and handle.config.load_on_demand:
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
                await self.load(handle.id)
            loaded += handle.state == "ready"

    async def load(self, name: str) -> ModelHandle:
        """Load a model (a no-op when it is ready), evicting the least recently used idle model
        if the cap is reached. Raises 503 with the reason when the model fails to load."""
        handle = self.lookup(name)
        async with handle.lock:
            if handle.state != "ready":
                if handle.state == "failed":
                    await self._close(handle)  # a failed start may hold half a model
                async with self._room:
                    await self._make_room(handle)
                    handle.state = "loading"
                if handle.closed:
                    handle.backend = _build(handle.config)
                    handle.closed = False
                await self._load(handle)
        handle.check_ready()
        return handle

    async def _make_room(self, handle: ModelHandle) -> None:
        if self.max_loaded is None:
            return
        others = [h for h in self._handles.values() if h is not handle]
        while sum(1 for h in others if h.state in ("ready", "loading")) >= self.max_loaded:
            idle = [h for h in others if h.state == "ready" and not h.busy()]
            if not idle:
                raise ServiceUnavailableError(
                    f"cannot load '{handle.id}': max_loaded_models ({self.max_loaded}) reached "
                    "and every loaded model is busy",
                    headers={"Retry-After": "5"},
                )
            victim = min(idle, key=lambda h: h.last_used)
            logger.info("evicting model %s (least recently used) for %s", victim.id, handle.id)
            await self._unload(victim)

    async def unload(self, name: str) -> ModelHandle:
        """Free a model at run time; its running generations finish first, new ones get 503."""
        handle = self.lookup(name)
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
        _release_memory()
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
            await self._warm_up(handle)
        except (ModelLoadError, TemplateLoadError, UnsafeTemplateError) as exc:
            self._failed(handle, str(exc))
            return
        except Exception as exc:
            logger.exception("model %s failed to load", handle.id)
            self._failed(handle, f"{type(exc).__name__}: {exc}")
            return
        handle.state = "ready"
        handle.loaded_at = time.time()
        handle.touch()
        logger.info("model %s ready in %.2f s", handle.id, time.perf_counter() - started)

    def _failed(self, handle: ModelHandle, reason: str) -> None:
        handle.state = "failed"
        handle.error = reason
        logger.error("model %s failed to load: %s", handle.id, reason)

    async def _warm_up(self, handle: ModelHandle) -> None:
        """One short greedy generation, one embedding for embedding models or one scored pair
        for rerankers, so the first user request pays no first-run cost.

        Engines without a local tokenizer (upstream) are remote and already warm: skipped.
        """
        scorer = handle.abilities().scorer()
        spec = scorer.scoring_spec() if scorer is not None else None
        if scorer is not None and spec is not None and spec.kind in LOCAL_RERANKERS:
            await scorer.score([("Hello", "Hello")], truncate=True)
            return
        if (embedding := handle.embedder()) is not None:
            await embedding.embed(["Hello"])
            return
        if handle.tokenizer() is None:
            return
        prompt = "Hello"
        tokens: list[int] = []
        if handle.template is not None and (tokenizer := handle.tokenizer()) is not None:
            prompt = handle.template.render([{"role": "user", "content": "Hello"}])
            tokens = tokenizer.tokenize(prompt)
        params = SamplingParams(max_tokens=2, temperature=0.0, seed=0)
        request = GenerationRequest("warmup", prompt, tokens, params)
        async for _ in handle.generator().generate(request):
            pass

    async def close_all(self) -> None:
        """Free every model."""
        for handle in self._handles.values():
            await self._close(handle)
            handle.state = "unloaded"


def _build(config: ModelConfig) -> Backend:
    """A fresh backend for ``config``, from the plugin registered under its backend name."""
    factory: BackendFactory = registry.load(config.backend)
    return factory(config)


def describe_source(config: ModelConfig) -> str:
    """Backend, file or URL and size of a model, for the line logged before it loads."""
    parts = [f"backend {config.backend}"]
    source = getattr(config, "path", None) or getattr(config, "url", None)
    if isinstance(source, list):
        parts.append(", ".join(source))
    elif source is not None:
        parts.append(str(source))
        size = _size_on_disk(Path(str(source)))
        if size is not None:
            parts.append(f"{size / 1e6:.1f} MB")
    return ", ".join(parts)


def _size_on_disk(path: Path) -> int | None:
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        pass
    return None


def _release_memory() -> None:
    """Collect cycles and hand freed heap pages back to the OS, so an unload shows in RSS."""
    gc.collect()
    # not glibc: the memory is still free for reuse, just not returned to the OS
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _pick(value: T | None, default: T) -> T:
    return default if value is None else value


def _slots(config: ModelConfig, settings: Settings, parallel: int) -> int:
    """A model's own ``max_concurrent`` as given; else the global default, but never more than
    the backend can truly run at once (extra slots would only queue inside the engine, where a
    cancelled request can no longer be taken back)."""
    if config.max_concurrent is not None:
        return config.max_concurrent
    if settings.max_concurrent_inference is None:
        return parallel
    return min(settings.max_concurrent_inference, parallel)
