"""Any OpenAI-compatible server as a backend: Ollama (/v1), vLLM, llama-server, LM Studio,
LiteLLM, another llmserver.

The upstream tokenizes, applies its chat template and counts tokens; this backend relays the
messages (or prompt) and sampling parameters, always asks for a stream with usage, and turns
each chunk into a :class:`Delta` as it arrives. One aiohttp session per model keeps a pool of
connections to every replica. A request goes to the live replica with the fewest outstanding
requests; a replica that cannot be reached (or answers 502/503/504) is marked down, probed in
the background, and the request moves to another replica if nothing has been produced yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import aiohttp
import orjson

from llmserver.backends.base import Delta, FinishReason, GenerationRequest, ToolCallDelta
from llmserver.backends.http_replicas import JSON_HEADERS, HttpReplicaBackend, lines
from llmserver.backends.replicas import Replica
from llmserver.backends.scoring import Pair, ScoreResult, ScoringSpec
from llmserver.backends.upstream_rerank import RERANK_PATH, by_query, read_scores, rerank_body
from llmserver.backends.usage_check import credible_usage
from llmserver.config.model_configs import ModelConfig, UpstreamConfig
from llmserver.errors import UpstreamError

#: how long to wait for the end of a response after its ``[DONE]``
DRAIN_TIMEOUT_S = 0.25


class UpstreamBackend(HttpReplicaBackend[UpstreamConfig]):
    """A model served by one or more OpenAI-compatible upstream servers."""

    config_type: ClassVar[type[ModelConfig]] = UpstreamConfig
    #: upstream engines batch many requests; ``max_concurrent`` sets the real number
    max_parallel: ClassVar[int] = 64
    engine: ClassVar[str] = "upstream"
    probe_path: ClassVar[str] = "/models"
    chat_path: ClassVar[str] = "/chat/completions"
    text_path: ClassVar[str] = "/completions"
    stream_headers: ClassVar[Mapping[str, str]] = {**JSON_HEADERS, "Accept": "text/event-stream"}

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The ``/chat/completions`` (messages) or ``/completions`` (prompt) body."""
        params = request.params
        body: dict[str, Any] = {"model": self.model_name}
        if request.messages is not None:
            body["messages"] = list(request.messages)
        else:
            body["prompt"] = request.prompt
            if request.suffix is not None:  # the engine fills the middle (or answers a 400)
                body["suffix"] = request.suffix
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        body["temperature"] = params.temperature
        body["top_p"] = params.top_p
        if params.max_tokens > 0:
            body["max_tokens"] = params.max_tokens
        if params.presence_penalty:
            body["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty:
            body["frequency_penalty"] = params.frequency_penalty
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        # extras that OpenAI itself rejects are sent only when someone asked for them
        if params.top_k > 0:
            body["top_k"] = params.top_k
        if params.min_p > 0:
            body["min_p"] = params.min_p
        if params.repeat_penalty != 1.0:
            body["repeat_penalty"] = params.repeat_penalty
        if params.ignore_eos:
            body["ignore_eos"] = True
        if request.tools:
            body["tools"] = list(request.tools)
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        if request.constraint is not None and not request.constraint.triggers:
            schema = request.constraint.schema
            body["response_format"] = (
                {"type": "json_object"}
                if schema is None
                else {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
            )
        if self.config.context_size is not None:
            body["options"] = {"num_ctx": self.config.context_size}
        if request.thought is not None and request.thought.asked is not None and request.messages:
            # the switch vLLM, SGLang and llama-server read from Qwen3-style templates
            body["chat_template_kwargs"] = {"enable_thinking": request.thought.asked}
        return body

    def deltas(
        self, resp: aiohttp.ClientResponse, chat: bool, request_bytes: int
    ) -> AsyncIterator[Delta]:
        """Deltas from the SSE answer (see :func:`_deltas`)."""
        return _deltas(resp, chat, request_bytes)

    def scoring_spec(self) -> ScoringSpec | None:
        """A reranker upstream (``rerank: true``); else None."""
        return ScoringSpec("upstream") if self.config.rerank else None

    async def score(self, pairs: Sequence[Pair], truncate: bool) -> ScoreResult:
        """The upstream's scores, one ``/rerank`` request per distinct query."""
        scores = [0.0] * len(pairs)
        tokens = 0
        for query, positions in by_query(pairs):
            documents = [pairs[p][1] for p in positions]
            body = rerank_body(self.model_name, query, documents, truncate)

            async def answer(replica: Replica, body: bytes = body) -> AsyncIterator[bytes]:
                async with self._request(replica, RERANK_PATH, body) as resp:
                    yield await resp.read()

            raws = [raw async for raw in self._failover("rerank", answer)]
            got, used = read_scores(raws[0], len(documents), len(body))
            for position, score in zip(positions, got, strict=True):
                scores[position] = score
            tokens += used
        return ScoreResult(scores, tokens)


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read what follows ``[DONE]`` (the chunked-encoding end), so the connection goes back to
    the pool instead of being closed; a server that keeps it open gets a short grace only."""
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            await resp.content.read()


async def _deltas(
    resp: aiohttp.ClientResponse, chat: bool, request_bytes: int
) -> AsyncIterator[Delta]:
    """Deltas from an SSE body as its lines arrive; the last carries finish reason and usage
    (checked: see :func:`credible_usage`)."""
    finish: FinishReason | None = None
    stop: str | None = None
    usage: dict[str, Any] = {}
    chunks = text_bytes = 0
    async with contextlib.aclosing(lines(resp)) as body:
        async for line in body:
            if not line.startswith(b"data:"):
                continue  # blank separators, ``: keep-alive`` comments, ``event:`` lines
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamError("upstream sent a chunk that is not JSON") from None
            if not isinstance(chunk, dict):
                raise UpstreamError("upstream sent a chunk that is not an object")
            if "error" in chunk:
                err = chunk["error"]
                message = err.get("message") if isinstance(err, dict) else err
                raise UpstreamError(f"upstream failed mid-stream: {message}")
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict):
                    raise UpstreamError("upstream sent a choice that is not an object")
                delta = (choice.get("delta") or {}) if chat else {}
                text = delta.get("content") if chat else choice.get("text")
                calls = _tool_call_deltas(delta.get("tool_calls"))
                # llama-server, SGLang and DeepSeek name the thought reasoning_content, vLLM
                # and Ollama's /v1 reasoning
                thought = delta.get("reasoning_content") or delta.get("reasoning")
                thought = thought if isinstance(thought, str) else ""
                if (isinstance(text, str) and text) or calls or thought:
                    text = text if isinstance(text, str) else ""
                    chunks += 1
                    pieces = [text, thought, *(c.arguments + (c.name or "") for c in calls)]
                    text_bytes += sum(len(p.encode("utf-8", "surrogatepass")) for p in pieces)
                    yield Delta(text, 0, tool_calls=calls, reasoning=thought)
                if reason := choice.get("finish_reason"):
                    finish = (
                        "length"
                        if reason == "length"
                        else "tool_calls"
                        if reason == "tool_calls"
                        else "stop"
                    )
                    # vLLM's servers name the stop string they hit; OpenAI's API does not
                    hit = choice.get("stop_reason")
                    stop = hit if isinstance(hit, str) and finish == "stop" else None
        else:
            if finish is None:
                raise UpstreamError("upstream response ended before it finished")
    prompt_tokens, completion_tokens = credible_usage(usage, text_bytes, chunks, request_bytes)
    yield Delta(
        "",
        completion_tokens,
        finish or "stop",
        prompt_tokens=prompt_tokens,
        stop_sequence=stop,
        reasoning_tokens=_reasoning_tokens(usage, completion_tokens),
    )
    await _drain(resp)


def _reasoning_tokens(usage: dict[str, Any], completion_tokens: int) -> int | None:
    """The thought's part of the completion as the engine reports it (vLLM, DeepSeek, OpenAI:
    ``completion_tokens_details.reasoning_tokens``), when it is credible."""
    details = usage.get("completion_tokens_details")
    count = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= completion_tokens:
        return count
    return None


def _tool_call_deltas(value: Any) -> tuple[ToolCallDelta, ...]:
    """An upstream's streamed ``delta.tool_calls`` pieces, relayed as they are."""
    if not isinstance(value, list):
        return ()
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("index"), int):
            raise UpstreamError("upstream sent a tool call without an index")
        function = item.get("function")
        if not isinstance(function, dict):
            function = {}
        name, arguments = function.get("name"), function.get("arguments")
        out.append(
            ToolCallDelta(
                item["index"],
                item["id"] if isinstance(item.get("id"), str) else None,
                name if isinstance(name, str) else None,
                arguments if isinstance(arguments, str) else "",
            )
        )
    return tuple(out)
