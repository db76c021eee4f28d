"""Ollama's routes under ``/api``: generate, chat, embeddings, model listings, version, and the
model-store operations a configured server answers with an error (or, for ``pull`` of a
configured model, with Ollama's success stream)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from llmserver.core.caller import Caller
from llmserver.core.requests import ChatRequest, EmbedRequest, InfillRequest
from llmserver.core.service import Service
from llmserver.core.usage import Usage
from llmserver.errors import InvalidRequestError, ModelNotFoundError, NotFoundError
from llmserver.http.respond import (
    caller,
    json_response,
    respond_json,
    respond_stream,
    routed,
    service,
    track,
    track_usage,
)
from llmserver.http.streaming import Framing, ndjson_line
from llmserver.surfaces.ollama import modelfile, options, translate
from llmserver.surfaces.ollama import schemas as wire
from llmserver.surfaces.ollama.errors import ollama_error

router = APIRouter(prefix="/api")

#: one JSON object per line; an error after the first line is one ``{"error": ...}`` line
NDJSON = Framing("application/x-ndjson", ndjson_line, b"", None, ollama_error)
_LATEST = ":latest"
#: request bodies, read as JSON whatever their Content-Type (see :func:`wire.body`)
GenerateBody = Annotated[wire.GenerateRequest, Depends(wire.body(wire.GenerateRequest))]
ChatBody = Annotated[wire.ChatRequest, Depends(wire.body(wire.ChatRequest))]
EmbedBody = Annotated[wire.EmbedRequest, Depends(wire.body(wire.EmbedRequest))]
EmbeddingsBody = Annotated[wire.EmbeddingsRequest, Depends(wire.body(wire.EmbeddingsRequest))]
ShowBody = Annotated[wire.ShowRequest, Depends(wire.body(wire.ShowRequest))]
PullBody = Annotated[wire.PullRequest, Depends(wire.body(wire.PullRequest))]
CreateBody = Annotated[wire.CreateRequest, Depends(wire.body(wire.CreateRequest))]
CopyBody = Annotated[wire.CopyRequest, Depends(wire.body(wire.CopyRequest))]
DeleteBody = Annotated[wire.DeleteRequest, Depends(wire.body(wire.DeleteRequest))]


def model_name(svc: Service, who: Caller, name: str) -> str:
    """The configured name for an Ollama ``name:tag``: as given when it is known (ids may hold
    a tag), else without ``:latest``."""
    if not name:
        raise InvalidRequestError("model is required", param="model")
    if not name.endswith(_LATEST):
        return name
    try:
        svc.admin.model(who, name)
    except ModelNotFoundError:
        return name[: -len(_LATEST)]
    return name


async def _answer(
    request: Request,
    chunks: AsyncIterator[dict[str, Any]],
    stream: bool,
    headers: dict[str, str] | None = None,
) -> Response:
    if stream:
        return await respond_stream(request, chunks, NDJSON, headers)
    return await respond_json(request, translate.collect(chunks), headers)


def _keeper(
    svc: Service, who: Caller, name: str, seconds: float | bool | None
) -> Callable[[], None]:
    def keep() -> None:
        if seconds is not False:
            svc.admin.keep_loaded(who, name, None if seconds is None else float(seconds))

    return keep


async def _control(
    request: Request, kind: translate.Kind, shown: str, name: str, seconds: float | bool | None
) -> Response:
    """Load (or, with ``keep_alive: 0``, unload) the model: admin operations."""
    svc, who = service(request), caller(request)
    if seconds is not False and seconds is not None and seconds == 0:
        await svc.admin.unload(who, name)
        return json_response(translate.control(kind, shown, "unload"))
    await svc.admin.load(who, name)
    _keeper(svc, who, name, seconds)()
    return json_response(translate.control(kind, shown, "load"))


@router.post("/generate")
async def generate(request: Request, req: GenerateBody) -> Response:
    """``POST /api/generate``: a completion, streamed as NDJSON unless ``stream`` is false."""
    svc, who = service(request), caller(request)
    name = model_name(svc, who, req.model)
    seconds = options.keep_alive(req.keep_alive)
    if not (req.prompt or req.system or req.template or req.images):
        return await _control(request, "generate", req.model, name, seconds)
    core = translate.generate_request(req, name)
    if isinstance(core, ChatRequest):
        core, route = await routed(request, core, "ollama")
        gen = svc.chat(who, core)
    elif isinstance(core, InfillRequest):
        core, route = await routed(request, core, "ollama")
        gen = svc.infill(who, core)
    else:
        core, route = await routed(request, core, "ollama")
        gen = svc.text(who, core)
    track(request, gen, req.streams())
    serving = str(core.model) if route else name  # model "auto": the one that serves
    chunks = translate.chunks(
        gen,
        "generate",
        serving if route else req.model,
        stream=req.streams(),
        context=not req.raw and not isinstance(core, InfillRequest),
        after=_keeper(svc, who, serving, seconds),
    )
    return await _answer(request, chunks, req.streams(), route)


@router.post("/chat")
async def chat(request: Request, req: ChatBody) -> Response:
    """``POST /api/chat``: the next message, streamed as NDJSON unless ``stream`` is false."""
    svc, who = service(request), caller(request)
    name = model_name(svc, who, req.model)
    seconds = options.keep_alive(req.keep_alive)
    if not req.messages:
        return await _control(request, "chat", req.model, name, seconds)
    core, route = await routed(request, translate.chat_request(req, name), "ollama")
    gen = svc.chat(who, core)
    track(request, gen, req.streams())
    serving = str(core.model) if route else name  # model "auto": the one that serves
    chunks = translate.chunks(
        gen,
        "chat",
        serving if route else req.model,
        stream=req.streams(),
        context=False,
        after=_keeper(svc, who, serving, seconds),
    )
    return await _answer(request, chunks, req.streams(), route)


async def _vectors(
    request: Request, model: str, inputs: list[str], dimensions: int | None
) -> tuple[list[list[float]], int, float]:
    """Vectors, prompt tokens and seconds taken; no inputs only checks the model exists."""
    svc, who = service(request), caller(request)
    name = model_name(svc, who, model)
    started = time.perf_counter()
    if not inputs:
        svc.admin.model(who, name)
        return [], 0, time.perf_counter() - started
    result = await svc.embed(who, EmbedRequest(name, inputs, dimensions))
    track_usage(request, result.model, result.usage)
    return result.vectors, result.usage.prompt_tokens, time.perf_counter() - started


@router.post("/embed")
async def embed(request: Request, req: EmbedBody) -> Response:
    """``POST /api/embed``: one vector per input."""
    track_usage(request, req.model, Usage())
    inputs = ([req.input] if req.input else []) if isinstance(req.input, str) else req.input

    async def body() -> dict[str, Any]:
        vectors, tokens, seconds = await _vectors(request, req.model, inputs, req.dimensions)
        return {
            "model": req.model,
            "embeddings": vectors,
            "total_duration": round(seconds * 1e9),
            "load_duration": 0,
            "prompt_eval_count": tokens,
        }

    return await respond_json(request, body())


@router.post("/embeddings")
async def embeddings(
    request: Request,
    req: EmbeddingsBody,
) -> Response:
    """``POST /api/embeddings``: the legacy form, one prompt, one vector."""
    track_usage(request, req.model, Usage())

    async def body() -> dict[str, Any]:
        inputs = [req.prompt] if req.prompt else []
        vectors, _, _ = await _vectors(request, req.model, inputs, None)
        return {"embedding": vectors[0] if vectors else []}

    return await respond_json(request, body())


@router.get("/tags")
async def tags(request: Request) -> Response:
    """``GET /api/tags``: every model the caller may use, with what its file says."""
    svc, who = service(request), caller(request)
    entries = [
        translate.tag_entry(await svc.admin.details(who, v.id)) for v in svc.admin.models(who)
    ]
    return json_response({"models": entries})


@router.get("/ps")
async def ps(request: Request) -> Response:
    """``GET /api/ps``: the loaded models and when their idle timer unloads them."""
    svc, who = service(request), caller(request)
    entries = [
        translate.ps_entry(await svc.admin.details(who, v.id), svc.admin.expires_at(v.id))
        for v in svc.admin.models(who)
        if v.state == "ready"
    ]
    return json_response({"models": entries})


@router.post("/show")
async def show(request: Request, req: ShowBody) -> Response:
    """``POST /api/show``: template, parameters, details, GGUF metadata and capabilities."""
    svc, who = service(request), caller(request)
    name = model_name(svc, who, req.model or req.name)
    info = await svc.admin.details(who, name)
    return json_response(translate.show_body(info, svc.admin.recipe(who, name)))


@router.get("/version")
@router.head("/version")
async def version() -> Response:
    """``GET /api/version``: the Ollama API version this surface follows."""
    return json_response({"version": translate.OLLAMA_VERSION})


async def _pull_statuses(digest: str) -> AsyncIterator[dict[str, Any]]:
    yield {"status": "pulling manifest"}
    yield {"status": "verifying sha256 digest", "digest": f"sha256:{digest}"}
    yield {"status": "writing manifest"}
    yield {"status": "success"}


@router.post("/pull")
async def pull(request: Request, req: PullBody) -> Response:
    """``POST /api/pull``: a configured model is already here (Ollama's success stream);
    any other name cannot be downloaded."""
    svc, who = service(request), caller(request)
    asked = req.model or req.name
    name = model_name(svc, who, asked)
    try:
        info = await svc.admin.details(who, name)
    except ModelNotFoundError:
        raise NotFoundError(
            f"model '{asked}' is not configured on this server, and pulling models is not "
            "supported: add it to the server's configuration",
            param="model",
        ) from None
    if req.stream is False:
        return json_response({"status": "success"})
    return await respond_stream(request, _pull_statuses(info.digest), NDJSON)


def _unsupported(what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{what} is not supported by this server: models are set in its configuration file",
        code="unsupported_operation",
    )


async def _statuses(*statuses: str) -> AsyncIterator[dict[str, Any]]:
    for status in statuses:
        yield {"status": status}


@router.post("/create")
async def create(request: Request, req: CreateBody) -> Response:
    """``POST /api/create`` (admin): a model derived from another (a Modelfile or its JSON
    form), kept in the data directory; see :mod:`llmserver.surfaces.ollama.modelfile`."""
    svc, who = service(request), caller(request)
    name = (req.model or req.name).removesuffix(_LATEST)
    if not name:
        raise InvalidRequestError("model is required", param="model")
    for field in ("files", "license", "quantize"):
        if getattr(req, field):
            raise InvalidRequestError(
                f"'{field}' is not supported: create models from a configured one ('from')",
                param=field,
            )
    if req.modelfile:
        made = modelfile.parse(req.modelfile)
    else:
        turns = [(m.role, m.content) for m in req.messages or []]
        adapters = list((req.adapters or {}).values())  # blob digests, uploaded first
        made = modelfile.recipe(
            req.from_ or "", req.system, req.template, req.parameters, turns, adapters
        )
    base = model_name(svc, who, made.base)
    await svc.admin.create(who, name, dataclasses.replace(made, base=base))
    if req.stream is False:
        return json_response({"status": "success"})
    return await respond_stream(request, _statuses("creating model", "success"), NDJSON)


@router.post("/copy")
async def copy(request: Request, req: CopyBody) -> Response:
    """``POST /api/copy`` (admin): a new name for a model, sharing its weights."""
    svc, who = service(request), caller(request)
    if not req.source or not req.destination:
        raise InvalidRequestError("source and destination are required")
    source = model_name(svc, who, req.source)
    await svc.admin.copy(who, source, req.destination.removesuffix(_LATEST))
    return Response(status_code=200)


@router.delete("/delete")
async def delete(request: Request, req: DeleteBody) -> Response:
    """``DELETE /api/delete`` (admin): forget a model created with ``/api/create``."""
    svc, who = service(request), caller(request)
    await svc.admin.delete(who, model_name(svc, who, req.model or req.name))
    return Response(status_code=200)


@router.post("/push")
async def push() -> Response:
    """``POST /api/push``: not supported."""
    raise _unsupported("pushing models")


@router.head("/blobs/{digest}")
async def blob_exists(request: Request, digest: str) -> Response:
    """``HEAD /api/blobs/{digest}`` (admin): 200 when the file was uploaded, else 404."""
    found = service(request).admin.has_blob(caller(request), digest)
    return Response(status_code=200 if found else 404)


@router.post("/blobs/{digest}")
async def blob_upload(request: Request, digest: str) -> Response:
    """``POST /api/blobs/{digest}`` (admin): keep a file (a LoRA adapter) for ``/api/create``'s
    ``adapters``; its bytes must have the digest."""
    await service(request).admin.save_blob(caller(request), digest, request.stream())
    return Response(status_code=201)
