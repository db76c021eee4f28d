"""The model manager: names and aliases, loading and warm-up, per-model limiters and state."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from llmserver.backends import registry
from llmserver.backends.base import (
    Backend,
    GenerationRequest,
    ModelLoadError,
    PromptFormat,
    SamplingParams,
    Tokenizing,
    embedder,
)
from llmserver.errors import ModelNotFoundError, ModelNotReadyError
from llmserver.scheduling import Limiter
from llmserver.settings import ModelConfig, Settings
from llmserver.templating import ChatTemplate, TemplateLoadError, UnsafeTemplateError

logger = logging.getLogger("llmserver.models")

ModelState = Literal["loading", "ready", "failed", "unloaded"]
DEFAULT_MAX_QUEUE = 64


@dataclass
class ModelHandle:
    """One configured model and everything the server keeps for it."""

    config: ModelConfig
    backend: Backend
    limiter: Limiter
    state: ModelState = "loading"
    error: str | None = None
    prompt_format: PromptFormat | None = None
    template: ChatTemplate | None = None
    loaded_at: float = field(default=0.0)

    @property
    def id(self) -> str:
        """The model's id."""
        return self.config.id

    def tokenizer(self) -> Tokenizing | None:
        """The backend's tokenizer, when it has one."""
        return self.backend if isinstance(self.backend, Tokenizing) else None


class ModelManager:
    """Owns every configured model for the lifetime of the app."""

    def __init__(self, settings: Settings) -> None:
        self._handles: dict[str, ModelHandle] = {}
        self._names: dict[str, str] = {}
        for config in settings.models:
            factory = registry.get(config.backend)
            backend = factory(config)
            slots = config.max_concurrent or backend.max_parallel
            limiter = Limiter(slots, DEFAULT_MAX_QUEUE, None)
            self._handles[config.id] = ModelHandle(config, backend, limiter)
            for name in (config.id, *config.aliases):
                self._names[name] = config.id
        first = settings.models[0].id
        default = settings.default_model or first
        if default not in self._names:
            raise ValueError(f"default_model '{default}' is not a configured model or alias")
        self.default_id = self._names[default]

    def handles(self) -> list[ModelHandle]:
        """Every configured model, in config order."""
        return list(self._handles.values())

    def lookup(self, name: str | None) -> ModelHandle:
        """The model for an id or alias (the default when None); 404 if unknown."""
        model_id = self.default_id if name is None else self._names.get(name)
        if model_id is None:
            raise ModelNotFoundError(name or "")
        return self._handles[model_id]

    def resolve(self, name: str | None) -> ModelHandle:
        """Like :meth:`lookup`, but 503 unless the model is loaded and warm."""
        handle = self.lookup(name)
        if handle.state != "ready":
            reason = "model load failed" if handle.state == "failed" else f"model is {handle.state}"
            detail = f": {handle.error}" if handle.error else ""
            raise ModelNotReadyError(
                f"{reason}{detail}", param="model", headers={"Retry-After": "5"}
            )
        return handle

    def all_ready(self) -> bool:
        """True when every configured model is loaded and warm."""
        return all(h.state == "ready" for h in self._handles.values())

    async def load_all(self) -> None:
        """Load and warm every model, one after another; a failure marks only that model."""
        for handle in self._handles.values():
            await self._load(handle)

    async def _load(self, handle: ModelHandle) -> None:
        handle.state = "loading"
        started = time.perf_counter()
        try:
            await handle.backend.start()
            tokenizer = handle.tokenizer()
            if tokenizer is not None:
                handle.prompt_format = tokenizer.prompt_format()
                fmt = handle.prompt_format
                handle.template = ChatTemplate(fmt.chat_template, fmt.bos_token, fmt.eos_token)
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
        logger.info("model %s ready in %.2f s", handle.id, time.perf_counter() - started)

    def _failed(self, handle: ModelHandle, reason: str) -> None:
        handle.state = "failed"
        handle.error = reason
        logger.error("model %s failed to load: %s", handle.id, reason)

    async def _warm_up(self, handle: ModelHandle) -> None:
        """One short greedy generation, so the first user request pays no first-run cost."""
        if (embedding := embedder(handle.backend)) is not None:
            # embedding models (some serve nothing else) warm up with one embedding
            await embedding.embed(["Hello"])
            return
        prompt = "Hello"
        tokens: list[int] = []
        if handle.template is not None and (tokenizer := handle.tokenizer()) is not None:
            prompt = handle.template.render([{"role": "user", "content": "Hello"}])
            tokens = tokenizer.tokenize(prompt)
        params = SamplingParams(max_tokens=2, temperature=0.0, seed=0)
        request = GenerationRequest("warmup", prompt, tokens, params)
        async for _ in handle.backend.generate(request):
            pass

    async def close_all(self) -> None:
        """Free every model."""
        for handle in self._handles.values():
            try:
                await asyncio.shield(handle.backend.close())
            except Exception:
                logger.exception("closing model %s failed", handle.id)
            handle.state = "unloaded"
