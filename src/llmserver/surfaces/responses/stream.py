"""A generation as the Responses API's events, and the response object they build.

One builder serves streamed and non-streamed calls alike: a non-streamed response is the last
event's ``response`` (so a stored response and its replayed stream can never disagree). The
events come in OpenAI's order, each with the next ``sequence_number``: ``response.created``,
``response.in_progress``; per output item ``response.output_item.added``, for a message
``response.content_part.added``, ``response.output_text.delta``\\ s,
``response.output_text.done`` and ``response.content_part.done``, for a function call
``response.function_call_arguments.delta``\\ s and ``.done``; ``response.output_item.done``;
then ``response.completed`` (or ``response.incomplete`` when cut by ``max_output_tokens``,
``response.failed`` when the model failed after the stream began).

A reasoning model's thought comes first, as a ``reasoning`` item whose summary is the thought's
text: ``response.output_item.added``, ``response.reasoning_summary_part.added``,
``response.reasoning_summary_text.delta``\\ s, ``response.reasoning_summary_text.done``,
``response.reasoning_summary_part.done``, ``response.output_item.done``.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Literal

from llmserver.core.events import Delta, TokenLogprob, ToolCallDelta
from llmserver.core.generation import Generation
from llmserver.core.usage import Usage
from llmserver.errors import APIError
from llmserver.http.errors import as_api_error
from llmserver.surfaces.responses.translate import Item, item_id

logger = logging.getLogger("llmserver.responses")

Event = dict[str, Any]

#: which errors end a run with ``response.failed`` instead of being raised
Failures = Literal["raise", "after_start", "always"]

#: the reason in ``incomplete_details`` for each finish reason that cuts a response short
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(gen: Generation) -> str:
    """``resp_`` and the random part of the generation's own id (one id per generation)."""
    return "resp_" + gen.id.rpartition("-")[2]


def usage_body(usage: Usage) -> dict[str, Any]:
    """The Responses API's ``usage``: input and output tokens with their details."""
    return {
        "input_tokens": usage.prompt_tokens,
        # a prefix cache here is filled as a side effect: nothing is written on purpose
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _top(lp: TokenLogprob, raw: bool) -> list[dict[str, Any]]:
    return [
        {"token": t.token, **({"bytes": list(t.bytes)} if raw else {}), "logprob": t.logprob}
        for t in lp.top
    ]


def text_logprobs(items: tuple[TokenLogprob, ...] | list[TokenLogprob]) -> list[dict[str, Any]]:
    """``output_text.logprobs``: each token with its bytes and alternatives."""
    return [
        {
            "token": lp.token,
            "bytes": list(lp.bytes),
            "logprob": lp.logprob,
            "top_logprobs": _top(lp, True),
        }
        for lp in items
    ]


def delta_logprobs(items: tuple[TokenLogprob, ...]) -> list[dict[str, Any]]:
    """A text delta event's ``logprobs`` (no bytes, as OpenAI sends them)."""
    return [
        {"token": lp.token, "logprob": lp.logprob, "top_logprobs": _top(lp, False)} for lp in items
    ]


class ResponseBuilder:
    """The response object of one run and the events that build it.

    ``head`` holds the response's fields that echo the request (``instructions``, ``tools``,
    ``text``, ``metadata``, ...); the builder adds the id, status, output and usage.
    """

    def __init__(
        self,
        rid: str,
        model: str,
        head: dict[str, Any],
        created_at: int,
        namespaces: Mapping[str, str] | None = None,
    ) -> None:
        self.body: dict[str, Any] = {
            "id": rid,
            "object": "response",
            "created_at": created_at,
            "status": "queued" if head.get("background") else "in_progress",
            "completed_at": None,
            "error": None,
            "incomplete_details": None,
            **head,
            "model": model,
            "output": [],
            "usage": None,
        }
        self._seq = 0
        #: the namespace of each namespaced tool, by name (a call of one names it)
        self._namespaces = namespaces or {}
        self._thought: dict[str, Any] | None = None  # the open reasoning item
        self._text: dict[str, Any] | None = None  # the open message's output_text part
        self._message: dict[str, Any] | None = None  # the open message item
        #: the output index of each function call, by the core's call index
        self._calls: dict[int, int] = {}
        self._open_call: int | None = None

    @property
    def output(self) -> list[Item]:
        """The output items so far."""
        items: list[Item] = self.body["output"]
        return items

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _snapshot(self, kind: str) -> Event:
        return self._event(kind, response=copy.deepcopy(self.body))

    def start(self) -> Iterator[Event]:
        """``response.created`` and ``response.in_progress``."""
        self.body["status"] = "in_progress"
        yield self._snapshot("response.created")
        yield self._snapshot("response.in_progress")

    def queued(self) -> Event:
        """``response.queued`` (a background run that waits to start)."""
        return self._snapshot("response.queued")

    # -- output items --------------------------------------------------------------------------

    def _add(self, item: Item) -> tuple[int, Event]:
        index = len(self.output)
        self.output.append(item)
        return index, self._event(
            "response.output_item.added", output_index=index, item=copy.deepcopy(item)
        )

    def _thought_delta(self, text: str) -> Iterator[Event]:
        if self._thought is None:
            yield from self._close_message("completed")
            yield from self._close_call("completed")
            item: Item = {
                "id": item_id("rs"),
                "type": "reasoning",
                "status": "in_progress",
                "summary": [],
                "encrypted_content": None,
            }
            index, event = self._add(item)
            self._thought = item
            yield event
            part: Item = {"type": "summary_text", "text": ""}
            item["summary"].append(part)
            yield self._event(
                "response.reasoning_summary_part.added",
                item_id=item["id"],
                output_index=index,
                summary_index=0,
                part=copy.deepcopy(part),
            )
        item = self._thought
        item["summary"][0]["text"] += text
        yield self._event(
            "response.reasoning_summary_text.delta",
            item_id=item["id"],
            output_index=self.output.index(item),
            summary_index=0,
            delta=text,
        )

    def _close_thought(self, status: str) -> Iterator[Event]:
        item, self._thought = self._thought, None
        if item is None:
            return
        index = self.output.index(item)
        part = item["summary"][0]
        where = {"item_id": item["id"], "output_index": index, "summary_index": 0}
        yield self._event("response.reasoning_summary_text.done", **where, text=part["text"])
        yield self._event("response.reasoning_summary_part.done", **where, part=copy.deepcopy(part))
        item["status"] = status
        yield self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item))

    def _open_message(self) -> Iterator[Event]:
        yield from self._close_thought("completed")
        yield from self._close_call("completed")
        message: Item = {
            "id": item_id("msg"),
            "type": "message",
            "status": "in_progress",
            "content": [],
            "role": "assistant",
        }
        index, event = self._add(message)
        yield event
        part: Item = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        message["content"].append(part)
        self._message, self._text = message, part
        yield self._event(
            "response.content_part.added",
            item_id=message["id"],
            output_index=index,
            content_index=0,
            part=copy.deepcopy(part),
        )

    def _close_message(self, status: str) -> Iterator[Event]:
        message, part = self._message, self._text
        if message is None or part is None:
            return
        index = self.output.index(message)
        where = {"item_id": message["id"], "output_index": index, "content_index": 0}
        yield self._event(
            "response.output_text.done",
            **where,
            text=part["text"],
            logprobs=copy.deepcopy(part["logprobs"]),
        )
        yield self._event("response.content_part.done", **where, part=copy.deepcopy(part))
        message["status"] = status
        yield self._event(
            "response.output_item.done", output_index=index, item=copy.deepcopy(message)
        )
        self._message = self._text = None

    def _close_call(self, status: str) -> Iterator[Event]:
        if self._open_call is None:
            return
        index, self._open_call = self._open_call, None
        call = self.output[index]
        yield self._event(
            "response.function_call_arguments.done",
            item_id=call["id"],
            output_index=index,
            name=call["name"],
            arguments=call["arguments"],
        )
        call["status"] = status
        yield self._event("response.output_item.done", output_index=index, item=copy.deepcopy(call))

    def _text_delta(self, text: str, logprobs: tuple[TokenLogprob, ...]) -> Iterator[Event]:
        if self._text is None:
            yield from self._open_message()
        assert self._text is not None
        assert self._message is not None
        self._text["text"] += text
        self._text["logprobs"] += text_logprobs(logprobs)
        yield self._event(
            "response.output_text.delta",
            item_id=self._message["id"],
            output_index=self.output.index(self._message),
            content_index=0,
            delta=text,
            logprobs=delta_logprobs(logprobs),
        )

    def _call_delta(self, piece: ToolCallDelta) -> Iterator[Event]:
        if piece.id is not None or piece.index not in self._calls:
            yield from self._close_thought("completed")
            yield from self._close_message("completed")
            yield from self._close_call("completed")
            call: Item = {
                "id": item_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": piece.id or item_id("call"),
                "name": piece.name or "",
            }
            if call["name"] in self._namespaces:
                call["namespace"] = self._namespaces[call["name"]]
            index, event = self._add(call)
            self._calls[piece.index] = self._open_call = index
            yield event
        if piece.arguments:
            index = self._calls[piece.index]
            call = self.output[index]
            call["arguments"] += piece.arguments
            yield self._event(
                "response.function_call_arguments.delta",
                item_id=call["id"],
                output_index=index,
                delta=piece.arguments,
            )

    def feed(self, delta: Delta) -> Iterator[Event]:
        """The events of one delta of the generation: its thought, its text, its calls."""
        if delta.reasoning:
            yield from self._thought_delta(delta.reasoning)
        if delta.text or delta.logprobs:
            yield from self._text_delta(delta.text, delta.logprobs)
        for piece in delta.tool_calls:
            yield from self._call_delta(piece)

    # -- the end -------------------------------------------------------------------------------

    def finish(self, finish_reason: str | None, usage: Usage) -> Iterator[Event]:
        """Close the open items (an empty message when there was no output at all), then
        ``response.completed``, or ``response.incomplete`` with its reason."""
        cut = _INCOMPLETE.get(finish_reason or "")
        status = "incomplete" if cut else "completed"
        if not self.output:
            yield from self._open_message()
        yield from self._close_thought(status)
        yield from self._close_message(status)
        yield from self._close_call(status)
        self.body["status"] = status
        self.body["incomplete_details"] = {"reason": cut} if cut else None
        self.body["usage"] = usage_body(usage)
        if not cut:
            self.body["completed_at"] = int(time.time())
        yield self._snapshot(f"response.{status}")

    def fail(self, err: APIError, usage: Usage) -> Event:
        """``response.failed``: the model failed after the response had begun."""
        self.body["status"] = "failed"
        self.body["error"] = {"code": err.code or err.type, "message": err.message}
        self.body["usage"] = usage_body(usage)
        return self._snapshot("response.failed")

    def cancel(self) -> dict[str, Any]:
        """The response as cancelled (a background run stopped by ``/cancel``)."""
        self.body["status"] = "cancelled"
        return self.body


async def events(
    gen: Generation, builder: ResponseBuilder, failures: Failures = "raise"
) -> AsyncIterator[Event]:
    """The run's events. The first waits for the generation's first delta, so that what
    fails before it (no slot, the prompt too long) can still be an HTTP error. ``failures``
    says which errors become a ``response.failed`` event that ends the stream instead of
    being raised: none (a non-streamed call), those after the stream began (a stream), or
    all (a background run, whose request has long been answered)."""
    started = False
    finish: str | None = None
    try:
        async for _, delta in gen.events():
            if not started:
                started = True
                for event in builder.start():
                    yield event
            for event in builder.feed(delta):
                yield event
            if delta.finish_reason is not None:
                finish = delta.finish_reason
    except Exception as exc:
        if failures == "raise" or (failures == "after_start" and not started):
            raise
        err = as_api_error(exc)
        if not isinstance(exc, APIError):
            logger.exception("response %s failed", builder.body["id"])
        if not started:
            for event in builder.start():
                yield event
        yield builder.fail(err, gen.usage)
        return
    if not started:
        for event in builder.start():
            yield event
    for event in builder.finish(finish, gen.usage):
        yield event


async def final(stream: AsyncIterator[Event]) -> dict[str, Any]:
    """Run the events to their end: the last one's response."""
    last: Event | None = None
    async for event in stream:
        last = event
    assert last is not None
    body: dict[str, Any] = last["response"]
    return body
