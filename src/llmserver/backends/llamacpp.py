"""GGUF models run in-process by llama.cpp through llama-cpp-python.

One ``Llama`` context serves one generation at a time (``max_parallel = 1``), on a dedicated
worker thread so the event loop keeps serving. Tokens cross to the loop one by one through a
queue; cancelling the consumer sets a flag the worker checks before every token, and the
consumer waits for the worker to stop before it gives the context back. Prompt processing, one
long ``llama_decode`` call, is interrupted through llama.cpp's abort callback, installed only
until the first token (it is called for every graph node, too often to keep for decoding).
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from llmserver.backends.base import (
    Delta,
    EmbeddingInput,
    EmbeddingResult,
    EmbeddingSpec,
    FinishReason,
    GenerationRequest,
    JsonConstraint,
    ModelLoadError,
    PromptFormat,
    StopMatcher,
    engine_failure,
)
from llmserver.errors import ContextLengthError, EngineError, InvalidRequestError
from llmserver.settings import LlamaCppConfig, ModelConfig

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

logger = logging.getLogger("llmserver.backends.llamacpp")

_DONE = object()
_POOLING = {"model": -1, "none": 0, "mean": 1, "cls": 2, "last": 3}  # LLAMA_POOLING_TYPE_*


class LlamaCppBackend:
    """A GGUF model in a llama.cpp context."""

    config_type: ClassVar[type[ModelConfig]] = LlamaCppConfig
    max_parallel: ClassVar[int] = 1

    def __init__(self, config: LlamaCppConfig) -> None:
        self.config = config
        self._llm: Llama | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"llamacpp-{config.id}")
        self._bos_text = ""
        self._add_bos = False
        self._abort: _AbortHook | None = None

    @property
    def llm(self) -> Llama:
        """The loaded model."""
        if self._llm is None:
            raise EngineError("model is not loaded")
        return self._llm

    async def start(self) -> None:
        """Load the GGUF file on the worker thread."""
        loop = asyncio.get_running_loop()
        self._llm = await loop.run_in_executor(self._executor, self._load)
        bos = self._llm.token_bos()
        self._bos_text = self._llm._model.token_get_text(bos) if bos != -1 else ""
        self._add_bos = bos != -1 and self._llm._model.add_bos_token()
        if self.config.embedding and int(self._llm.pooling_type()) == _POOLING["none"]:
            await self.close()
            raise ModelLoadError(
                f"{self.config.path} declares no embedding pooling; "
                "set pooling: mean (or cls, last)"
            )
        self._abort = _AbortHook.attach(self._llm)

    def _load(self) -> Llama:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelLoadError(
                "llama-cpp-python is not installed: pip install 'llmserver[llamacpp]'"
            ) from exc
        cfg = self.config
        try:
            return Llama(
                model_path=str(cfg.path),
                n_ctx=cfg.context_size,
                n_threads=cfg.threads,
                n_batch=cfg.batch_size,
                n_gpu_layers=cfg.gpu_layers,
                embedding=cfg.embedding,
                pooling_type=_POOLING[cfg.pooling],
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"model load failed: {cfg.path}: {exc}") from exc

    def prompt_format(self) -> PromptFormat:
        """Chat template and special tokens from the GGUF metadata."""
        llm = self.llm
        eos = llm.token_eos()
        return PromptFormat(
            chat_template=llm.metadata.get("tokenizer.chat_template"),
            bos_token=self._bos_text,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            context_length=llm.n_ctx(),
        )

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a rendered prompt; BOS added when the model wants it and it is absent."""
        add_bos = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def embedding_spec(self) -> EmbeddingSpec | None:
        """Embedding abilities when loaded with ``embedding: true``; else None."""
        if not self.config.embedding or self._llm is None:
            return None
        llm = self._llm
        return EmbeddingSpec(llm.n_embd(), min(llm.n_ctx(), llm.n_batch))

    async def embed(self, inputs: Sequence[EmbeddingInput]) -> EmbeddingResult:
        """Pooled, L2-normalised vectors (as llama-server returns them)."""
        spec = self.embedding_spec()
        if spec is None:
            raise InvalidRequestError(
                f"model '{self.config.id}' serves no embeddings", param="model"
            )
        if not all(isinstance(i, str) for i in inputs):
            raise InvalidRequestError("this model takes text input only", param="input")
        texts = [str(i) for i in inputs]
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._embed, texts, spec.max_input_tokens
        )

    def _embed(self, texts: list[str], limit: int) -> EmbeddingResult:
        llm = self.llm
        # counted exactly as Llama.embed tokenizes (BOS as the model wants, no special parsing)
        counts = [len(llm.tokenize(t.encode("utf-8"))) for t in texts]
        for index, count in enumerate(counts):
            if count > limit:
                raise ContextLengthError(
                    f"This model's maximum input length is {limit} tokens, but input {index} "
                    f"has {count} tokens. Please shorten the input.",
                    param="input",
                )
        vectors = llm.embed(texts, normalize=True, truncate=False)
        rows: list[Any] = list(vectors)  # pooled: one list of floats per input
        return EmbeddingResult([[float(x) for x in row] for row in rows], counts)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Run the generation on the worker thread and relay its deltas."""
        if self.config.embedding:
            raise InvalidRequestError(
                f"model '{self.config.id}' is an embedding model; use /v1/embeddings",
                param="model",
            )
        grammar = _grammar(request.constraint)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                self._run(request, grammar, emit, cancelled)
            except Exception as exc:
                if cancelled.is_set():  # prompt processing aborted on purpose
                    return
                logger.exception("generation %s failed", request.request_id)
                emit(engine_failure("llama.cpp", exc))
            finally:
                if self._abort is not None:
                    self._abort.watch(None)
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
            # the context is not free until the worker has returned
            await asyncio.shield(future)

    def _run(
        self,
        request: GenerationRequest,
        grammar: LlamaGrammar | None,
        emit: Callable[[object], None],
        cancelled: threading.Event,
    ) -> None:
        import llama_cpp

        if cancelled.is_set():  # given up while queued behind another generation
            return
        llm = self.llm
        params = request.params
        llm.set_seed(params.seed if params.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(params.stop)

        def finish(text: str, tokens: int, reason: FinishReason) -> None:
            tail, stopped = stops.feed(decoder.decode(b"", final=True))
            emit(Delta(text + tail + ("" if stopped else stops.flush()), tokens, reason))

        tokens = llm.generate(
            list(request.prompt_tokens),
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            temp=params.temperature,
            repeat_penalty=params.repeat_penalty,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            grammar=grammar,
        )
        if self._abort is not None:
            self._abort.watch(cancelled)
        for produced, token in enumerate(tokens, start=1):
            if produced == 1 and self._abort is not None:
                self._abort.watch(None)
            if cancelled.is_set():
                return
            eog = llama_cpp.llama_vocab_is_eog(vocab, token)
            if eog and not params.ignore_eos:
                finish("", 0, "stop")
                return
            piece = b"" if eog else llm.detokenize([token])
            text, stopped = stops.feed(decoder.decode(piece))
            if stopped:
                emit(Delta(text, 1, "stop"))
                return
            if produced >= params.max_tokens:
                finish(text, 1, "length")
                return
            emit(Delta(text, 1))

    async def health(self) -> bool:
        """Healthy while loaded."""
        return self._llm is not None

    async def close(self) -> None:
        """Free the context and the weights."""
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, llm.close)
        self._executor.shutdown(wait=False)


class _AbortHook:
    """llama.cpp's abort callback on one context: while it watches a flag, ``llama_decode``
    stops (returning 2, which llama-cpp-python raises) as soon as the flag is set."""

    def __init__(self, llm: Llama, setter: Any) -> None:
        import llama_cpp

        self._llm = llm
        self._setter = setter
        self._flag: threading.Event | None = None
        self._callback = llama_cpp.ggml_abort_callback(self._check)  # kept alive here
        self._none = llama_cpp.ggml_abort_callback()  # a NULL function pointer

    @classmethod
    def attach(cls, llm: Llama) -> _AbortHook | None:
        """A hook for ``llm``'s context, or None where this llama.cpp build lacks the call."""
        import llama_cpp

        setter = getattr(llama_cpp.llama_cpp._lib, "llama_set_abort_callback", None)
        if setter is None:
            logger.info("llama.cpp has no abort callback: prompt processing is not interruptible")
            return None
        setter.argtypes = [ctypes.c_void_p, llama_cpp.ggml_abort_callback, ctypes.c_void_p]
        setter.restype = None
        return cls(llm, setter)

    def _check(self, _: Any) -> bool:
        flag = self._flag
        return flag is not None and flag.is_set()

    def watch(self, flag: threading.Event | None) -> None:
        """Abort on ``flag`` (None: remove the callback). Called on the worker thread."""
        self._flag = flag
        callback = self._none if flag is None else self._callback
        self._setter(self._llm._ctx.ctx, callback, None)


def _grammar(constraint: JsonConstraint | None) -> LlamaGrammar | None:
    if constraint is None:
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if constraint.schema is None:
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    try:
        return LlamaGrammar.from_json_schema(json.dumps(constraint.schema), verbose=False)
    except Exception as exc:
        raise InvalidRequestError(
            f"unsupported JSON schema: {exc}", param="response_format.json_schema.schema"
        ) from exc
