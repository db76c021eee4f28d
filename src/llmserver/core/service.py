"""The one policy path: every kind of work, from every surface, reaches a model through here.

Each entry point resolves the model (ids, aliases, roles), authorises it for the caller (403),
masks the input where the model, the key or the surface asks for it, makes the prompt plan
(:mod:`llmserver.core.prompts`) and the output policy (output masking, the response cache),
and hands back a generation built from them. Surfaces translate wire requests into
:mod:`llmserver.core.requests` types and never reach a backend themselves; what they ask about
models rather than of them goes to :attr:`Service.admin`.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Any

from llmserver.config.model_configs import prompt_format_string
from llmserver.config.settings import Settings
from llmserver.core.admin import Admin
from llmserver.core.auto import choose
from llmserver.core.caller import Caller
from llmserver.core.created import CreatedModels
from llmserver.core.embed_prompts import embedding_prompt
from llmserver.core.embeddings import EmbedResult, embed
from llmserver.core.fim import CodeLimits, Infill
from llmserver.core.generation import Event, Generation, OutputPolicy
from llmserver.core.manager import ModelHandle, ModelManager
from llmserver.core.masking import InputMasking
from llmserver.core.prompts import ChatPlan, Plan, chat_plan, fim_plan, text_plan
from llmserver.core.reasoning import reasoning_format
from llmserver.core.requests import (
    ChatRequest,
    DetokenizeRequest,
    EmbedRequest,
    InfillRequest,
    Message,
    Sampling,
    ScoreRequest,
    TextRequest,
    Thinking,
    TokenizeRequest,
)
from llmserver.core.rerank import Scores, check_limits, score
from llmserver.core.response_cache import Cache, ResponseCache
from llmserver.core.routing import AUTO, Decision, RouteContext
from llmserver.core.shared_cache import RedisResponseCache
from llmserver.core.tokens import TokenList, detokenize, token_tools, tokenize
from llmserver.core.tools import plan as tools
from llmserver.core.variants import chat_variant, with_stops
from llmserver.errors import InvalidRequestError, ModelNotFoundError, PermissionDeniedError
from llmserver.privacy import PIIMasker
from llmserver.security import pii

logger = logging.getLogger("llmserver.service")


class Service:
    """Chat, text and embedding work on the right model, with the caller's permissions."""

    def __init__(self, manager: ModelManager, settings: Settings, masker: PIIMasker) -> None:
        self._manager = manager
        self.settings = settings
        self._masker = masker
        #: the models as callers see and manage them (listing, loading, idle timers, shutdown)
        self.admin = Admin(manager, CreatedModels(settings.data_file(None, "models.json")))
        self._response_caches: dict[str, Cache[tuple[Event, ...]]] = {}
        #: the Redis client of a shared response cache (``response_cache_redis``), made once
        self._redis: Any = None

    # -- policy ----------------------------------------------------------------------------------

    def _masking(self, caller: Caller, handle: ModelHandle, asked: bool) -> InputMasking:
        config = handle.config
        return InputMasking.of(self._masker, caller, config.mask_pii, config.pii_restore, asked)

    def _chat_messages(self, req: ChatRequest, masking: InputMasking) -> list[Message]:
        """The messages as the model gets them (masked where the model, key or surface asks),
        once the tools, tool choice and tool messages are checked."""
        tools.check(req, self.settings.max_tools, self.settings.max_tool_schema_bytes)
        messages = list(req.messages)
        if masking.active:
            messages = [dataclasses.replace(m, content=masking(m.content)) for m in messages]
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
        handle = self.admin.authorise(caller, name)
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
        plan: Plan,
        prefix: str,
        cacheable: bool,
        masking: InputMasking,
        limits: CodeLimits | None = None,
    ) -> Generation:
        gen_id = f"{prefix}-{uuid.uuid4().hex}"
        field = handle.config.reasoning.field or self.settings.reasoning_field
        policy = self._output(caller, handle, cacheable)
        restorer = None if masking.vault is None else pii.output_restorer(masking.vault)
        policy = dataclasses.replace(policy, restorer=restorer, limits=limits)
        return Generation(handle, self._manager, plan, gen_id, policy, reasoning_field=field)

    def _output(self, caller: Caller, handle: ModelHandle, cacheable: bool) -> OutputPolicy:
        """Output masking where the server asks for it, and the model's response cache for a
        call whose output may be stored (a reply that may hold tool calls never is)."""
        masker = pii.output_masker(self._masker) if self.settings.mask_output else None
        cached = handle.config.response_cache
        if cached is None or not cacheable:
            return OutputPolicy(masker)
        if (cache := self._response_caches.get(handle.id)) is None:
            cache = self._new_cache(handle.id, cached.max_entries, cached.ttl_s)
            self._response_caches[handle.id] = cache
        return OutputPolicy(masker, cache, None if cached.share_across_keys else caller.name)

    def _new_cache(self, model: str, entries: int, ttl_s: float) -> Cache[tuple[Event, ...]]:
        """This process's cache, or the Redis one every gateway shares."""
        url = self.settings.response_cache_redis
        if url is None:
            return ResponseCache(entries, ttl_s)
        if self._redis is None:
            import redis.asyncio

            self._redis = redis.asyncio.Redis.from_url(
                url, socket_timeout=1.0, socket_connect_timeout=1.0
            )
        return RedisResponseCache(self._redis, model, ttl_s)

    async def close_caches(self) -> None:
        """Close the shared response cache's connections."""
        if self._redis is not None:
            await self._redis.aclose()

    def _overflow(self, sampling: Sampling) -> Sampling:
        """``sampling`` under the server's rule for a ``max_tokens`` past the context."""
        clamp = self.settings.max_tokens_overflow == "clamp"
        return dataclasses.replace(sampling, fit_context=clamp)

    def _prompt_format(self, handle: ModelHandle) -> str | None:
        """The configured ``chat_prompt_format`` of a model (else the server's) as a format
        string with ``{prompt}``; None: the model's chat template."""
        setting = handle.config.chat_prompt_format or self.settings.chat_prompt_format
        return prompt_format_string(setting)

    # -- entry points ----------------------------------------------------------------------------

    async def route(
        self, caller: Caller, req: ChatRequest, ctx: RouteContext
    ) -> tuple[ChatRequest, Decision | None]:
        """For ``model: "auto"`` with ``routing`` set: the request for the model it picks
        (:mod:`llmserver.core.auto`) and why; any other request as it is."""
        routing = self.settings.routing
        if req.model != AUTO or routing is None:
            return req, None

        def allowed(name: str) -> bool:
            try:
                self.admin.authorise(caller, name)
            except (PermissionDeniedError, ModelNotFoundError):
                return False
            return True

        async def run(router_req: ChatRequest) -> tuple[str, int, int]:
            gen = self.chat(Caller.anyone(), router_req)  # the router runs for the server
            text = (await gen.collect()).texts[0]
            return text, gen.usage.prompt_tokens, gen.usage.completion_tokens

        decision = await choose(
            routing, caller, req, ctx, allowed, lambda: self._prompt_tokens(req), run
        )
        return dataclasses.replace(req, model=decision.model), decision

    def _prompt_tokens(self, req: ChatRequest) -> int:
        """The conversation's length in the default model's tokens (a quarter of its
        characters while that model is not loaded)."""
        text = "\n".join(m.content for m in req.messages)
        handle = self._manager.lookup(None)
        tokenizer = handle.tokenizer() if handle.state == "ready" else None
        return len(tokenizer.tokenize(text)) if tokenizer is not None else len(text) // 4

    def chat(self, caller: Caller, req: ChatRequest) -> Generation:
        """A chat reply: the prompt is the model's chat template applied to the messages.

        A model without a tokenizer (upstream) gets the messages themselves.
        """
        handle = self._ready(caller, req.model, req.n, req.sampling)
        req = chat_variant(handle.config, req)
        masking = self._masking(caller, handle, req.mask_input)
        messages = self._chat_messages(req, masking)
        if messages:
            self._log_text(messages[-1].content)
        fmt = self._prompt_format(handle) if req.use_prompt_format else None
        req = dataclasses.replace(
            req, sampling=self._overflow(req.sampling), thinking=self._thinking(handle, req)
        )
        plan = chat_plan(handle, req, messages, fmt)
        calls = tools.ToolPlan.of(req).active
        return self._generation(caller, handle, plan, "chatcmpl", not calls, masking)

    def _thinking(self, handle: ModelHandle, req: ChatRequest) -> Thinking:
        """The request's thinking control, checked against the model: asking a model that
        cannot think to think is a 400 where the surface is strict (Ollama), else ignored with
        a log line (OpenAI). A model not loaded yet, or served upstream, is not known here: its
        request goes on."""
        asked = req.thinking
        if asked.budget is None and asked.effort is not None:
            budget = self.settings.reasoning_budgets.get(asked.effort)
            asked = dataclasses.replace(asked, budget=budget)
        # a model loaded on demand shows its template once loaded; an upstream engine decides
        # itself (it is told what the caller asked)
        known = handle.template is not None or handle.config.reasoning.format != "auto"
        if not asked.enabled or not known or reasoning_format(handle) is not None:
            return asked
        if asked.strict:
            raise InvalidRequestError(f'"{handle.id}" does not support thinking', param="think")
        logger.info(
            "model '%s' does not think: the request's thinking control is ignored", handle.id
        )
        return Thinking()

    async def count_tokens(self, caller: Caller, req: ChatRequest) -> int:
        """How many tokens :meth:`chat` would give the model for ``req``: the chat template
        applied to the messages and tools (masked where a chat would mask them), counted by the
        model's own tokenizer. Authorised like a chat; a model loaded on demand is loaded first.

        An upstream model tokenizes on the far side, so it cannot count here (a 400).
        """
        handle = self._ready(caller, req.model, 1)
        req = chat_variant(handle.config, req)
        messages = self._chat_messages(req, self._masking(caller, handle, req.mask_input))
        await self._manager.ensure_loaded(handle)
        handle.check_ready()
        tokenizer = handle.tokenizer()
        if tokenizer is None or handle.template is None:
            raise InvalidRequestError(
                f"model '{handle.id}' is served upstream, so this server cannot count its tokens",
                param="model",
                code="token_counting_unsupported",
            )
        return len(tokenizer.tokenize(ChatPlan.of(req, messages).prompt(handle)))

    async def _loaded(self, caller: Caller, name: str | None) -> ModelHandle:
        """The model for ``name``, authorised for the caller and loaded (on demand)."""
        handle = self._manager.resolve(self.admin.authorise(caller, name).id)
        await self._manager.ensure_loaded(handle)
        handle.check_ready()
        return handle

    async def tokenize(self, caller: Caller, req: TokenizeRequest) -> TokenList:
        """The model's tokens of a prompt, or of a chat as :meth:`chat` renders it (masked
        where a chat or a completion would be, so the count is the one the model would get)."""
        handle = await self._loaded(caller, req.model)
        token_tools(handle)  # an upstream model: a 400 naming it, before any template
        if req.chat is not None:
            masking = self._masking(caller, handle, req.chat.mask_input)
            text = ChatPlan.of(req.chat, self._chat_messages(req.chat, masking)).prompt(handle)
        else:
            text = self._masking(caller, handle, req.mask_input)(req.prompt or "")
        return tokenize(handle, text, req.add_special)

    async def detokenize(self, caller: Caller, req: DetokenizeRequest) -> str:
        """The text of the model's tokens."""
        return detokenize(await self._loaded(caller, req.model), req.tokens)

    def text(self, caller: Caller, req: TextRequest) -> Generation:
        """A plain continuation of each prompt."""
        if len(req.prompts) > self.settings.max_prompts:
            raise InvalidRequestError(
                f"prompt may hold at most {self.settings.max_prompts} prompts",
                param="prompt",
                code="too_many_prompts",
            )
        handle = self._ready(caller, req.model, req.n, req.sampling)
        masking = self._masking(caller, handle, req.mask_input)
        prompts = [masking(p) for p in req.prompts]
        self._log_text(" | ".join(prompts))
        sampling = self._overflow(with_stops(handle.config, req.sampling))
        plan = text_plan(handle, prompts, sampling, req.n, req.constraint)
        return self._generation(caller, handle, plan, "cmpl", True, masking)

    def infill(self, caller: Caller, req: InfillRequest) -> Generation:
        """Code for the hole between a prefix and a suffix, in the model's fill-in-the-middle
        format (a 400 for a model without one)."""
        handle = self._ready(caller, req.model, req.n, req.sampling)
        masking = self._masking(caller, handle, req.mask_input)
        infill = Infill(
            masking(req.prefix),
            masking(req.suffix),
            masking(req.typed),
            tuple((name, masking(text)) for name, text in req.extra),
        )
        self._log_text(req.prefix)
        plan = fim_plan(
            handle, infill, self._overflow(with_stops(handle.config, req.sampling)), req.n
        )
        return self._generation(caller, handle, plan, "cmpl", True, masking, req.limits)

    async def embed(self, caller: Caller, req: EmbedRequest) -> EmbedResult:
        """Vectors for every input, on a model that serves embeddings."""
        handle = self.admin.authorise(caller, req.model)
        handle = self._manager.resolve(handle.id)
        inputs = req.inputs
        masking = self._masking(caller, handle, req.mask_input)
        if masking.active and inputs and isinstance(inputs[0], str):
            inputs = [masking(text) for text in inputs]  # type: ignore[arg-type]
        prompt = embedding_prompt(handle.config, req.input_type, req.prompt_name)
        if prompt and inputs and isinstance(inputs[0], str):
            inputs = [prompt + text for text in inputs]  # type: ignore[operator]
        elif prompt and (req.input_type is not None or req.prompt_name is not None):
            raise InvalidRequestError(
                "a prompt goes before text inputs, not token arrays",
                param="prompt_name" if req.prompt_name is not None else "input_type",
            )
        return await embed(handle, inputs, req.dimensions)

    async def score(self, caller: Caller, req: ScoreRequest) -> Scores:
        """Relevance scores of (query, document) pairs (rerank, score), on a reranker or an
        embedding model (a bi-encoder); query and documents masked as embedding inputs are."""
        check_limits(req.pairs, self.settings)
        handle = await self._loaded(caller, req.model)
        pairs = list(req.pairs)
        masking = self._masking(caller, handle, req.mask_input)
        if masking.active:
            masked: dict[str, str] = {}  # a query shared by many pairs is masked once

            def once(text: str) -> str:
                if text not in masked:
                    masked[text] = masking(text)
                return masked[text]

            pairs = [(once(q), once(d)) for q, d in pairs]
        self._log_text(pairs[0][0])
        return await score(handle, pairs, req.truncate)
