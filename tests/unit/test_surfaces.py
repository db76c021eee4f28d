"""The surface descriptors: what the app mounts comes from them, and the order between surfaces
cannot change which route answers (no two surfaces share a path)."""

from __future__ import annotations

from fastapi.routing import APIRoute

from llmserver.http.errors import openai_error
from llmserver.http.surface import error_shapes, line_handlers
from llmserver.surfaces.catalog import surfaces
from llmserver.surfaces.ollama.errors import ollama_error
from support import fake_settings


def _paths(router_routes: list[object]) -> set[str]:
    return {route.path for route in router_routes if isinstance(route, APIRoute)}


def test_no_two_surfaces_share_a_path() -> None:
    seen: dict[str, str] = {}
    for surface in surfaces(fake_settings()):
        for router in surface.routers:
            for path in _paths(list(router.routes)):
                assert path not in seen or seen[path] == surface.name, (path, seen[path])
                seen[path] = surface.name
    assert seen["/v1/chat/completions"] == seen["/api/v1/chat/completions"] == "openai"
    assert seen["/api/chat"] == "ollama"


def test_error_shapes_and_batch_lines_come_from_the_descriptors() -> None:
    described = surfaces(fake_settings())
    shapes = error_shapes(described)
    assert shapes.for_path("/api/chat") is ollama_error
    assert shapes.for_path("/api/v1/chat/completions") is openai_error  # the longer prefix
    assert shapes.for_path("/v1/chat/completions") is openai_error  # the default
    assert set(line_handlers(described)) == {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
    }
