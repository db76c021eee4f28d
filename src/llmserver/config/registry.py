"""Backend name -> backend plugin, through the ``llmserver.backends`` entry-point group.

Built-in backends are declared in llmserver's own ``pyproject.toml`` under that group, so they
take exactly the path a third-party plugin takes. A backend module is imported only when a model
of that backend is configured, and its heavy library only when the model starts.

This module is a leaf below the settings: it imports no backend (the entry points do, when
asked), so the settings can validate each model with its plugin's own config type without an
import that points up. What a plugin is to the rest of the server (a factory of backends) is
said by ``llmserver.backends.base.BackendFactory``; here it is only "what the entry point
names".
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from llmserver.config.model_configs import ModelConfig

GROUP = "llmserver.backends"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> list[str]:
    """Names of every registered backend."""
    return sorted(_entry_points())


def load(name: str) -> Any:
    """The plugin registered under ``name`` (a backend class, for the model manager)."""
    try:
        entry = _entry_points()[name]
    except KeyError:
        known = ", ".join(available()) or "none"
        raise ValueError(f"unknown backend '{name}' (registered: {known})") from None
    return entry.load()


def config_type(name: str) -> type[ModelConfig]:
    """The config class a model of backend ``name`` is validated with."""
    config: type[ModelConfig] = load(name).config_type
    return config
