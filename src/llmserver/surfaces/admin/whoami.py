"""``GET /admin/whoami``: the smallest admin endpoint; says which key is calling."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from llmserver.http.respond import api_key, json_response, require_admin

router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


@router.get("/whoami")
async def whoami(request: Request) -> Response:
    """The calling key's name and permissions (never its text); ``null`` without keys."""
    key = api_key(request)
    if key is None:
        return json_response({"key": None})
    return json_response(
        {"key": {"name": key.name, "admin": key.admin, "models": key.models or None}}
    )
