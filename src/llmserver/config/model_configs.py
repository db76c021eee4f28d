"""Model configuration types: what every model has, and one config type per backend.

Each backend class names its type as ``config_type``; ``settings.py`` picks the type by the
entry's ``backend`` (or by :func:`choose_backend` when it is omitted).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

#: the daemon document's (seed 002) ``/chat`` wrap, for a model without a chat template
CHAT_WRAP = "[QUESTION]\n{prompt}\n[/QUESTION]\n\n[ANSWER]\n"


def _check_prompt_format(value: str) -> str:
    if value in ("template", "wrap") or "{prompt}" in value:
        return value
    raise ValueError("must be 'template', 'wrap' or a format string containing '{prompt}'")


#: how ``/chat`` turns its prompt into the model's input: ``template`` (the model's chat
#: template), ``wrap`` (:data:`CHAT_WRAP`) or a format string in which ``{prompt}`` is replaced
ChatPromptFormat = Annotated[str, AfterValidator(_check_prompt_format)]


def prompt_format_string(value: str) -> str | None:
    """The format string a ``chat_prompt_format`` setting stands for; None: the chat template."""
    if value == "template":
        return None
    return CHAT_WRAP if value == "wrap" else value


class SamplingDefaults(BaseModel):
    """Sampling values a model uses when a request leaves them out."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.8, ge=0, le=2, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling threshold.")
    top_k: int = Field(40, ge=0, description="Top-k sampling (0 disables).")
    min_p: float = Field(0.05, ge=0, le=1, description="Min-p sampling threshold.")
    repeat_penalty: float = Field(1.0, gt=0, description="Repetition penalty (1.0 is off).")
    max_tokens: int | None = Field(
        None, ge=1, description="Completion length when a request gives none (None: the rest)."
    )


class ResponseCacheConfig(BaseModel):
    """The exact-response cache of a model (off unless configured)."""

    model_config = ConfigDict(extra="forbid")

    max_entries: int = Field(256, ge=1, description="Responses kept (least recently used go).")
    ttl_s: float = Field(300.0, gt=0, description="Seconds a stored response is served.")
    share_across_keys: bool = Field(
        False,
        description="Serve one API key's stored responses to other keys (off: the key's name "
        "is part of the cache key).",
    )


class FimConfig(BaseModel):
    """A fill-in-the-middle format given in the config, for models whose metadata lacks one."""

    model_config = ConfigDict(extra="forbid")

    prefix: str = Field(min_length=1, description="Text before the code before the hole.")
    suffix: str = Field(min_length=1, description="Text before the code after the hole.")
    middle: str = Field(min_length=1, description="Text after which the model writes the hole.")
    order: Literal["psm", "spm"] = Field(
        "psm", description="`psm`: prefix, suffix, middle; `spm`: suffix, prefix, middle."
    )
    repo: str = Field("", description="Repository-name marker (repo-level formats); '': none.")
    file_sep: str = Field("", description="File separator (repo-level formats); '': none.")


#: where a reasoning model's thought goes on OpenAI's chat surface: one field, both, or left
#: in ``content`` between its markers
ReasoningField = Literal["reasoning_content", "reasoning", "both", "inline"]


class ReasoningConfig(BaseModel):
    """A reasoning model's thought format, for templates detection reads wrong."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["auto", "tags", "open", "none"] = Field(
        "auto",
        description="`auto`: detected from the chat template; `tags`: the thought is between "
        "`start` and `end`; `open`: as `tags`, but the reply starts inside the thought even "
        "when the prompt does not open it (DeepSeek-R1 distills that omit `<think>`); `none`: "
        "the model does not think.",
    )
    start: str = Field("<think>", min_length=1, description="Text that opens a thought.")
    end: str = Field("</think>", min_length=1, description="Text that ends a thought.")
    default: Literal["on", "off"] = Field(
        "on", description="Whether the model thinks when a request does not say."
    )
    budget: int | None = Field(
        None, ge=0, description="Thought tokens before the thought is ended; None: no limit."
    )
    field: ReasoningField | None = Field(
        None, description="OpenAI chat field of the thought; None: the server's reasoning_field."
    )


class PresetMessage(BaseModel):
    """A chat turn a model puts before every conversation (a few-shot example)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"] = Field(description="Who speaks.")
    content: str = Field(description="What is said.")


class ModelConfig(BaseModel):
    """What every configured model has, whatever its backend."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    id: str = Field(min_length=1, description="The id clients send as `model`.")
    aliases: list[str] = Field(default_factory=list, description="Other names for this model.")
    backend: str = Field(
        description="Backend name from the registry (llamacpp, upstream, fake, ...); "
        "omitted: chosen from `path` or `url`."
    )
    max_concurrent: int | None = Field(
        None,
        ge=1,
        description="Generation slots; None: max_concurrent_inference, at most what the backend "
        "can truly run at once.",
    )
    max_queue: int | None = Field(
        None, ge=0, description="Requests that may wait for a slot; None: the server's max_queue."
    )
    max_queue_wait_s: float | None = Field(
        None, gt=0, description="Longest wait for a slot, then 429; None: the server's value."
    )
    inference_timeout_s: float | None = Field(
        None, gt=0, description="Generation time limit, then 503; None: the server's value."
    )
    defaults: SamplingDefaults = Field(
        default_factory=SamplingDefaults, description="Default sampling parameters."
    )
    mask_pii: bool = Field(
        False, description="Mask personal data in prompts to this model on every endpoint."
    )
    pii_restore: bool = Field(
        False,
        description="Mask personal data in prompts as numbered placeholders (`[PHONE_1]`) and "
        "put the values back into the answer (implies `mask_pii`).",
    )
    chat_prompt_format: ChatPromptFormat | None = Field(
        None,
        description="How `/chat` makes this model's prompt: `template`, `wrap` or a format "
        "string with `{prompt}`; None: the server's `chat_prompt_format`.",
    )
    chat_template: str | None = Field(
        None,
        description="Jinja chat template used instead of the model's own: a file (relative to "
        "the config file) or the template text; None: the model's (an upstream applies its own).",
    )
    fim: FimConfig | None = Field(
        None,
        description="Fill-in-the-middle format {prefix, suffix, middle, order, repo, file_sep} "
        "(strings, parsed as the model's special tokens); None: the model's metadata (GGUF FIM "
        "token ids).",
    )
    reasoning: ReasoningConfig = Field(
        default_factory=ReasoningConfig,
        description="Thought format {format, start, end, default, budget, field} of a reasoning "
        "model (detected from the chat template when `format` is `auto`).",
    )
    response_cache: ResponseCacheConfig | None = Field(
        None,
        description="Answer identical deterministic requests (temperature 0 or a seed, no "
        "tools) from stored responses: {max_entries, ttl_s}; None: off.",
    )
    prompts: dict[str, str] = Field(
        default_factory=dict,
        description="Embedding prompts by name, put before the text: `query` (a search query, "
        "a rerank query), `document` (a passage, a rerank document) and any named ones a request "
        "asks for with `prompt_name` (e5: `query: ` / `passage: `).",
    )
    default_prompt_name: str | None = Field(
        None,
        description="The prompt an embedding request gets when it names none (`input_type`, "
        "`prompt_name`); None: no prompt.",
    )
    # model management
    preload: bool = Field(True, description="Load this model at start-up.")
    load_on_demand: bool = Field(
        False, description="Load on the first request when unloaded (else such requests get 503)."
    )
    pinned: bool = Field(
        False,
        description="Never evicted to make room for another model (a router, the embedder).",
    )
    # what a request gets unless it says otherwise (a Modelfile's SYSTEM and stop PARAMETERs)
    system: str | None = Field(
        None, description="System prompt put first in a chat that has none of its own."
    )
    stop: list[str] = Field(
        default_factory=list, description="Stop strings added to every request's own."
    )
    messages: list[PresetMessage] = Field(
        default_factory=list,
        description="Turns put before every chat's own (after the system prompt), as a "
        "Modelfile's MESSAGE lines: each {role, content}.",
    )
    derived_from: str | None = Field(
        None,
        description="Set from a `from: <model id>` entry (a variant of that model, sharing its "
        "weights where the engine allows); not written by hand.",
    )

    @field_validator("chat_template")
    @classmethod
    def _template_text(cls, value: str | None) -> str | None:
        return read_chat_template(value)

    @model_validator(mode="after")
    def _default_prompt_known(self) -> ModelConfig:
        name = self.default_prompt_name
        if name is not None and name not in self.prompts:
            raise ValueError(f"default_prompt_name '{name}' is not one of the model's prompts")
        return self


def read_chat_template(value: str | None) -> str | None:
    """The template text: ``value`` itself when it is Jinja, else the file it names."""
    if value is None or "{%" in value or "{{" in value:
        return value
    path = Path(value).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"chat template file cannot be read: {path}: {exc.strerror}") from None


class LoraAdapter(BaseModel):
    """A LoRA adapter file and the scale it is applied with."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="The adapter's .gguf file.")
    scale: float = Field(1.0, description="How strongly it applies (0: not at all).")

    @field_validator("path")
    @classmethod
    def _exists(cls, path: Path) -> Path:
        path = path.expanduser()
        if not path.is_file():
            raise ValueError(f"adapter file not found: {path}")
        return path


class SpeculativeConfig(BaseModel):
    """Speculative decoding of a llama.cpp model: guessed tokens verified in one step."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["ngram", "draft", "off"] = Field(
        "ngram",
        description="`ngram`: guesses from the request's own prompt and output (prompt lookup, "
        "no second model); `draft`: a smaller GGUF with the same vocabulary guesses; `off`.",
    )
    draft_model: Path | None = Field(
        None, description="The draft model's .gguf file (method `draft` only)."
    )
    max_tokens: int = Field(8, ge=1, le=64, description="Most tokens guessed for one step.")
    min_match: int = Field(
        2, ge=1, le=8, description="`ngram`: the shortest run of recent tokens that must recur."
    )

    @field_validator("draft_model")
    @classmethod
    def _draft_exists(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        path = path.expanduser()
        if not path.is_file():
            raise ValueError(f"draft model file not found: {path}")
        return path

    @model_validator(mode="after")
    def _draft_needs_file(self) -> SpeculativeConfig:
        if (self.method == "draft") != (self.draft_model is not None):
            raise ValueError("draft_model is set with method `draft`, and only then")
        return self

    @property
    def enabled(self) -> bool:
        """Whether guesses are made at all."""
        return self.method != "off"


class LlamaCppConfig(ModelConfig):
    """A GGUF model run in-process by llama.cpp (llama-cpp-python)."""

    backend: Literal["llamacpp"] = "llamacpp"
    path: Path = Field(description="Path to the .gguf file.")
    context_size: int | None = Field(
        None,
        ge=64,
        description="Context window per sequence in tokens; None: the length the model was "
        "trained for, halved until the KV cache of every slot fits in a quarter of the "
        "available memory (at least 4096).",
    )
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="CPU compute threads. auto: the cores this process may use (affinity, "
        "cgroup quota), fewer while other programs keep some of them busy, adapted while "
        "running; N: exactly N, never adapted.",
    )
    batch_size: int = Field(
        2048,
        ge=1,
        description="Tokens one engine step may carry (n_batch): the running sequences' next "
        "tokens plus prompt chunks; llama.cpp computes them in micro-batches of ubatch_size.",
    )
    ubatch_size: int = Field(
        512, ge=1, description="Tokens per llama.cpp compute pass (n_ubatch), at most batch_size."
    )
    gpu_layers: int = Field(0, description="Layers to offload to a GPU (-1: all).")
    embedding: bool = Field(
        False, description="Load as an embedding model: serves /v1/embeddings, not chat."
    )
    pooling: Literal["model", "mean", "cls", "last"] = Field(
        "model", description="Embedding pooling; model: the GGUF's own (chat models have none)."
    )
    rerank: bool = Field(
        False,
        description="Load as a reranker (llama.cpp rank pooling, as llama-server's --rerank): "
        "serves /v1/rerank, not chat.",
    )
    # continuous batching: max_concurrent (default 8) sequences share one context
    flash_attn: bool | None = Field(
        None,
        description="Flash attention: every query row computed alone, so a token's logits do not "
        "depend on what else its step decodes (changes numerics slightly). None: on with "
        "speculative decoding (which needs that to stay exact), off otherwise.",
    )
    speculative: SpeculativeConfig = Field(
        default_factory=lambda: SpeculativeConfig(method="off"),
        description="Speculative decoding: {method: ngram, draft or off; draft_model; "
        "max_tokens; min_match}. Off unless set.",
    )
    kv_unified: bool = Field(
        False,
        description="One KV buffer shared by all sequences (llama.cpp kv_unified); "
        "False: a stream of context_size cells per sequence.",
    )
    prefix_cache: bool = Field(
        True,
        description="Keep a finished request's KV cache and reuse its longest common prefix "
        "with the next prompt (llama-server's cache_prompt).",
    )
    adapters: list[LoraAdapter] = Field(
        default_factory=list,
        description="LoRA adapters (GGUF files from llama.cpp's convert_lora_to_gguf) applied to "
        "this model's context, each {path, scale}.",
    )
    prefix_cache_max_idle: int | None = Field(
        None,
        ge=0,
        description="Idle sequences whose KV cache is kept for reuse (least recently used go "
        "first); None: every free sequence.",
    )

    @model_validator(mode="after")
    def _one_pooling_role(self) -> LlamaCppConfig:
        if self.embedding and self.rerank:
            raise ValueError("a model is an embedding model or a reranker: set embedding or rerank")
        if self.speculative.enabled and (self.embedding or self.rerank):
            raise ValueError("speculative decoding is for generating models, not embedding/rerank")
        if self.speculative.enabled and self.flash_attn is False:
            raise ValueError(
                "speculative decoding needs flash_attn (without it a token's logits depend on "
                "how many tokens its step verifies, and the output would change)"
            )
        return self

    @field_validator("threads", mode="before")
    @classmethod
    def _threads_none_is_auto(cls, value: Any) -> Any:
        # an empty ``threads:`` (None) meant "one per core" before auto existed
        return "auto" if value is None else value

    @property
    def uses_flash_attn(self) -> bool:
        """Whether the context runs flash attention (see ``flash_attn``)."""
        if self.flash_attn is None:
            return self.speculative.enabled
        return self.flash_attn

    @field_validator("path")
    @classmethod
    def _file_exists(cls, path: Path) -> Path:
        path = path.expanduser()
        if path.is_dir():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            inside = f"; it holds {', '.join(ggufs[:5])}" if ggufs else "; it holds no .gguf file"
            raise ValueError(f"{path} is a directory, not a .gguf file{inside}")
        if not path.is_file():
            raise ValueError(f"model file not found: {path}")
        return path


class FakeConfig(ModelConfig):
    """The deterministic fake backend, for tests of the server and of client applications."""

    backend: Literal["fake"] = "fake"
    context_size: int = Field(2048, ge=16, description="Context window in (fake) tokens.")
    token_delay_s: float = Field(0.0, ge=0, description="Seconds to wait before each token.")
    load_delay_s: float = Field(0.0, ge=0, description="Seconds the fake model takes to load.")
    reply: str | None = Field(None, description="Fixed reply text; None: text derived from input.")
    fail_load: str | None = Field(None, description="Fail to load with this reason (for tests).")
    memory_bytes: int = Field(
        0, ge=0, description="Host memory the fake model says it takes (tests of residency)."
    )
    embedding_dimensions: int = Field(
        0, ge=0, description="Serve deterministic (Matryoshka) embeddings of this size; 0: none."
    )


class RemoteConfig(ModelConfig):
    """What every model served by another server over HTTP has."""

    url: list[str] = Field(min_length=1, description="Base URL, or a list of replicas.")
    upstream_model: str | None = Field(
        None, description="Model name sent upstream; None: this model's `id`."
    )
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the upstream API key."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers sent with every upstream request."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Seconds to connect to a replica.")
    read_timeout_s: float = Field(
        300.0, gt=0, description="Seconds to wait for the next bytes of an upstream answer."
    )
    context_size: int | None = Field(
        None, ge=64, description="Context window; sent to Ollama as `options.num_ctx`."
    )
    probe_interval_s: float = Field(
        2.0, gt=0, description="Seconds between health probes of a replica marked down."
    )
    _api_key: SecretStr | None = PrivateAttr(None)

    @field_validator("url", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"upstream url must start with http:// or https://: {url}")
        return [url.rstrip("/") for url in urls]

    @model_validator(mode="after")
    def _read_api_key(self) -> RemoteConfig:
        # the one place the secret is read; it is kept out of repr, dumps and logs
        if self.api_key_env is not None:
            value = os.environ.get(self.api_key_env)
            if not value:
                raise ValueError(f"environment variable {self.api_key_env} is not set")
            self._api_key = SecretStr(value)
        return self

    def api_key(self) -> str | None:
        """The upstream API key, when one is configured."""
        return self._api_key.get_secret_value() if self._api_key is not None else None


class UpstreamConfig(RemoteConfig):
    """Any OpenAI-compatible server: Ollama, vLLM, llama-server, LM Studio, LiteLLM, llmserver."""

    backend: Literal["upstream"] = "upstream"
    url: list[str] = Field(
        min_length=1,
        description="Base URL ending in /v1 (for example http://127.0.0.1:11434/v1), or a list "
        "of replicas serving the same model.",
    )
    rerank: bool = Field(
        False,
        description="A reranker: /v1/rerank and /v1/score go to the upstream's /rerank "
        "(vLLM, llama-server --rerank, llmserver), not chat.",
    )


class OllamaConfig(RemoteConfig):
    """An Ollama server, spoken to in Ollama's native API (`num_ctx`, `keep_alive` honoured)."""

    backend: Literal["ollama"] = "ollama"
    url: list[str] = Field(
        min_length=1,
        description="Ollama's base URL (for example http://127.0.0.1:11434; a trailing /v1 or "
        "/api is dropped), or a list of replicas serving the same model.",
    )
    context_size: int | None = Field(
        None,
        ge=64,
        description="Context window, sent as `options.num_ctx` with every request so long "
        "prompts are not cut at Ollama's default; None: Ollama's default.",
    )
    keep_alive: str | float | None = Field(
        None,
        description="Sent as `keep_alive` with every request (`30m`, `-1`: stay loaded); "
        "None: Ollama's default (5m).",
    )
    embedding: bool = Field(
        False, description="An embedding model: serves embeddings through Ollama's /api/embed."
    )
    warm_up: bool = Field(
        True, description="Load the model in Ollama at start-up (Ollama loads lazily otherwise)."
    )

    @field_validator("url")
    @classmethod
    def _base_url(cls, urls: list[str]) -> list[str]:
        out = []
        for url in urls:
            for suffix in ("/v1", "/api"):
                url = url.removesuffix(suffix)
            out.append(url)
        return out


def choose_backend(raw: Mapping[str, Any]) -> str:
    """The backend for a model entry without ``backend:``.

    A ``.gguf`` path means llamacpp; an http(s) URL means upstream; any other path (a model
    directory or a Hugging Face id) means vllm where vLLM is importable and CUDA is present,
    else transformers.
    """
    url, path = raw.get("url"), raw.get("path")
    first_url = url[0] if isinstance(url, list) and url else url
    if isinstance(first_url, str) and first_url.startswith(("http://", "https://")):
        return "upstream"
    if isinstance(path, str | Path):
        text = str(path)
        if text.startswith(("http://", "https://")):
            return "upstream"
        if text.lower().endswith(".gguf"):
            return "llamacpp"
        return "vllm" if _vllm_usable() else "transformers"
    raise ValueError("'backend' is required when neither 'path' nor 'url' is given")


def _vllm_usable() -> bool:
    # torch is imported only where vLLM is installed, which is the only place it can matter
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# -- transformers, vllm and embedding backends ----------------------------------------------

TorchDtype = Literal["auto", "float32", "float16", "bfloat16"]


def _local_path_exists(path: str) -> str:
    """A path that is clearly local (absolute, relative, ``~`` or a .gguf file) must exist;
    anything else may be a Hugging Face hub id."""
    local = Path(path).expanduser()
    looks_local = path.startswith(("/", "./", "../", "~")) or path.endswith(".gguf")
    if looks_local and not local.exists():
        raise ValueError(f"model path not found: {local}")
    return str(local) if looks_local else path


class _PathOrHubIdConfig(ModelConfig):
    """A model named by ``path``: a local path, which must exist, or a Hugging Face hub id."""

    path: str = Field(description="Model directory or Hugging Face hub id.")

    @field_validator("path")
    @classmethod
    def _path_exists(cls, path: str) -> str:
        return _local_path_exists(path)


class TransformersConfig(_PathOrHubIdConfig):
    """A Hugging Face model (directory or GGUF file) run in-process by Transformers (PyTorch)."""

    backend: Literal["transformers"] = "transformers"
    path: str = Field(
        description="Model directory, a .gguf file (loaded through Transformers) or a hub id."
    )
    device: str | None = Field(None, description="Torch device; None: cuda if available, else cpu.")
    dtype: TorchDtype = Field(
        "auto", description="Weight dtype; auto: the model's own on cuda, float32 on cpu."
    )
    context_size: int | None = Field(
        None, ge=16, description="Context window in tokens; None: the model's maximum."
    )
    trust_remote_code: bool = Field(False, description="Allow model code from the directory.")


class VllmConfig(_PathOrHubIdConfig):
    """A Hugging Face model served by vLLM's async engine in-process (CUDA)."""

    backend: Literal["vllm"] = "vllm"
    path: str = Field(description="Model directory or Hugging Face hub id.")
    tokenizer: str | None = Field(None, description="Tokenizer directory; None: the model's.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs to split each layer across.")
    pipeline_parallel_size: int = Field(1, ge=1, description="Pipeline stages (GPUs or nodes).")
    distributed_executor_backend: Literal["ray", "mp", "uni", "external_launcher"] | None = Field(
        None, description="How vLLM runs workers; ray spans several machines. None: vLLM's choice."
    )
    quantization: str | None = Field(None, description="Quantization method (awq, gptq, fp8...).")
    max_model_len: int | None = Field(None, ge=16, description="Context length; None: model's.")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Share of each GPU's memory vLLM may take."
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="Sequences batched at once; None: vLLM's default (256)."
    )
    dtype: str = Field("auto", description="Weight dtype (auto, float16, bfloat16, float32).")
    trust_remote_code: bool = Field(False, description="Allow model code from the directory.")
    enforce_eager: bool = Field(False, description="Disable CUDA graphs (less memory, slower).")
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="Further AsyncEngineArgs passed through unchanged."
    )


class SentenceTransformersConfig(_PathOrHubIdConfig):
    """An embedding model run by sentence-transformers (serves /v1/embeddings)."""

    backend: Literal["sentence_transformers"] = "sentence_transformers"
    path: str = Field(description="sentence-transformers model directory (or hub id).")
    device: str | None = Field(None, description="Torch device; None: cuda if available, else cpu.")
    batch_size: int = Field(32, ge=1, description="Inputs encoded per forward pass.")
    torch_threads: int | None = Field(
        1,
        ge=1,
        description="PyTorch CPU threads (process-wide); 1 keeps llama.cpp models in the same "
        "process at full speed (torch's default threads halve them); None: torch's default.",
    )
    matryoshka: bool = Field(
        False,
        description="Trained for truncated vectors: honour `dimensions` (truncate, renormalise).",
    )
    task: Literal["embed", "rerank"] = Field(
        "embed",
        description="`embed`: a SentenceTransformer (embeddings; reranks as a bi-encoder); "
        "`rerank`: a CrossEncoder reranker (bge-reranker, ms-marco), serving /v1/rerank only.",
    )
