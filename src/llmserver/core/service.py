"""The one policy path: every kind of work, from every surface, reaches a model through here.

Each entry point resolves the model (ids, aliases, roles), authorises it for the caller (403),
masks the input where the model, the key or the surface asks for it, attaches output masking,
and hands back a generation that knows its own number of choices. Surfaces translate wire
requests into :mod:`llmserver.core.requests` types and never reach a backend themselves.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from llmserver.backends.base import (
    GenerationRequest,
    JsonConstraint,
    SamplingParams,
)
from llmserver.config.model_configs import SamplingDefaults, prompt_format_string
from llmserver.config.settings import Settings
from llmserver.core.caller import Caller
from llmserver.core.embeddings import EmbedResult, embed
from llmserver.core.generation import Event, Generation
from llmserver.core.keep_alive import KeepAlive
from llmserver.core.manager import ModelHandle, ModelManager
from llmserver.core.model_info import ModelDetails, ModelInfo
from llmserver.core.requests import ChatRequest, EmbedRequest, Message, Sampling, TextRequest
from llmserver.core.response_cache import ResponseCache
from llmserver.core.tools import plan as tools
from llmserver.core.views import ModelView, Readiness, readiness
from llmserver.errors import (
    ContextLengthError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
)
from llmserver.privacy import PIIMasker
from llmserver.security import pii

logger = logging.getLogger("llmserver.service")
T = TypeVar("T")


def _pick(value: T | None, default: T) -> T:
    return default if value is None else value


def sampling_params(
    sampling: Sampling, defaults: SamplingDefaults, max_tokens: int, seed: int | None
) -> SamplingParams:
    """Request values over the model's defaults."""
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=_pick(sampling.temperature, defaults.temperature),
        top_p=_pick(sampling.top_p, defaults.top_p),
        top_k=_pick(sampling.top_k, defaults.top_k),
        min_p=_pick(sampling.min_p, defaults.min_p),
        repeat_penalty=_pick(sampling.repeat_penalty, defaults.repeat_penalty),
        presence_penalty=_pick(sampling.presence_penalty, 0.0),
        frequency_penalty=_pick(sampling.frequency_penalty, 0.0),
        seed=seed,
        stop=sampling.stop,
        ignore_eos=sampling.ignore_eos,
        logprobs=sampling.logprobs,
        special_text=sampling.special_text,
    )


def _explicit_extras(defaults: SamplingDefaults) -> SamplingDefaults:
    """Defaults whose non-OpenAI extras are neutral unless the config sets them, so an upstream
    engine is not sent ``top_k``/``min_p``/``repeat_penalty`` that nobody asked for."""
    neutral = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
    keep = {k: v for k, v in neutral.items() if k not in defaults.model_fields_set}
    return defaults.model_copy(update=keep)


def _choices(
    sampling: Sampling,
    n: int,
    prompt: str,
    tokens: Sequence[int],
    defaults: SamplingDefaults,
    max_tokens: int,
    constraint: JsonConstraint | None,
    messages: list[dict[str, Any]] | None,
    upstream_tools: tuple[list[dict[str, Any]], Any] = ([], None),
) -> list[GenerationRequest]:
    """One generation per choice (``n``); choice ``i`` samples with ``seed + i``."""
    out = []
    for i in range(n):
        seed = None if sampling.seed is None else sampling.seed + i
        params = sampling_params(sampling, defaults, max_tokens, seed)
        out.append(
            GenerationRequest(
                uuid.uuid4().hex[:12],
                prompt,
                tokens,
                params,
                constraint,
                messages,
                *upstream_tools,
            )
        )
    return out


class Service:
    """Chat, text and embedding work on the right model, with the caller's permissions."""

    def __init__(self, manager: ModelManager, settings: Settings, masker: PIIMasker) -> None:
        self._manager = manager
        self.settings = settings
        self._masker = masker
        self._info = ModelInfo()
        #: idle-unload timers (Ollama's ``keep_alive``)
        self.keep_alive = KeepAlive(manager)
        self._response_caches: dict[str, ResponseCache[tuple[Event, ...]]] = {}

    # -- policy ----------------------------------------------------------------------------------

    def authorise(self, caller: Caller, name: str | None) -> ModelHandle:
        """The model for ``name`` (404 if unknown), if the caller may use it (403)."""
        handle = self._manager.lookup(name)
        if not caller.may_use([handle.id, *handle.config.aliases]):
            raise PermissionDeniedError(
                f"This API key may not use the model '{handle.id}'.",
                param="model",
                code="model_not_allowed",
            )
        return handle

    def _masks(self, caller: Caller, handle: ModelHandle, asked: bool) -> bool:
        return asked or handle.config.mask_pii or caller.mask_pii

    def _chat_messages(
        self, caller: Caller, handle: ModelHandle, req: ChatRequest
    ) -> list[Message]:
        """The messages as the model gets them: masked where the model, key or surface asks."""
        messages = list(req.messages)
        if self._masks(caller, handle, req.mask_input):
            messages = [dataclasses.replace(m, content=self.mask(m.content)) for m in messages]
        return messages

    def mask(self, text: str) -> str:
        """``text`` with personal data masked (a 500 when masking fails: never the raw text)."""
        return pii.mask(self._masker, text)

    def excerpt(self, text: str) -> str:
        """``text`` masked and cut short, fit for a log line."""
        return self._masker.excerpt(text)

    def _log_text(self, text: str) -> None:
        """Request text only at DEBUG, masked and cut short (never at INFO)."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("request text: %s", self._masker.excerpt(text))

    def _ready(
        self, caller: Caller, name: str | None, n: int, sampling: Sampling | None = None
    ) -> ModelHandle:
        handle = self.authorise(caller, name)
        if n > self.settings.max_n:
            raise InvalidRequestError(f"n must be at most {self.settings.max_n}", param="n")
        handle = self._manager.resolve(handle.id)
        logprobs = sampling is not None and sampling.logprobs is not None
        if logprobs and not handle.abilities().logprobs:
            raise InvalidRequestError(
                f"the {handle.config.backend} backend of model '{handle.id}' cannot report "
                "logprobs",
                param="logprobs",
                code="unsupported_parameter",
            )
        handle.generator()  # 400 for a model that does not generate (an embedding model)
        return handle

    def _generation(
        self,
        caller: Caller,
        handle: ModelHandle,
        build: Callable[[], list[GenerationRequest]],
        prefix: str,
        n_choices: int,
    ) -> Generation:
        async def ensure_loaded() -> None:
            await self._manager.ensure_loaded(handle)

        gen_id = f"{prefix}-{uuid.uuid4().hex}"
        gen = Generation(handle, build, gen_id, n_choices, ensure_loaded=ensure_loaded)
        if self.settings.mask_output:
            gen.output = pii.OutputMasker(self._masker)
        if (cached := handle.config.response_cache) is not None:
            if (cache := self._response_caches.get(handle.id)) is None:
                cache = ResponseCache(cached.max_entries, cached.ttl_s)
                self._response_caches[handle.id] = cache
            gen.cache, gen.cache_scope = cache, None if cached.share_across_keys else caller.name
        return gen

    def _prompt_format(self, handle: ModelHandle) -> str | None:
        """The configured ``chat_prompt_format`` of a model (else the server's) as a format
        string with ``{prompt}``; None: the model's chat template."""
        setting = handle.config.chat_prompt_format or self.settings.chat_prompt_format
        return prompt_format_string(setting)

    # -- entry points ----------------------------------------------------------------------------

    def chat(self, caller: Caller, req: ChatRequest) -> Generation:
        """A chat reply: the prompt is the model's chat template applied to the messages.

        A model without a tokenizer (upstream) gets the messages themselves.
        """
        handle = self._ready(caller, req.model, req.n, req.sampling)
        tools.check(req, self.settings.max_tools, self.settings.max_tool_schema_bytes)
        messages = self._chat_messages(caller, handle, req)
        if messages:
            self._log_text(messages[-1].content)
        fmt = self._prompt_format(handle) if req.use_prompt_format else None
        tool_plan: tools.ToolPlan | None = None

        def build() -> list[GenerationRequest]:
            nonlocal tool_plan
            if fmt is not None:
                # the format is the whole prompt: a plain continuation, no chat template
                prompt = fmt.replace("{prompt}", messages[-1].content if messages else "")
                if handle.tokenizer() is None:
                    s, n, c = req.sampling, req.n, req.constraint
                    return self._passthrough(handle, s, n, [prompt], None, c)
                return self._requests(handle, req.sampling, req.n, [prompt], req.constraint)
            if handle.tokenizer() is None:
                wire = tools.wire_messages(messages)
                relay = ([tools.wire_tool(t) for t in req.tools], tools.wire_tool_choice(req))
                return self._passthrough(
                    handle, req.sampling, req.n, [""], wire, req.constraint, relay
                )
            assert handle.template is not None
            template = handle.template
            tool_plan = tools.ToolPlan.of(req, template.source, template.takes_tools)
            prompt = template.render(
                tool_plan.messages(messages),
                tools=tool_plan.tools(),
                documents=req.documents,
                kwargs=req.template_kwargs,
            )
            constraint = req.constraint or tool_plan.constraint()
            sampling = req.sampling
            if tool_plan.active and tool_plan.native:
                # native tool markup is often made of special tokens: let them through as text
                sampling = dataclasses.replace(sampling, special_text=True)
            return self._requests(handle, sampling, req.n, [prompt], constraint)

        gen = self._generation(caller, handle, build, "chatcmpl", req.n)
        gen.inputs = [m.content for m in messages]
        if req.tools and req.tool_choice.mode != "none":
            gen.tool_parser = lambda: tool_plan.parser() if tool_plan is not None else None
        return gen

    async def count_tokens(self, caller: Caller, req: ChatRequest) -> int:
        """How many tokens :meth:`chat` would give the model for ``req``: the chat template
        applied to the messages and tools (masked where a chat would mask them), counted by the
        model's own tokenizer. Authorised like a chat; a model loaded on demand is loaded first.

        An upstream model tokenizes on the far side, so it cannot count here (a 400).
        """
        handle = self._ready(caller, req.model, 1)
        tools.check(req, self.settings.max_tools, self.settings.max_tool_schema_bytes)
        messages = self._chat_messages(caller, handle, req)
        await self._manager.ensure_loaded(handle)
        handle.check_ready()
        tokenizer = handle.tokenizer()
        if tokenizer is None or handle.template is None:
            raise InvalidRequestError(
                f"model '{handle.id}' is served upstream, so this server cannot count its tokens",
                param="model",
                code="token_counting_unsupported",
            )
        # rendered as a chat renders it: tools, calls and tool results count too
        plan = tools.ToolPlan.of(req, handle.template.source, handle.template.takes_tools)
        prompt = handle.template.render(
            plan.messages(messages),
            tools=plan.tools(),
            documents=req.documents,
            kwargs=req.template_kwargs,
        )
        return len(tokenizer.tokenize(prompt))

    def text(self, caller: Caller, req: TextRequest) -> Generation:
        """A plain continuation of each prompt."""
        if len(req.prompts) > self.settings.max_prompts:
            raise InvalidRequestError(
                f"prompt may hold at most {self.settings.max_prompts} prompts",
                param="prompt",
                code="too_many_prompts",
            )
        handle = self._ready(caller, req.model, req.n, req.sampling)
        prompts = list(req.prompts)
        if self._masks(caller, handle, req.mask_input):
            prompts = [self.mask(p) for p in prompts]
        self._log_text(" | ".join(prompts))

        def build() -> list[GenerationRequest]:
            if handle.tokenizer() is None:
                return self._passthrough(handle, req.sampling, req.n, prompts, None, req.constraint)
            return self._requests(handle, req.sampling, req.n, prompts, req.constraint)

        gen = self._generation(caller, handle, build, "cmpl", len(prompts) * req.n)
        gen.inputs = prompts
        return gen

    async def embed(self, caller: Caller, req: EmbedRequest) -> EmbedResult:
        """Vectors for every input, on a model that serves embeddings."""
        handle = self.authorise(caller, req.model)
        handle = self._manager.resolve(handle.id)
        inputs = req.inputs
        if self._masks(caller, handle, req.mask_input) and inputs and isinstance(inputs[0], str):
            inputs = [self.mask(text) for text in inputs]  # type: ignore[arg-type]
        return await embed(handle, inputs, req.dimensions)

    # -- models ----------------------------------------------------------------------------------

    def models(self, caller: Caller) -> list[ModelView]:
        """Every model the caller may use, in config order."""
        return [
            ModelView.of(h)
            for h in self._manager.handles()
            if caller.may_use([h.id, *h.config.aliases])
        ]

    def model(self, caller: Caller, name: str) -> ModelView:
        """One model by id, alias or role; a model hidden from the caller is a 404."""
        try:
            return ModelView.of(self.authorise(caller, name))
        except PermissionDeniedError:
            raise ModelNotFoundError(name) from None

    async def load(self, caller: Caller, name: str) -> ModelView:
        """Load a model now (admin)."""
        caller.check_admin()
        return ModelView.of(await self._manager.load(name))

    async def unload(self, caller: Caller, name: str) -> ModelView:
        """Free a model once its running requests end (admin)."""
        caller.check_admin()
        return ModelView.of(await self._manager.unload(name))

    async def details(self, caller: Caller, name: str) -> ModelDetails:
        """What the model's file says about it (architecture, size, digest...); 404 when
        hidden from the caller."""
        view = self.model(caller, name)
        handle = self._manager.lookup(view.id)
        template = handle.prompt_format.chat_template if handle.prompt_format else None
        return await self._info.details(handle.config, view, template)

    def keep_loaded(self, caller: Caller, name: str, seconds: float | None) -> None:
        """Unload the model after ``seconds`` idle (None: never); see :class:`KeepAlive`."""
        self.keep_alive.set(self.authorise(caller, name), seconds)

    def expires_at(self, name: str) -> float | None:
        """When the model's idle timer unloads it (Unix time); None: never."""
        return self.keep_alive.expires_at(self._manager.lookup(name))

    async def readiness(self) -> Readiness:
        """Each model's state, with engines asked whether they can serve."""
        return await readiness(self._manager)

    async def load_all(self) -> None:
        """Load and warm every ``preload`` model (at start-up)."""
        await self._manager.load_all()

    async def drain(self, grace_s: float) -> bool:
        """Refuse new work and wait up to ``grace_s`` for running work; True if it all ended."""
        return await self._manager.drain(grace_s)

    async def close(self) -> None:
        """Stop the idle timers and free every model."""
        await self.keep_alive.close()
        await self._manager.close_all()

    @property
    def default_model(self) -> str:
        """The id requests without a model go to."""
        return self._manager.default_id

    # -- prompts ---------------------------------------------------------------------------------

    def _passthrough(
        self,
        handle: ModelHandle,
        sampling: Sampling,
        n: int,
        prompts: list[str],
        messages: list[dict[str, Any]] | None,
        constraint: JsonConstraint | None,
        relay: tuple[list[dict[str, Any]], Any] = ([], None),
    ) -> list[GenerationRequest]:
        """Requests for an engine that tokenizes and counts itself: the context check is its.

        ``relay`` is the tools and tool choice, passed on to the engine unchanged.
        """
        limit = sampling.max_tokens or handle.config.defaults.max_tokens or 0
        defaults = _explicit_extras(handle.config.defaults)
        return [
            choice
            for prompt in prompts
            for choice in _choices(
                sampling, n, prompt, (), defaults, limit, constraint, messages, relay
            )
        ]

    def _requests(
        self,
        handle: ModelHandle,
        sampling: Sampling,
        n: int,
        prompts: list[str],
        constraint: JsonConstraint | None,
    ) -> list[GenerationRequest]:
        tokenizer = handle.tokenizer()
        assert tokenizer is not None
        assert handle.prompt_format is not None
        context = handle.prompt_format.context_length
        if sampling.context_limit is not None:
            context = min(context, sampling.context_limit)
        out = []
        for prompt in prompts:
            tokens = tokenizer.tokenize(prompt)
            if not tokens:
                raise InvalidRequestError("prompt must not be empty", param="prompt")
            limit = sampling.max_tokens
            if limit is not None and sampling.fit_context:
                limit = min(limit, max(1, context - len(tokens)))
            max_tokens = _max_tokens(handle, len(tokens), limit, context)
            defaults = handle.config.defaults
            out += _choices(sampling, n, prompt, tokens, defaults, max_tokens, constraint, None)
        return out


def _max_tokens(handle: ModelHandle, prompt_len: int, limit: int | None, context: int) -> int:
    wanted = limit if limit is not None else handle.config.defaults.max_tokens
    room = context - prompt_len
    if wanted is None:
        wanted = room
    if prompt_len + wanted > context or room < 1:
        raise ContextLengthError(
            f"This model's maximum context length is {context} tokens. However, you "
            f"requested {prompt_len + wanted} tokens ({prompt_len} in the prompt, {wanted} "
            "in the completion). Please reduce the length of the prompt or completion.",
            param="max_tokens" if limit is not None else "messages",
        )
    return wanted
