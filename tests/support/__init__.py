"""Test support: real servers and in-process apps, fake settings, the shared tool schemas,
SSE parsing, the fake backend's accessors, batch and upstream helpers. Tests import what they
need from ``support`` (``pyproject.toml`` puts ``tests`` on the path), never from a conftest."""

from support.apps import done_loading, is_ready, model_states, open_client
from support.servers import RunningServer, free_port, run_server, started_llamacpp, wait_ready
from support.settings import NO_KEYS_FILE, fake_model, fake_settings
from support.sse import sse_events

__all__ = [
    "NO_KEYS_FILE",
    "RunningServer",
    "done_loading",
    "fake_model",
    "fake_settings",
    "free_port",
    "is_ready",
    "model_states",
    "open_client",
    "run_server",
    "sse_events",
    "started_llamacpp",
    "wait_ready",
]
