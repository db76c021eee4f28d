"""The Responses API's routes: create (streamed, stored, in the background), retrieve (or
replay the stream), delete, cancel, list input items, count input tokens.

Generation goes through the service's one chat path, as ``/v1/chat/completions`` does (the
same keys, per-key models, masking, limits and accounting); what is stored is the key's own:
another key's response is a 404.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from llmserver.core.caller import Caller
from llmserver.core.generation import Generation
from llmserver.errors import InvalidRequestError, NotFoundError
from llmserver.http.context import app_context
from llmserver.http.respond import (
    access,
    caller,
    json_response,
    respond_json,
    respond_stream,
    routed,
    service,
    track,
)
from llmserver.jobs.response_runs import LiveRun, ResponseRuns
from llmserver.jobs.response_store import StoredResponse
from llmserver.surfaces.responses import translate
from llmserver.surfaces.responses.echo import RESPONSES_SSE, head
from llmserver.surfaces.responses.schemas import (
    Conversation,
    CreateResponseRequest,
    InputTokensRequest,
)
from llmserver.surfaces.responses.stream import Event, ResponseBuilder, events, final, response_id
from llmserver.surfaces.responses.truncation import fit

router = APIRouter(prefix="/v1/responses")


def runs(request: Request) -> ResponseRuns:
    """The app's stored responses and background runs."""
    return app_context(request.app).responses


def _owner(who: Caller) -> str:
    return who.name or ""


def _missing(response_id: str, param: str | None = None) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.", param=param)


async def _stored(request: Request, response_id: str, param: str | None = None) -> StoredResponse:
    """The caller's stored response (a 404 for an unknown id or another key's)."""
    owner = _owner(caller(request))
    found = await asyncio.to_thread(runs(request).store.get, response_id, owner, int(time.time()))
    if found is None:
        raise _missing(response_id, param)
    return found


async def _earlier(request: Request, req: Conversation) -> list[translate.Item]:
    """The conversation a ``previous_response_id`` continues: its items and its output."""
    if req.previous_response_id is None:
        return []
    prev = await _stored(request, req.previous_response_id, "previous_response_id")
    if prev.status not in ("completed", "incomplete"):
        raise InvalidRequestError(
            f"Previous response '{prev.id}' has status '{prev.status}'; only a completed "
            "response can be continued",
            param="previous_response_id",
        )
    return [*prev.conversation, *prev.body["output"]]


async def _translated(
    request: Request, req: Conversation, earlier: list[translate.Item]
) -> tuple[translate.Translated, dict[str, str]]:
    """The core's request for ``req``, cut to the model's context with ``truncation: auto``;
    ``model: "auto"`` routed first; the route header for the response."""
    translated = translate.chat_request(req, earlier)
    chat, headers = await routed(request, translated.chat, "openai")
    translated = dataclasses.replace(translated, chat=chat)
    if req.truncation != "auto":
        return translated, headers
    try:
        fitted = await fit(service(request), caller(request), req.instructions, translated)
        return fitted, headers
    except InvalidRequestError as exc:
        raise translate.in_responses_terms(exc, translated.tools.paths) from None


async def _generation(
    request: Request, req: Conversation, earlier: list[translate.Item]
) -> tuple[Generation, translate.Translated, dict[str, str]]:
    translated, headers = await _translated(request, req, earlier)
    try:
        gen = service(request).chat(caller(request), translated.chat)
    except InvalidRequestError as exc:
        raise translate.in_responses_terms(exc, translated.tools.paths) from None
    return gen, translated, headers


@router.post("")
async def create_response(request: Request, req: CreateResponseRequest) -> Response:
    """``POST /v1/responses``."""
    if req.background and req.store is False:
        raise InvalidRequestError("background responses need store: true", param="background")
    gen, translated, headers = await _generation(request, req, await _earlier(request, req))
    namespaces = translated.tools.namespaces
    builder = ResponseBuilder(response_id(gen), gen.model, head(req), gen.created, namespaces)
    record = None
    if req.store is not False:
        now = int(time.time())
        retention = int(runs(request).retention_s)
        record = StoredResponse(
            builder.body["id"],
            _owner(caller(request)),
            now,
            now + retention,
            builder.body,
            translated.inputs,
            translated.conversation,
        )
        if runs(request).purge_due(now):
            await asyncio.to_thread(runs(request).store.purge, now)
    if req.background:
        assert record is not None
        return await _background(request, gen, builder, record, bool(req.stream), headers)
    track(request, gen, bool(req.stream))
    if req.stream:
        stream = _recorded(request, events(gen, builder, "after_start"), record)
        return await respond_stream(request, stream, RESPONSES_SSE, headers)
    body = final(_recorded(request, events(gen, builder), record))
    return await respond_json(request, body, headers)


async def _recorded(
    request: Request, stream: AsyncIterator[Event], record: StoredResponse | None
) -> AsyncIterator[Event]:
    """The events, stored with the response once the run has ended (``store: false``: as
    they are)."""
    sent: list[Event] = []
    async for event in stream:
        sent.append(event)
        yield event
    if record is not None:
        record.body, record.events = sent[-1]["response"], sent
        await asyncio.to_thread(runs(request).store.put, record)


async def _background(
    request: Request,
    gen: Generation,
    builder: ResponseBuilder,
    record: StoredResponse,
    stream: bool,
    headers: dict[str, str],
) -> Response:
    """Start the run in a task of the app's and answer at once: the queued response, or a
    stream that follows the run (the run goes on if the client leaves)."""
    all_runs, who = runs(request), caller(request)
    record_of = access(request)  # the log names the model; the run's usage is charged at its end
    record_of.model, record_of.backend = gen.model, gen.backend
    record.body = dict(builder.body)
    await asyncio.to_thread(all_runs.store.put, record)
    live = LiveRun(builder.body)

    async def work() -> None:
        try:
            async for event in events(gen, builder, "always"):
                live.add(event)
        except asyncio.CancelledError:
            builder.cancel()
            raise
        finally:
            live.end()
            record.body, record.events = builder.body, live.events
            await asyncio.shield(asyncio.to_thread(all_runs.store.put, record))
            await all_runs.count(who, gen.model, gen.usage)

    all_runs.start(record.id, live, work())
    if stream:
        return await respond_stream(request, live.follow(-1), RESPONSES_SSE, headers)
    return json_response(record.body, headers=headers)


@router.get("/{response_id}")
async def get_response(
    request: Request,
    response_id: str,
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=-1)] = None,
) -> Response:
    """``GET /v1/responses/{id}``; with ``stream=true`` its events after ``starting_after``
    (a background run's as they come)."""
    # the live run first: it leaves the registry only once its end is stored, so either it
    # is found here or the stored record read next is its last version
    live = runs(request).live.get(response_id)
    record = await _stored(request, response_id)  # and the caller's (another key: 404)
    after = -1 if starting_after is None else starting_after
    if stream:
        if live is not None:
            return await respond_stream(request, live.follow(after), RESPONSES_SSE)
        replay = [e for e in record.events or () if e["sequence_number"] > after]
        return await respond_stream(request, _replay(replay), RESPONSES_SSE)
    if starting_after is not None:
        raise InvalidRequestError("starting_after needs stream=true", param="starting_after")
    return json_response(live.body if live is not None else record.body)


async def _replay(stored: list[Event]) -> AsyncIterator[Event]:
    for event in stored:
        yield event


@router.delete("/{response_id}")
async def delete_response(request: Request, response_id: str) -> Response:
    """``DELETE /v1/responses/{id}`` (a background run still going is cancelled first)."""
    record = await _stored(request, response_id)
    await runs(request).cancel(record.id)
    await asyncio.to_thread(runs(request).store.delete, record.id, record.owner)
    return json_response({"id": record.id, "object": "response", "deleted": True})


@router.post("/{response_id}/cancel")
async def cancel_response(request: Request, response_id: str) -> Response:
    """``POST /v1/responses/{id}/cancel``: stop a background run; the response is
    ``cancelled`` (cancelling one already cancelled gives it back as it is)."""
    record = await _stored(request, response_id)
    if not record.body.get("background"):
        raise InvalidRequestError(
            "Only responses created with background: true can be cancelled.", param=None
        )
    live = runs(request).live.get(record.id)
    await runs(request).cancel(record.id)
    if live is not None and live.body["status"] == "cancelled" and not live.events:
        # cancelled before it ever ran: nothing stored its end
        record.body = live.body
        await asyncio.to_thread(runs(request).store.put, record)
    record = await _stored(request, response_id)  # as the run left it (it may just have ended)
    if record.status != "cancelled":
        raise InvalidRequestError(
            f"Cannot cancel a response with status '{record.status}'.", param=None
        )
    return json_response(record.body)


@router.get("/{response_id}/input_items")
async def list_input_items(
    request: Request,
    response_id: str,
    after: str | None = None,
    before: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
) -> Response:
    """``GET /v1/responses/{id}/input_items``: the request's own input items, a page at a
    time (newest first by default, as OpenAI's)."""
    items = list((await _stored(request, response_id)).inputs)
    if order == "desc":
        items.reverse()
    ids = [item.get("id") for item in items]
    if after is not None and after in ids:
        items = items[ids.index(after) + 1 :]
    if before is not None and before in ids:
        items = items[: ids.index(before)]
    page = items[:limit]
    return json_response(_list(page, len(items) > limit))


def _list(page: list[Any], more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": page,
        "first_id": page[0].get("id") if page else None,
        "last_id": page[-1].get("id") if page else None,
        "has_more": more,
    }


@router.post("/input_tokens")
async def input_tokens(request: Request, req: InputTokensRequest) -> Response:
    """``POST /v1/responses/input_tokens``: the request's prompt length in the model's own
    tokens (the chat template applied to the input, instructions and tools)."""

    async def body() -> dict[str, Any]:
        translated, _ = await _translated(request, req, await _earlier(request, req))
        try:
            tokens = await service(request).count_tokens(caller(request), translated.chat)
        except InvalidRequestError as exc:
            raise translate.in_responses_terms(exc, translated.tools.paths) from None
        return {"object": "response.input_tokens", "input_tokens": tokens}

    return await respond_json(request, body())
