"""GGUF models run in-process by llama.cpp through llama-cpp-python, with continuous batching.

One llama.cpp context holds ``max_concurrent`` sequences (default :data:`DEFAULT_PARALLEL`);
a single engine thread (:mod:`llmserver.backends.llamacpp_engine`) runs them together, one
``llama_decode`` per step, so concurrent requests share each pass over the weights. Each
sequence gets ``context_size`` tokens of its own KV cache. A model with ``embedding: true``
serves ``/v1/embeddings`` instead (:mod:`llmserver.backends.llamacpp_embed`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from collections.abc import Sequence as Inputs
from typing import Any, ClassVar, Literal

from llmserver.backends.base import (
    Delta,
    EmbeddingInput,
    EmbeddingResult,
    EmbeddingSpec,
    GenerationRequest,
    ModelLoadError,
    PromptFormat,
    utf8,
)
from llmserver.backends.cpu_threads import ThreadGovernor, usable_cpus
from llmserver.backends.llamacpp_context import default_context
from llmserver.backends.llamacpp_draft import load_draft
from llmserver.backends.llamacpp_embed import LlamaEmbedder
from llmserver.backends.llamacpp_engine import BatchEngine, LogitsHook, Sequence
from llmserver.backends.llamacpp_fim import fim_tokens
from llmserver.backends.llamacpp_lora import apply_adapters
from llmserver.backends.llamacpp_memory import buffer_sizes
from llmserver.backends.llamacpp_sampling import build_grammar, build_sampler, free_sampler
from llmserver.backends.llamacpp_spec import Speculator
from llmserver.backends.llamacpp_thought import ThoughtTracker
from llmserver.backends.scoring import Pair, ScoreResult, ScoringSpec
from llmserver.config.model_configs import LlamaCppConfig, ModelConfig
from llmserver.errors import EngineError, InvalidRequestError

logger = logging.getLogger("llmserver.backends.llamacpp")

#: parallel sequences (and slots) when ``max_concurrent`` is not set
DEFAULT_PARALLEL = 8


def load_progress_logger(model_id: str, steps: int = 4) -> Callable[[float, Any], bool]:
    """A llama.cpp load-progress callback that logs each quarter of the weights read."""
    done = [-1]

    def report(progress: float, _user_data: Any) -> bool:
        step = int(progress * steps)
        if step > done[0]:
            done[0] = step
            logger.info("model %s: weights %d%% loaded", model_id, 100 * step // steps)
        return True  # False would abort the load

    return report


def _piece(vocab: Any, token: int) -> bytes:
    """One token's bytes, special tokens written out (a fresh buffer: the engine's own is busy
    on its thread, and llama-cpp-python's ``token_to_piece`` returns the whole buffer)."""
    import ctypes

    import llama_cpp

    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, True)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, True)
    return buf.raw[:n]


class LlamaCppBackend:
    """A GGUF model in a llama.cpp context shared by up to ``max_concurrent`` sequences."""

    config_type: ClassVar[type[ModelConfig]] = LlamaCppConfig
    max_parallel: ClassVar[int] = DEFAULT_PARALLEL
    #: reports token log probabilities (``logprobs``)
    logprobs: ClassVar[Literal[True]] = True
    #: budgets thoughts and applies a constraint only after the thought
    follows_thoughts: ClassVar[Literal[True]] = True

    def __init__(self, config: LlamaCppConfig) -> None:
        self.config = config
        self.n_seq = config.max_concurrent or DEFAULT_PARALLEL
        self._model: Any = None  # llama_cpp._internals.LlamaModel
        self._ctx: Any = None  # llama_context*
        self._engine: BatchEngine | None = None
        self._bos_text = ""
        self._add_bos = False
        #: test hook: set to receive each sequence's next-token logits
        self.logits_hook: LogitsHook | None = None
        pools = config.embedding or config.rerank
        self._embedder = LlamaEmbedder(config) if pools else None
        #: bytes by device llama.cpp allocated for the loaded model (its buffers)
        self._memory: dict[str, int] | None = None
        #: the backend whose loaded model this one shares (a derived model); None: its own
        self._base: LlamaCppBackend | None = None
        #: the loaded model is this backend's own (else the base's, only borrowed)
        self._owns_model = True
        #: LoRA adapters loaded against the model this backend owns (file -> adapter)
        self._lora: dict[str, Any] = {}
        #: compute threads the context was created with
        self._threads = 0

    @property
    def engine(self) -> BatchEngine:
        """The running batch engine."""
        if self._engine is None:
            raise EngineError("model is not loaded")
        return self._engine

    async def start(self) -> None:
        """Load the GGUF file and create the context off the event loop."""
        loop = asyncio.get_running_loop()
        with buffer_sizes() as sizes:
            if self._embedder is not None:
                llm = await loop.run_in_executor(None, self._embedder.load)
                self._model = llm._model
            else:
                await loop.run_in_executor(None, self._load)
        self._memory = sizes or None
        model = self._model
        bos = model.token_bos()
        self._bos_text = model.token_get_text(bos) if bos != -1 else ""
        self._add_bos = bos != -1 and model.add_bos_token()

    def _load(self) -> None:
        try:
            import llama_cpp
            from llama_cpp import _internals
            from llama_cpp._logger import set_verbose
        except ImportError as exc:
            raise ModelLoadError(
                "llama-cpp-python is not installed: pip install 'llmserver[llamacpp]'"
            ) from exc
        cfg = self.config
        set_verbose(False)
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 0x7FFFFFFF if cfg.gpu_layers == -1 else cfg.gpu_layers
        # held in a local for the whole load: ctypes frees a callback nobody references
        progress = llama_cpp.llama_progress_callback(load_progress_logger(cfg.id))
        mparams.progress_callback = progress
        base = self._base
        self._owns_model = base is None or base._model is None
        if base is not None and base._model is not None:
            self._model = base._model  # the base's weights: only a context of our own
        else:
            base = None
            try:
                # verbose=True only stops llama-cpp-python from pointing stdout and stderr at
                # /dev/null during the load (which would swallow the progress lines);
                # llama.cpp's own messages stay off through set_verbose(False) above
                self._model = _internals.LlamaModel(
                    path_model=str(cfg.path), params=mparams, verbose=True
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise ModelLoadError(f"model load failed: {cfg.path}: {exc}") from exc
        usable = usable_cpus()
        threads = usable if cfg.threads == "auto" else cfg.threads
        n_batch = max(cfg.batch_size, self.n_seq)
        cparams = llama_cpp.llama_context_default_params()
        context = cfg.context_size or default_context(self._model.model, cfg.id, self.n_seq)
        cparams.n_ctx = context * self.n_seq
        cparams.n_batch = n_batch
        cparams.n_ubatch = min(cfg.ubatch_size, n_batch)
        cparams.n_seq_max = self.n_seq
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.kv_unified = cfg.kv_unified
        cparams.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if cfg.uses_flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cparams.no_perf = True
        ctx = llama_cpp.llama_init_from_model(self._model.model, cparams)
        if not ctx:
            self._release_model()
            raise ModelLoadError(f"could not create a llama.cpp context for {cfg.path}")
        self._ctx = ctx
        owner = base if base is not None else self
        apply_adapters(owner._lora, self._model.model, ctx, cfg.adapters, cfg.id)
        n_ctx_seq = min(llama_cpp.llama_n_ctx_seq(ctx), context)
        speculator = None
        spec = cfg.speculative
        if spec.enabled:
            draft = None
            if spec.draft_model is not None:
                try:
                    draft = load_draft(
                        spec.draft_model, self._model.model, self.n_seq, n_ctx_seq, n_batch, threads
                    )
                except ModelLoadError:
                    llama_cpp.llama_free(ctx)
                    self._ctx = None
                    self._release_model()
                    raise
            speculator = Speculator(spec, draft)
            logger.info(
                "%s: speculative decoding (%s, up to %d tokens a step)",
                cfg.id,
                spec.draft_model or "prompt lookup",
                spec.max_tokens,
            )
        governor = None
        if cfg.threads == "auto" and usable > 1:

            def apply(n: int) -> None:
                llama_cpp.llama_set_n_threads(ctx, n, n)
                if speculator is not None and speculator.draft is not None:
                    speculator.draft.set_threads(n, n)

            governor = ThreadGovernor(usable, apply, cfg.id)
        self._threads = threads
        self._engine = BatchEngine(
            self._model.model,
            ctx,
            self.n_seq,
            n_batch,
            n_ctx_seq,
            prefix_cache=cfg.prefix_cache,
            max_idle=cfg.prefix_cache_max_idle,
            threads=governor,
            speculator=speculator,
        )

    def prompt_format(self) -> PromptFormat:
        """Chat template and special tokens from the GGUF metadata."""
        model = self._loaded()
        eos = model.token_eos()
        return PromptFormat(
            chat_template=model.metadata().get("tokenizer.chat_template"),
            bos_token=self._bos_text,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            context_length=self._context_length(),
            fim=fim_tokens(model),
        )

    def _context_length(self) -> int:
        if self._embedder is not None and self._embedder.llm is not None:
            return int(self._embedder.llm.n_ctx())
        return self.engine.n_ctx_seq

    def embedding_spec(self) -> EmbeddingSpec | None:
        """Embedding abilities when loaded with ``embedding: true``; else None."""
        return self._embedder.spec() if self._embedder is not None else None

    async def embed(self, inputs: Inputs[EmbeddingInput]) -> EmbeddingResult:
        """Pooled, L2-normalised vectors of an embedding model."""
        if self._embedder is None:
            raise InvalidRequestError(
                f"model '{self.config.id}' serves no embeddings", param="model"
            )
        return await self._embedder.embed(inputs)

    def scoring_spec(self) -> ScoringSpec | None:
        """Rank pooling (``rerank: true``) or a bi-encoder (``embedding: true``); else None."""
        return self._embedder.scoring_spec() if self._embedder is not None else None

    async def score(self, pairs: Inputs[Pair], truncate: bool) -> ScoreResult:
        """One relevance score per (query, document) pair."""
        if self._embedder is None:
            raise InvalidRequestError(f"model '{self.config.id}' does not rerank", param="model")
        return await self._embedder.score(pairs, truncate)

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a rendered prompt; BOS added when the model wants it and it is absent."""
        add_bos = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        return list(self._loaded().tokenize(utf8(text), add_bos=add_bos, special=True))

    def tokenize_text(self, text: str, add_special: bool) -> list[int]:
        """Tokens of ``text`` with special tokens parsed; BOS only when ``add_special`` and the
        model wants one."""
        add_bos = add_special and self._add_bos
        return list(self._loaded().tokenize(utf8(text), add_bos=add_bos, special=True))

    def detokenize(self, tokens: Inputs[int]) -> str:
        """The text of ``tokens``, special tokens written out."""
        return self.token_bytes(tokens).decode("utf-8", errors="replace")

    def token_bytes(self, tokens: Inputs[int]) -> bytes:
        """The bytes of ``tokens``, piece by piece (llama.cpp's own detokenize drops a leading
        space after BOS, which would break a round trip)."""
        model = self._loaded()
        vocab = model.n_vocab()
        if any(not 0 <= t < vocab for t in tokens):  # llama.cpp would read past its vocabulary
            raise InvalidRequestError(
                f"token ids must be between 0 and {vocab - 1}", param="tokens"
            )
        return b"".join(_piece(model.vocab, t) for t in tokens)

    def token_piece(self, token: int) -> str:
        """One token's text."""
        return self.token_bytes([token]).decode("utf-8", errors="replace")

    def _loaded(self) -> Any:
        if self._model is None:
            raise EngineError("model is not loaded")
        return self._model

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Join the running batch and relay this sequence's deltas."""
        if self._embedder is not None:
            kind, path = (
                ("a reranker", "/v1/rerank")
                if self.config.rerank
                else (
                    "an embedding model",
                    "/v1/embeddings",
                )
            )
            raise InvalidRequestError(
                f"model '{self.config.id}' is {kind}; use {path}", param="model"
            )
        engine = self.engine
        if not request.prompt_tokens:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        sampler, thought = self._samplers(request)
        seq = Sequence(
            prompt=list(request.prompt_tokens),
            params=request.params,
            sampler=sampler,
            loop=asyncio.get_running_loop(),
            on_logits=self.logits_hook,
            name=request.request_id,
            thought=thought,
            draft=None if engine.speculator is None else engine.speculator.start(),
        )
        try:
            engine.submit(seq)
        except BaseException:
            free_sampler(sampler)
            if thought is not None:
                thought.close()
            raise
        finished = False
        try:
            while not finished:
                item = await seq.queue.get()
                if isinstance(item, Exception):
                    raise item
                finished = item.finish_reason is not None
                yield item
        finally:
            if not finished:
                engine.cancel(seq)
            # the slot is not free until the engine has dropped the sequence's cache
            assert seq.released is not None
            await asyncio.shield(seq.released)

    def _samplers(self, request: GenerationRequest) -> tuple[Any, ThoughtTracker | None]:
        """The sequence's sampler chain and, for a thought, its tracker: the constraint's
        grammar goes on a second chain that replaces the first when the thought ends."""
        engine = self.engine
        spec = request.thought
        follows = spec is not None and not spec.drop
        grammar = build_grammar(engine.vocab, request.constraint)
        deferred = follows and grammar is not None
        try:
            sampler = build_sampler(
                engine.vocab, engine.n_vocab, request.params, None if deferred else grammar
            )
        except BaseException:
            free_sampler(grammar)
            raise
        if not follows or spec is None:
            return sampler, None
        after = None
        try:
            if deferred:
                after = build_sampler(engine.vocab, engine.n_vocab, request.params, grammar)
            end = self.tokenize_text(spec.end, add_special=False)
        except BaseException:
            free_sampler(sampler)
            free_sampler(after if after is not None else grammar)
            raise
        return sampler, ThoughtTracker(spec, end, after)

    def compute_threads(self) -> int | None:
        """The CPU threads the model computes with now (``threads: auto`` moves it while
        generating); None when not loaded."""
        if self._embedder is not None:
            return self._embedder.threads if self._embedder.llm is not None else None
        engine = self._engine
        if engine is None:
            return None
        return engine.threads.threads if engine.threads is not None else self._threads

    def loaded_memory(self) -> dict[str, int] | None:
        """Bytes by device of the buffers llama.cpp allocated (weights, KV cache, compute)."""
        return self._memory if self._model is not None else None

    async def health(self) -> bool:
        """Healthy while loaded."""
        return self._engine is not None or self.scoring_spec() is not None

    async def close(self) -> None:
        """Stop the engine, then free the context and the weights."""
        if self._embedder is not None:
            self._model = None  # the embedder's Llama owns it
            await asyncio.get_running_loop().run_in_executor(None, self._embedder.close)
            return
        engine, self._engine = self._engine, None
        await asyncio.get_running_loop().run_in_executor(None, self._free, engine)

    def _free(self, engine: BatchEngine | None) -> None:
        import llama_cpp

        if engine is not None:
            engine.close()
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        self._release_model()

    def _release_model(self) -> None:
        """Close the model if this backend owns it (its adapters go with it); a shared one is
        only let go of."""
        if self._model is not None and self._owns_model:
            self._model.close()
            self._lora.clear()
        self._model = None

    def share_weights(self, base: object) -> None:
        """Use ``base``'s loaded model instead of loading the file again (a derived model);
        ignored for another engine or an embedding model."""
        if isinstance(base, LlamaCppBackend) and self._embedder is None:
            self._base = base
