"""Hugging Face models served by vLLM's async engine, in-process, on CUDA machines.

vLLM batches many sequences at once, so one model gets many generation slots. Each generation is
one engine request fed with the token ids the service rendered and counted; the engine's async
generator yields cumulative outputs, which become deltas here (text and token counts are the
differences). A consumer that stops early (client gone) aborts the request with the engine's own
``abort(request_id)``. vllm is imported only when the model starts.
"""

from __future__ import annotations

import gc
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

from llmserver.backends.base import (
    Delta,
    FinishReason,
    GenerationRequest,
    JsonConstraint,
    ModelLoadError,
    PromptFormat,
    SamplingParams,
    TokenLogprob,
    TopLogprob,
)
from llmserver.backends.transformers import (
    HfTokenTools,
    hf_prompt_format,
)
from llmserver.config.model_configs import ModelConfig, VllmConfig
from llmserver.errors import EngineError, InvalidRequestError

logger = logging.getLogger("llmserver.backends.vllm")

#: vLLM's default ``max_num_seqs``; set ``max_concurrent`` to match a different one
DEFAULT_MAX_NUM_SEQS = 256


def engine_kwargs(config: VllmConfig) -> dict[str, Any]:
    """``AsyncEngineArgs`` keywords from the config; unset options keep vLLM's defaults."""
    kwargs: dict[str, Any] = {
        "model": config.path,
        "tokenizer": config.tokenizer,
        "tensor_parallel_size": config.tensor_parallel_size,
        "pipeline_parallel_size": config.pipeline_parallel_size,
        "distributed_executor_backend": config.distributed_executor_backend,
        "quantization": config.quantization,
        "max_model_len": config.max_model_len,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "max_num_seqs": config.max_num_seqs,
        "dtype": config.dtype,
        "trust_remote_code": config.trust_remote_code,
        "enforce_eager": config.enforce_eager,
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs.update(config.engine_args)
    return kwargs


def sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Our sampling parameters in vLLM's names (temperature 0 is greedy in vLLM too)."""
    kwargs: dict[str, Any] = {
        "n": 1,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k if params.top_k > 0 else -1,  # vLLM: -1 disables
        "min_p": params.min_p,
        "repetition_penalty": params.repeat_penalty,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "seed": params.seed,
        "stop": list(params.stop),
        "ignore_eos": params.ignore_eos,
        "skip_special_tokens": True,
    }
    if params.logprobs is not None:
        # vLLM lists the chosen token and the ``logprobs`` most likely ones at each step,
        # from the raw logits by default (before temperature or penalties), as llama.cpp here
        kwargs["logprobs"] = params.logprobs
    return kwargs


def token_logprobs(
    ids: Any, entries: Any, top: int, tokenizer: Any, eos: int | None
) -> tuple[TokenLogprob, ...]:
    """vLLM's per-step logprobs (``{token id: Logprob}`` for each token) as the core's type;
    the end-of-generation token is not listed (llama.cpp's backend leaves it out too)."""
    out: list[TokenLogprob] = []
    for token, entry in zip(ids, entries or (), strict=False):
        if token == eos or not entry:
            continue
        ranked = sorted(entry.items(), key=lambda item: -float(item[1].logprob))
        alternatives = tuple(
            TopLogprob(text, text.encode("utf-8"), float(lp.logprob))
            for tid, lp in ranked[:top]
            for text in (_piece(tid, lp, tokenizer),)
        )
        chosen = entry.get(token)
        logprob = float(chosen.logprob) if chosen is not None else float("-inf")
        text = _piece(token, chosen, tokenizer)
        out.append(TokenLogprob(text, text.encode("utf-8"), logprob, alternatives))
    return tuple(out)


def _piece(token: int, logprob: Any, tokenizer: Any) -> str:
    decoded = getattr(logprob, "decoded_token", None)
    if isinstance(decoded, str):
        return decoded
    return str(tokenizer.decode([token])) if tokenizer is not None else ""


def structured_output(constraint: JsonConstraint) -> tuple[str, Any]:
    """The SamplingParams keyword and value that constrain output to JSON in this vLLM."""
    fields: dict[str, Any] = (
        {"json_object": True} if constraint.schema is None else {"json": constraint.schema}
    )
    try:
        from vllm.sampling_params import StructuredOutputsParams  # vLLM >= 0.10.2

        return "structured_outputs", StructuredOutputsParams(**fields)
    except ImportError:
        pass
    try:
        from vllm.sampling_params import GuidedDecodingParams

        return "guided_decoding", GuidedDecodingParams(**fields)
    except ImportError:
        raise InvalidRequestError(
            "this vLLM version has no structured output support", param="response_format"
        ) from None


async def _maybe_await(value: Any) -> Any:
    """vLLM made several engine accessors async in some versions and not in others."""
    return await value if inspect.isawaitable(value) else value


class VllmBackend(HfTokenTools):
    """A model in a vLLM ``AsyncLLMEngine`` (the V1 ``AsyncLLM`` in recent vLLM)."""

    config_type: ClassVar[type[ModelConfig]] = VllmConfig
    max_parallel: ClassVar[int] = DEFAULT_MAX_NUM_SEQS
    #: reports token log probabilities (``logprobs``)
    logprobs: ClassVar[Literal[True]] = True

    def __init__(self, config: VllmConfig) -> None:
        self.config = config
        self._engine: Any = None
        self._tokenizer: Any = None
        self._context = 0

    async def start(self) -> None:
        """Build the engine (weights load onto the GPUs), then read its tokenizer and context.

        Built on the event loop, as vLLM's own server does: the engine binds its output handler
        to the running loop.
        """
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError as exc:
            raise ModelLoadError(
                "vllm is not installed (it needs CUDA): pip install 'llmserver[vllm]'"
            ) from exc
        try:
            args = AsyncEngineArgs(**engine_kwargs(self.config))
            self._engine = AsyncLLMEngine.from_engine_args(args)
        except (ValueError, TypeError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"vLLM could not start {self.config.path}: {exc}") from exc
        engine = self._engine
        self._tokenizer = await _maybe_await(engine.get_tokenizer())
        model_config = getattr(engine, "model_config", None)
        if model_config is None:
            model_config = await _maybe_await(engine.get_model_config())
        self._context = int(model_config.max_model_len)
        logger.info("vLLM model %s ready, context %d", self.config.id, self._context)

    def prompt_format(self) -> PromptFormat:
        """The tokenizer's chat template and special tokens; vLLM's max_model_len."""
        if self._tokenizer is None:
            raise EngineError("model is not loaded")
        return hf_prompt_format(self._tokenizer, self._context)

    def _sampling(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams as VllmSamplingParams

        kwargs = sampling_kwargs(request.params)
        if request.constraint is not None and not request.constraint.triggers:
            # a lazy constraint (tool calls in auto mode) needs a lazy grammar: left out
            name, value = structured_output(request.constraint)
            kwargs[name] = value
        try:
            return VllmSamplingParams(**kwargs)
        except (ValueError, TypeError) as exc:
            raise InvalidRequestError(f"invalid sampling parameters: {exc}") from exc

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Stream one engine request as deltas; abort it if the consumer stops early."""
        engine = self._engine
        if engine is None:
            raise EngineError("model is not loaded")
        sampling = self._sampling(request)
        request_id = f"{self.config.id}-{request.request_id}"
        prompt = {"prompt_token_ids": list(request.prompt_tokens)}
        text_sent = tokens_sent = 0
        finished = False
        top = request.params.logprobs
        eos = getattr(self._tokenizer, "eos_token_id", None)
        try:
            async for output in engine.generate(prompt, sampling, request_id):
                completion = output.outputs[0]
                text = completion.text[text_sent:]
                tokens = len(completion.token_ids) - tokens_sent
                lps: tuple[TokenLogprob, ...] = ()
                if top is not None:
                    new = slice(tokens_sent, len(completion.token_ids))
                    entries = (completion.logprobs or [])[new]
                    ids = list(completion.token_ids)[new]
                    lps = token_logprobs(ids, entries, top, self._tokenizer, eos)
                text_sent, tokens_sent = len(completion.text), len(completion.token_ids)
                if completion.finish_reason is not None or output.finished:
                    finished = True
                    reason: FinishReason = (
                        "length" if completion.finish_reason == "length" else "stop"
                    )
                    # vLLM names the stop string it hit (or a stop token id)
                    hit = getattr(completion, "stop_reason", None)
                    stop = hit if isinstance(hit, str) else None
                    yield Delta(text, tokens, reason, stop_sequence=stop, logprobs=lps)
                    return
                if text or tokens:
                    yield Delta(text, tokens, logprobs=lps)
            finished = True
            yield Delta("", 0, "stop")
        except ValueError as exc:  # vLLM rejects a request it cannot serve with ValueError
            raise InvalidRequestError(str(exc)) from exc
        except Exception as exc:  # the engine died or failed this request
            logger.exception("vLLM generation %s failed", request_id)
            raise EngineError(f"vLLM failed: {exc}") from exc
        finally:
            if not finished:
                await engine.abort(request_id)

    async def health(self) -> bool:
        """The engine's own health check."""
        if self._engine is None:
            return False
        try:
            await self._engine.check_health()
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Shut the engine (and its worker processes) down and free the GPU memory."""
        engine, self._engine = self._engine, None
        self._tokenizer = None
        if engine is None:
            return
        for name in ("shutdown", "shutdown_background_loop"):
            stop = getattr(engine, name, None)
            if callable(stop):
                await _maybe_await(stop())
                break
        del engine
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
