"""Backend name -> backend class, through the ``llmserver.backends`` entry-point group.

Built-in backends are declared in llmserver's own ``pyproject.toml`` under that group, so they
take exactly the path a third-party plugin takes. A backend module is imported only when a model
of that backend is configured, and its heavy library only when the model starts.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmserver.backends.base import BackendFactory
    from llmserver.config.model_configs import ModelConfig

GROUP = "llmserver.backends"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> list[str]:
    """Names of every registered backend."""
    return sorted(_entry_points())


def get(name: str) -> BackendFactory:
    """The backend class registered under ``name``."""
    try:
        entry = _entry_points()[name]
    except KeyError:
        known = ", ".join(available()) or "none"
        raise ValueError(f"unknown backend '{name}' (registered: {known})") from None
    factory: BackendFactory = entry.load()
    return factory


def config_type(name: str) -> type[ModelConfig]:
    """The config class a model of backend ``name`` is validated with."""
    return get(name).config_type
