"""What a surface tells the app about itself: one :class:`Surface` per wire protocol.

Each surface package exports a ``surface(settings)`` function returning its descriptor; the app
mounts the routers of every descriptor in the catalog's order, gathers their error shapes and
hands their batch-line handlers to the jobs. Adding a surface is a folder and one line in
:mod:`llmserver.surfaces.catalog`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fastapi import APIRouter

from llmserver.http.errors import ErrorShape, ErrorShapes
from llmserver.jobs.lines import LineHandler, LineHandlers


def _no_handlers() -> Mapping[str, LineHandler]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Surface:
    """One wire protocol as the app mounts it."""

    name: str
    #: matched in this order, after the routers of the surfaces listed before this one
    routers: tuple[APIRouter, ...]
    #: (path prefix, shape) for the paths this surface answers in its own error shape
    error_shapes: tuple[tuple[str, ErrorShape], ...] = ()
    #: the endpoints a batch line may target, by path
    batch_lines: Mapping[str, LineHandler] = field(default_factory=_no_handlers)


def error_shapes(surfaces: Iterable[Surface]) -> ErrorShapes:
    """Every surface's error shapes, by path prefix."""
    return ErrorShapes(tuple(pair for surface in surfaces for pair in surface.error_shapes))


def line_handlers(surfaces: Iterable[Surface]) -> LineHandlers:
    """Every surface's batch-line handlers, by endpoint path."""
    return {path: h for surface in surfaces for path, h in surface.batch_lines.items()}
