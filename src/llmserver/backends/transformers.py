"""Hugging Face models run in-process by Transformers (PyTorch): a model directory or a GGUF file.

``model.generate`` runs on one worker thread (``max_parallel = 1``), so the event loop keeps
serving. A streamer receives every generated token id; this module decodes them incrementally,
applies stop strings and the token limit, and hands deltas to the loop through a queue. Stopping
(a stop string, the limit, or the client going away) sets a flag a ``StoppingCriteria`` reads
after every token. A JSON constraint (``response_format``, a ``required`` or named tool call) is a
logits processor driven by llguidance (see ``transformers_grammar``). torch and transformers are
imported only when the model starts.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from llmserver.backends.base import (
    Delta,
    FinishReason,
    GenerationRequest,
    JsonConstraint,
    ModelLoadError,
    PromptFormat,
    SamplingParams,
    StopMatcher,
    utf8,
)
from llmserver.backends.hf_fim import hf_fim_tokens
from llmserver.backends.thought import ThoughtFollower
from llmserver.backends.torch_memory import tensor_bytes
from llmserver.backends.transformers_grammar import (
    GrammarProcessor,
    GrammarUnavailableError,
    SchemaGrammars,
)
from llmserver.backends.transformers_thought import ThoughtProcessor
from llmserver.config.model_configs import ModelConfig, TransformersConfig
from llmserver.errors import EngineError, InvalidRequestError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("llmserver.backends.transformers")

_DONE = object()
DEFAULT_CONTEXT = 2048


def auto_device(device: str | None) -> str:
    """The configured device, else ``cuda`` when PyTorch sees a GPU, else ``cpu``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_location(path: str) -> tuple[str, dict[str, Any]]:
    """``from_pretrained`` arguments for a directory, a hub id, or a ``.gguf`` file."""
    file = Path(path).expanduser()
    if file.suffix == ".gguf":
        if not file.is_file():
            raise ModelLoadError(f"model file not found: {file}")
        return str(file.parent), {"gguf_file": file.name, "local_files_only": True}
    if file.is_dir():
        return str(file), {"local_files_only": True}
    return path, {}  # a hub id; loads only if it is in the local cache or the hub is reachable


def hf_prompt_format(tokenizer: Any, context: int) -> PromptFormat:
    """A Hugging Face tokenizer's chat template and special tokens (its FIM tokens too)."""
    template = tokenizer.chat_template
    if isinstance(template, dict):  # several named templates: the default one
        template = template.get("default")
    return PromptFormat(
        chat_template=template,
        bos_token=tokenizer.bos_token or "",
        eos_token=tokenizer.eos_token or "",
        context_length=context,
        fim=hf_fim_tokens(tokenizer),
    )


def hf_tokenize(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt, adding the tokenizer's BOS only if the text lacks it."""
    bos = tokenizer.bos_token or ""
    add_special = not (bos and text.startswith(bos))
    ids: list[int] = tokenizer(text, add_special_tokens=add_special)["input_ids"]
    return ids


def hf_tokenize_text(tokenizer: Any, text: str, add_special: bool) -> list[int]:
    """Token ids of ``text``; the tokenizer's special tokens (BOS) only when ``add_special``."""
    ids: list[int] = tokenizer(text, add_special_tokens=add_special)["input_ids"]
    return ids


def hf_detokenize(tokenizer: Any, tokens: Sequence[int]) -> str:
    """The text of ``tokens``, special tokens written out."""
    text: str = tokenizer.decode(list(tokens), skip_special_tokens=False)
    return text


class HfTokenTools:
    """Tokenizing and detokenizing with a Hugging Face tokenizer held in ``_tokenizer`` (None
    until the model loads): the Transformers and vLLM backends share it."""

    _tokenizer: Any

    def _loaded_tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise EngineError("model is not loaded")
        return self._tokenizer

    def tokenize(self, text: str) -> list[int]:
        """Token ids of a rendered prompt (BOS added unless the text starts with it)."""
        utf8(text)  # an unpaired surrogate is a 400, not the tokenizer's TypeError
        return hf_tokenize(self._loaded_tokenizer(), text)

    def tokenize_text(self, text: str, add_special: bool) -> list[int]:
        """Token ids of ``text``; BOS only when ``add_special``."""
        utf8(text)
        return hf_tokenize_text(self._loaded_tokenizer(), text, add_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``."""
        return hf_detokenize(self._loaded_tokenizer(), tokens)

    def token_piece(self, token: int) -> str:
        """One token's text."""
        return self.detokenize([token])


class IncrementalDecoder:
    """Token ids to text piece by piece, holding back incomplete UTF-8 and merged pieces.

    Decoding a window of recent tokens (not one token alone) keeps the spaces and multi-token
    characters that tokenizers only produce in context.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        text: str = self._tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def add(self, token: int) -> str:
        """Text that ``token`` completes (possibly empty)."""
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back at the end."""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :]


class TransformersBackend(HfTokenTools):
    """A causal language model loaded with ``AutoModelForCausalLM``."""

    config_type: ClassVar[type[ModelConfig]] = TransformersConfig
    max_parallel: ClassVar[int] = 1
    #: budgets thoughts and applies a JSON constraint only after the thought
    follows_thoughts: ClassVar[Literal[True]] = True

    def __init__(self, config: TransformersConfig) -> None:
        self.config = config
        self._model: Any = None
        self._tokenizer: Any = None
        self._device = "cpu"
        self._grammars: SchemaGrammars | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"transformers-{config.id}")

    async def start(self) -> None:
        """Load tokenizer and weights on a fresh worker thread (so a closed backend restarts)."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"transformers-{self.config.id}")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        try:
            import torch  # noqa: F401  (the extra's real dependency; fail here, clearly)
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ModelLoadError(
                "transformers is not installed: pip install 'llmserver[transformers]'"
            ) from exc
        cfg = self.config
        where, extra = model_location(cfg.path)
        self._device = auto_device(cfg.device)
        dtype: Any = _torch_dtype(cfg.dtype, self._device)
        common = {"trust_remote_code": cfg.trust_remote_code, **extra}
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(where, **common)
            model: Any = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **common)
            self._model = model.to(self._device).eval()
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            raise ModelLoadError(f"model load failed: {cfg.path}: {exc}") from exc
        logger.info("model %s on %s (%s)", cfg.id, self._device, self._model.dtype)

    def prompt_format(self) -> PromptFormat:
        """The tokenizer's chat template and special tokens; the configured or model context."""
        if self._tokenizer is None:
            raise EngineError("model is not loaded")
        context = self.config.context_size or _model_context(self._model)
        return hf_prompt_format(self._tokenizer, context)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Run ``model.generate`` on the worker thread and relay its deltas."""
        if self._model is None:
            raise EngineError("model is not loaded")
        loop = asyncio.get_running_loop()
        grammar: GrammarProcessor | None = None
        constraint = request.constraint
        if constraint is not None and not constraint.triggers:
            # built on the worker (the token table takes a second once); a bad schema is a 400
            # before anything is generated. A lazy constraint (``auto`` tools) is left out.
            grammar = await loop.run_in_executor(self._executor, self._grammar, constraint)
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                self._run(request, emit, cancelled, grammar)
            except Exception as exc:
                logger.exception("generation %s failed", request.request_id)
                emit(EngineError(f"transformers failed: {exc}"))
            finally:
                emit(_DONE)

        future = loop.run_in_executor(self._executor, work)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise item
                assert isinstance(item, Delta)
                yield item
        finally:
            cancelled.set()
            # the model is not free until generate() has returned
            await asyncio.shield(future)

    def _grammar(self, constraint: JsonConstraint) -> GrammarProcessor:
        if self._grammars is None:
            vocab = getattr(self._model.config, "vocab_size", None) or len(self._tokenizer)
            try:
                self._grammars = SchemaGrammars(self._tokenizer, self._eos_ids(), vocab)
            except GrammarUnavailableError as exc:
                raise InvalidRequestError(str(exc), location=constraint.location) from exc
        return GrammarProcessor(self._grammars.matcher(constraint))

    def _run(
        self,
        request: GenerationRequest,
        emit: Callable[[object], None],
        cancelled: threading.Event,
        grammar: GrammarProcessor | None,
    ) -> None:
        import torch

        params = request.params
        if grammar is not None:
            # the grammar ends the output (only EOS is allowed after the JSON): EOS must not be
            # masked, so a constrained generation never ignores it
            params = replace(params, ignore_eos=False)
        tracker = _TokenTracker(self._tokenizer, params, self._eos_ids(), emit)
        stopping, streamer, logits = _hooks(tracker, cancelled, params)
        thought = request.thought
        if thought is not None and not thought.drop:
            # follow the thought: its budget, and the grammar only after it
            end = hf_tokenize_text(self._tokenizer, thought.end, add_special=False)
            follower = ThoughtFollower(thought, end)
            eos = () if params.ignore_eos else self._eos_ids()
            logits.append(ThoughtProcessor(follower, self._piece, grammar, eos))
        elif grammar is not None:
            logits.append(grammar)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        inputs = torch.tensor([list(request.prompt_tokens)], device=self._device)
        with torch.inference_mode():
            self._model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                generation_config=self._generation_config(params),
                streamer=streamer,
                stopping_criteria=stopping,
                logits_processor=logits,
            )
        if not cancelled.is_set():
            tracker.end()

    def _piece(self, token: int) -> bytes:
        """One token's text with special tokens written out (a thought's markers)."""
        text = self._tokenizer.decode([token], skip_special_tokens=False)
        return str(text).encode("utf-8")

    def _eos_ids(self) -> set[int]:
        eos = self._model.generation_config.eos_token_id
        if eos is None:
            eos = self._tokenizer.eos_token_id
        return set(eos) if isinstance(eos, list) else ({eos} if eos is not None else set())

    def _generation_config(self, params: SamplingParams) -> Any:
        from transformers import GenerationConfig

        greedy = params.temperature <= 0
        eos = sorted(self._eos_ids())
        pad = self._tokenizer.pad_token_id
        settings: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "do_sample": not greedy,
            "eos_token_id": eos or None,
            "pad_token_id": pad if pad is not None else (eos[0] if eos else None),
            "repetition_penalty": params.repeat_penalty,
            "bos_token_id": self._tokenizer.bos_token_id,
        }
        if params.ignore_eos:
            # EOS is masked until the limit, so the model always writes max_tokens tokens
            settings["min_new_tokens"] = params.max_tokens
        if not greedy:
            settings.update(
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k or None,
                min_p=params.min_p or None,
            )
        factory: Any = GenerationConfig  # untyped in some transformers versions
        return factory(**settings)

    async def health(self) -> bool:
        """Healthy while loaded."""
        return self._model is not None

    def loaded_memory(self) -> dict[str, int] | None:
        """Bytes of the loaded model's tensors by device."""
        return tensor_bytes(self._model) if self._model is not None else None

    async def close(self) -> None:
        """Drop the weights (and the GPU cache when on CUDA)."""
        self._model = None
        self._tokenizer = None
        self._grammars = None
        gc.collect()  # the weights are freed now, not at some later collection
        if self._device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        self._executor.shutdown(wait=False)


class _TokenTracker:
    """Turns generated token ids into deltas: decoding, stop strings, EOS, the token limit."""

    def __init__(
        self,
        tokenizer: Any,
        params: SamplingParams,
        eos: set[int],
        emit: Callable[[object], None],
    ) -> None:
        self.params = params
        self.eos = eos
        self.emit = emit
        self.decoder = IncrementalDecoder(tokenizer)
        self.stops = StopMatcher(params.stop)
        self.produced = 0
        self.finished = False

    def add(self, token: int) -> None:
        """One generated token."""
        if self.finished:
            return
        is_eos = token in self.eos
        if is_eos and not self.params.ignore_eos:
            self._finish("", 0, "stop")  # EOS is not text and not counted, as in llama.cpp
            return
        self.produced += 1
        text, stopped = self.stops.feed("" if is_eos else self.decoder.add(token))
        if stopped:
            self.finished = True
            self.emit(Delta(text, 1, "stop", stop_sequence=self.stops.matched))
        elif self.produced >= self.params.max_tokens:
            self._finish(text, 1, "length")
        else:
            self.emit(Delta(text, 1))

    def _finish(self, text: str, tokens: int, reason: FinishReason) -> None:
        tail, stopped = self.stops.feed(self.decoder.flush())
        self.finished = True
        text += tail + ("" if stopped else self.stops.flush())
        self.emit(Delta(text, tokens, reason, stop_sequence=self.stops.matched))

    def end(self) -> None:
        """generate() returned; finish if no token did (e.g. the model's own length limit)."""
        if not self.finished:
            self._finish("", 0, "length" if self.produced else "stop")


def _hooks(
    tracker: _TokenTracker, cancelled: threading.Event, params: SamplingParams
) -> tuple[Any, Any, Any]:
    """The streamer, stopping criteria and logits processors that connect generate() to us."""
    import torch
    from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    class Streamer(BaseStreamer):  # type: ignore[misc, unused-ignore]
        """Receives the prompt once, then each new token id."""

        prompt_seen = False

        def put(self, value: torch.Tensor) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            for token in value.reshape(-1).tolist():
                tracker.add(int(token))

        def end(self) -> None:
            pass

    class Stop(StoppingCriteria):  # type: ignore[misc, unused-ignore]
        """Ends generation once the tracker has finished or the client has gone."""

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **_: Any) -> Any:
            done = tracker.finished or cancelled.is_set()
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool)

    processors = LogitsProcessorList()
    if params.presence_penalty or params.frequency_penalty:
        processors.append(_OpenAIPenalties(params, tracker))
    return StoppingCriteriaList([Stop()]), Streamer(), processors


class _OpenAIPenalties:
    """OpenAI's presence and frequency penalties over the tokens generated so far."""

    def __init__(self, params: SamplingParams, tracker: _TokenTracker) -> None:
        self.presence = params.presence_penalty
        self.frequency = params.frequency_penalty
        self.tracker = tracker
        self.prompt_len: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        if self.prompt_len is None:
            self.prompt_len = int(input_ids.shape[1])
        generated = input_ids[:, self.prompt_len :]
        counts = torch.zeros_like(scores)
        if generated.shape[1]:
            ones = torch.ones_like(generated, dtype=scores.dtype)
            counts.scatter_add_(1, generated, ones)
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


def _torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        # half precision on CPU is slow and sometimes unsupported; GPUs take the model's own
        return torch.float32 if device == "cpu" else "auto"
    return getattr(torch, name)


def _model_context(model: Any) -> int:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_CONTEXT
