"""Settings for in-process apps on the fake backend, with no API keys."""

from __future__ import annotations

from typing import Any

from llmserver.config.settings import Settings, load_settings


def fake_model(id: str = "fake", **extra: Any) -> dict[str, Any]:
    """A fake-backend model entry for a config."""
    return {"id": id, "backend": "fake", **extra}


#: a keys file that does not exist, so tests never pick up the developer's own API keys
NO_KEYS_FILE = "/nonexistent/llmserver-test/keys.json"


def fake_settings(*models: dict[str, Any], **settings: Any) -> Settings:
    """Settings serving fake models (one called ``fake`` by default), with no API keys."""
    settings.setdefault("keys_file", NO_KEYS_FILE)
    return load_settings({"models": list(models) or [fake_model()], **settings})
