"""The settings reference as Markdown tables, generated from the field declarations."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from llmserver.config import registry
from llmserver.config.model_configs import ModelConfig, SamplingDefaults
from llmserver.config.settings import Settings

BEGIN = "<!-- settings-table:begin -->"
END = "<!-- settings-table:end -->"


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Annotated:  # a constrained type: its base
        return _type_name(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation)).replace("|", "\\|")


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        return f"`{field.default}`"
    if field.default_factory is None:
        return "required"
    if field.default_factory in (list, dict):
        return "`[]`" if field.default_factory is list else "`{}`"
    return "see description"


def _table(model: type[BaseModel], env_prefix: str | None, skip: set[str]) -> list[str]:
    head = "| setting | type | default | description |"
    if env_prefix is not None:
        head = "| setting | environment | type | default | description |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        cells = [f"`{name}`"]
        if env_prefix is not None:
            file_only = name in {"models", "roles"}
            env = "config file only" if file_only else f"`{env_prefix}{name.upper()}`"
            cells.append(env)
        cells += [_type_name(field.annotation), _default(field), field.description or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown() -> str:
    """Every settings table: the server, the common model fields, then each backend's own."""
    out = [BEGIN, "", "Server settings (flag `--name-with-dashes`, environment, or config file):"]
    out.append("")
    out += _table(Settings, "LLMSERVER_", set())
    out += ["", "Fields of every entry in `models:`:", ""]
    out += _table(ModelConfig, None, set())
    out += ["", "`defaults:` of a model (used when a request leaves a value out):", ""]
    out += _table(SamplingDefaults, None, set())
    common = set(ModelConfig.model_fields)
    for name in registry.available():
        config = registry.config_type(name)
        out += ["", f"Backend `{name}` ({(config.__doc__ or '').strip()}) adds:", ""]
        out += _table(config, None, common)
    out += ["", END]
    return "\n".join(out)
