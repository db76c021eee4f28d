"""One configured model and everything the server keeps for it (the model manager's record)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from llmserver.backends.abilities import Abilities, Embedding, Generating, Tokenizing
from llmserver.backends.base import Backend, BackendFactory, PromptFormat
from llmserver.config import registry
from llmserver.config.model_configs import ModelConfig
from llmserver.config.settings import Settings
from llmserver.core.footprint import Footprint
from llmserver.core.scheduling import Limiter
from llmserver.core.templating import ChatTemplate
from llmserver.errors import InvalidRequestError, ModelLoadFailedError, ModelNotReadyError

ModelState = Literal["loading", "ready", "failed", "unloaded"]
T = TypeVar("T")


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
    #: memory the model holds once loaded: estimated before its first load, then measured
    footprint: Footprint = field(default_factory=Footprint)
    #: what the model's files say it will take (estimated before each load)
    estimate: Footprint = field(default_factory=Footprint)
    #: ``footprint`` was measured over a load (and is what the next load reserves)
    measured: bool = False
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

    def kept_because(self) -> str | None:
        """Why the model may not be evicted now; None when it may."""
        if self.config.pinned:
            return "pinned"
        if self.state == "loading":
            return "loading"
        return "busy" if self.busy() else None

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


def new_handle(config: ModelConfig, settings: Settings) -> ModelHandle:
    """A handle for ``config`` with a fresh backend and its limiter (state: ``loading`` for a
    preload, else ``unloaded``)."""
    backend = build_backend(config)
    limiter = Limiter(
        _slots(config, settings, backend.max_parallel),
        _pick(config.max_queue, settings.max_queue),
        _pick(config.max_queue_wait_s, settings.max_queue_wait_s),
        reserved=settings.batch_reserved_slots,
        background_max=settings.batch_max_concurrency,
    )
    timeout = _pick(config.inference_timeout_s, settings.inference_timeout_s)
    state: ModelState = "loading" if config.preload else "unloaded"
    return ModelHandle(config, backend, limiter, timeout_s=timeout, state=state)


def build_backend(config: ModelConfig) -> Backend:
    """A fresh backend for ``config``, from the plugin registered under its backend name."""
    factory: BackendFactory = registry.load(config.backend)
    return factory(config)


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
