"""The OpenAI embeddings surface."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmserver.http.respond import (
    CLIENT_CLOSED,
    ClientDisconnected,
    access,
    json_response,
    manager,
    until_disconnect,
)
from llmserver.core.embeddings import create_embeddings
from llmserver.surfaces.openai.schemas import EmbeddingRequest
from llmserver.core.service import Usage

router = APIRouter(prefix="/v1")


@router.post("/embeddings")
async def embeddings(request: Request, req: EmbeddingRequest) -> Response:
    """``POST /v1/embeddings``."""
    record = access(request)
    usage = Usage()
    record.model, record.usage, record.streamed = req.model, usage, False
    try:
        body = await until_disconnect(request, create_embeddings(manager(request), req, usage))
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)
    record.model = body["model"]
    return json_response(body)
