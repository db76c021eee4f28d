"""Reading a YAML config file: its relative paths, and suggestions for mistyped keys."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from llmserver.config.errors import SettingsError

#: settings that name files; a relative one in a config file is relative to that file
PATH_SETTINGS = ("data_dir", "log_dir", "usage_db", "keys_file")


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
    return resolve_relative_paths(data, path.expanduser().resolve().parent)


def _relative(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not value.startswith(("/", "~", "http"))


def resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the file's relative paths relative to its own directory, not the working one
    (under systemd that is ``/``). A model ``path`` that is neither there nor clearly local
    (``./``, ``../``, ``.gguf``) is left alone: it may be a Hugging Face id."""
    out = dict(data)
    for name in PATH_SETTINGS:
        if _relative(out.get(name)):
            out[name] = str(base / out[name])
    models = out.get("models")
    if isinstance(models, list):
        out["models"] = [_resolve_model(m, base) for m in models]
    return out


def _resolve_model(entry: Any, base: Path) -> Any:
    if not isinstance(entry, dict):
        return entry
    entry = dict(entry)
    path = entry.get("path")
    if _relative(path):
        local = path.startswith(("./", "../")) or path.lower().endswith(".gguf")
        if local or (base / path).exists():
            entry["path"] = str(base / path)
    template = entry.get("chat_template")
    if _relative(template) and "{" not in template:
        entry["chat_template"] = str(base / template)
    return entry


def did_you_mean(key: str, candidates: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or nothing."""
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
