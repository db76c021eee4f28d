"""The simple endpoints: ``/infer``, ``/infer/stream``, ``/generate`` and ``/chat``."""

from __future__ import annotations

from llmserver.config.settings import Settings
from llmserver.http.surface import Surface
from llmserver.surfaces.simple import errors, router


def surface(settings: Settings) -> Surface:
    """The simple endpoints, answering errors in their own shape and ``error_language``."""
    shape = errors.error_shape(settings.error_language)
    return Surface(
        "simple", (router.router,), error_shapes=tuple((path, shape) for path in router.PATHS)
    )
