"""``POST /infill`` in llama-server's shape: ``input_prefix``, ``input_suffix``,
``input_extra`` (other files, ``[{filename, text}]``), ``prompt`` (text already typed in the
hole), ``n_predict``, the sampling fields and the code-completion limits ``n_indent`` and
``t_max_predict_ms`` (:class:`llmserver.core.fim.CodeLimits`); the answer is llama-server's
completion object (``content``, ``stop``, ``stop_type``, token counts), streamed as SSE with
``stream``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt
from starlette.responses import Response

from llmserver.core.fim import CodeLimits
from llmserver.core.generation import Generation
from llmserver.core.requests import InfillRequest, Sampling
from llmserver.http.errors import openai_error
from llmserver.http.respond import caller, respond_json, respond_stream, service, track
from llmserver.http.streaming import KEEPALIVE, Framing, frame

#: llama-server's stream: ``data:`` events, the last one with ``stop: true``, no end marker
LLAMA_SSE = Framing("text/event-stream", frame, b"", KEEPALIVE, openai_error)


class ExtraFile(BaseModel):
    """One other file given as context."""

    model_config = ConfigDict(extra="allow")

    filename: str = ""
    text: str = ""


class InfillBody(BaseModel):
    """``POST /infill``; fields this server does not know are accepted and ignored (editors
    send llama-server's cache and slot fields)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str | None = None
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ExtraFile] = Field(default_factory=list)
    prompt: str = ""
    n_predict: StrictInt | None = Field(None, ge=-1)
    temperature: StrictFloat | None = Field(None, ge=0)
    top_k: StrictInt | None = Field(None, ge=0)
    top_p: StrictFloat | None = Field(None, ge=0, le=1)
    min_p: StrictFloat | None = Field(None, ge=0, le=1)
    repeat_penalty: StrictFloat | None = Field(None, ge=0)
    seed: StrictInt | None = None
    stop: list[str] = Field(default_factory=list)
    stream: StrictBool = False
    n_indent: StrictInt = Field(0, ge=0)
    t_max_predict_ms: StrictInt = Field(0, ge=0)

    def core(self) -> InfillRequest:
        """The core's request; ``n_predict`` -1 (llama-server's "no limit") or absent leaves
        the length to the model's default and the context."""
        limit = self.n_predict if self.n_predict is not None and self.n_predict > 0 else None
        sampling = Sampling(
            max_tokens=limit,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
            seed=self.seed if self.seed is None or self.seed >= 0 else None,
            stop=tuple(self.stop),
        )
        extra = tuple((f.filename, f.text) for f in self.input_extra)
        limited = self.n_indent or self.t_max_predict_ms
        return InfillRequest(
            self.model,
            self.input_prefix,
            self.input_suffix,
            sampling,
            typed=self.prompt,
            extra=extra,
            limits=CodeLimits(self.n_indent, self.t_max_predict_ms) if limited else None,
        )


def _stop_type(finish_reason: str | None, stop_sequence: str | None) -> str:
    if finish_reason == "length":
        return "limit"
    return "word" if stop_sequence else "eos"


def _final(gen: Generation, content: str, finish: str | None, word: str | None) -> dict[str, Any]:
    return {
        "content": content,
        "model": gen.model,
        "stop": True,
        "stop_type": _stop_type(finish, word),
        "stopping_word": word or "",
        "tokens_predicted": gen.usage.completion_tokens,
        "tokens_evaluated": gen.usage.prompt_tokens,
        "truncated": False,
    }


async def _body(gen: Generation) -> dict[str, Any]:
    result = await gen.collect()
    word = result.stop_sequences[0] if result.stop_sequences else None
    return _final(gen, result.texts[0], result.finish_reasons[0], word)


async def _chunks(gen: Generation) -> AsyncIterator[dict[str, Any]]:
    async for _, delta in gen.events():
        if delta.finish_reason is None:
            if delta.text:
                yield {"content": delta.text, "stop": False}
            continue
        yield _final(gen, delta.text, delta.finish_reason, delta.stop_sequence)


router = APIRouter()


@router.post("/infill")
async def infill(request: Request, body: InfillBody) -> Response:
    """``POST /infill``: the code for the hole between ``input_prefix`` and ``input_suffix``."""
    gen = service(request).infill(caller(request), body.core())
    track(request, gen, body.stream)
    if body.stream:
        return await respond_stream(request, _chunks(gen), LLAMA_SSE)
    return await respond_json(request, _body(gen))
