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
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, ClassVar

import aiohttp
import orjson

from llmserver.backends.base import Delta, FinishReason, GenerationRequest, ToolCallDelta
from llmserver.backends.replicas import Replica, ReplicaSet
from llmserver.backends.usage_check import credible_usage
from llmserver.config.model_configs import ModelConfig, UpstreamConfig
from llmserver.errors import (
    APIError,
    EngineError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamStatusError,
)

logger = logging.getLogger("llmserver.backends.upstream")

#: statuses that say "this replica cannot serve now", so another replica may
RETRYABLE = {502, 503, 504}
PROBE_TIMEOUT_S = 2.0
#: longest SSE line accepted from upstream
READ_BUFSIZE = 2**20
#: how long to wait for the end of a response after its ``[DONE]``
DRAIN_TIMEOUT_S = 0.25


class ReplicaFailed(Exception):
    """A replica could not serve; the request may go to another one."""

    def __init__(self, error: APIError) -> None:
        super().__init__(error.message)
        self.error = error


async def failover(
    replicas: ReplicaSet,
    request_id: str,
    stream: Callable[[Replica], AsyncIterator[Delta]],
    unavailable: Callable[[], APIError],
) -> AsyncIterator[Delta]:
    """Stream from the least busy live replica, moving on to another only before the first
    delta; a replica that fails is marked down. Shared by the OpenAI and Ollama upstreams."""
    tried: set[Replica] = set()
    last: APIError | None = None
    while (replica := replicas.pick(tried)) is not None:
        tried.add(replica)
        replica.outstanding += 1
        produced = False
        try:
            async for delta in stream(replica):
                produced = True
                yield delta
            return
        except ReplicaFailed as exc:
            replicas.mark_down(replica, exc.error.message)
            if produced:
                raise exc.error from None
            last = exc.error
            logger.info("retrying request %s on another replica", request_id)
        finally:
            replica.outstanding -= 1
    raise last or unavailable()


class UpstreamBackend:
    """A model served by one or more OpenAI-compatible upstream servers."""

    config_type: ClassVar[type[ModelConfig]] = UpstreamConfig
    #: upstream engines batch many requests; ``max_concurrent`` sets the real number
    max_parallel: ClassVar[int] = 64

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.model_name = config.upstream_model or config.id
        self.replicas = ReplicaSet(config.url, self._probe, config.probe_interval_s)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool and check each replica once; unreachable ones start down."""
        cfg = self.config
        headers = dict(cfg.headers)
        if (key := cfg.api_key()) is not None:
            headers["Authorization"] = f"Bearer {key}"
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=cfg.connect_timeout_s, sock_read=cfg.read_timeout_s
        )
        # no pool limit here: the model's limiter already bounds concurrency
        connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=timeout, read_bufsize=READ_BUFSIZE
        )
        checks = await asyncio.gather(*(self._probe(r.url) for r in self.replicas.replicas))
        for replica, ok in zip(self.replicas.replicas, checks, strict=True):
            if not ok:
                self.replicas.mark_down(replica, "not reachable at start-up")

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open connection pool."""
        if self._session is None:
            raise EngineError("upstream model is not started")
        return self._session

    async def _probe(self, url: str) -> bool:
        """True when the replica answers ``GET /models`` (any status below 500)."""
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        try:
            async with self.session.get(f"{url}/models", timeout=timeout) as resp:
                return resp.status < 500
        except (aiohttp.ClientError, TimeoutError):
            return False

    def replica_states(self) -> dict[str, bool]:
        """Replica URL -> whether it is up (for metrics and status pages)."""
        return self.replicas.states()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Stream from the least busy live replica, moving on only before the first delta."""
        chat = request.messages is not None
        path = "/chat/completions" if chat else "/completions"
        body = orjson.dumps(self._body(request))
        deltas = failover(
            self.replicas,
            request.request_id,
            lambda replica: self._stream(replica, path, body, chat),
            self._unavailable,
        )
        async for delta in deltas:
            yield delta

    def _unavailable(self) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"no upstream replica of '{self.config.id}' is reachable",
            code="upstream_unavailable",
            headers={"Retry-After": str(max(1, round(self.config.probe_interval_s)))},
        )

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {"model": self.model_name}
        if request.messages is not None:
            body["messages"] = list(request.messages)
        else:
            body["prompt"] = request.prompt
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
        return body

    async def _stream(
        self, replica: Replica, path: str, body: bytes, chat: bool
    ) -> AsyncIterator[Delta]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        try:
            async with self.session.post(replica.url + path, data=body, headers=headers) as resp:
                if resp.status >= 400:
                    raise await _status_error(resp)
                async for delta in _deltas(resp, chat, len(body)):
                    yield delta
                await _drain(resp)
        except aiohttp.ConnectionTimeoutError:
            # a host that is off drops the connection attempt: the replica is down, not slow
            reason = f"upstream {replica.url} unreachable: no connection within "
            reason += f"{self.config.connect_timeout_s} s"
            raise ReplicaFailed(
                ServiceUnavailableError(reason, code="upstream_unavailable")
            ) from None
        except TimeoutError:
            raise ServiceUnavailableError(
                f"upstream did not answer within {self.config.read_timeout_s} s",
                code="upstream_timeout",
            ) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            reason = f"upstream {replica.url} unreachable: {type(exc).__name__}: {exc}"
            raise ReplicaFailed(
                ServiceUnavailableError(reason, code="upstream_unavailable")
            ) from None

    async def health(self) -> bool:
        """True while at least one replica is in rotation."""
        return self._session is not None and any(self.replicas.states().values())

    async def close(self) -> None:
        """Stop the probes and close the connection pool."""
        await self.replicas.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _status_error(resp: aiohttp.ClientResponse) -> Exception:
    """Our error for an upstream error status: 4xx keeps its status, 5xx becomes 502."""
    raw = await resp.read()
    message, kind, param, code = f"upstream answered {resp.status}", None, None, None
    try:
        err = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        err = None
    if isinstance(err, dict):
        message = str(err.get("message") or message)
        kind, param, code = err.get("type"), err.get("param"), err.get("code")
    elif isinstance(err, str):
        message = err  # Ollama's and some proxies' shape: {"error": "text"}
    if resp.status >= 500:
        # a server error's text is about the upstream (paths, stack traces, hosts), not about
        # the client's request: it goes to the log, the client gets the status only
        logger.warning("upstream %s answered %d: %s", resp.url.host, resp.status, message[:500])
        error = UpstreamError(f"upstream error {resp.status}")
        return ReplicaFailed(error) if resp.status in RETRYABLE else error
    headers = {"Retry-After": v} if (v := resp.headers.get("Retry-After")) else None
    return UpstreamStatusError(
        resp.status,
        message[:2000],
        error_type=kind if isinstance(kind, str) else None,
        param=param if isinstance(param, str) else None,
        code=str(code) if code is not None else None,
        headers=headers,
    )


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
    async with contextlib.aclosing(_lines(resp)) as lines:
        async for line in lines:
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
                if (isinstance(text, str) and text) or calls:
                    text = text if isinstance(text, str) else ""
                    chunks += 1
                    pieces = [text, *(c.arguments + (c.name or "") for c in calls)]
                    text_bytes += sum(len(p.encode("utf-8", "surrogatepass")) for p in pieces)
                    yield Delta(text, 0, tool_calls=calls)
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
        "", completion_tokens, finish or "stop", prompt_tokens=prompt_tokens, stop_sequence=stop
    )


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


async def _lines(resp: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
    """The body's lines, stripped, as they arrive. Split here rather than with aiohttp's
    ``readline``, which costs a call through its stream reader per line: an instant upstream's
    whole answer arrives in one or two reads."""
    pending = b""
    async for data in resp.content.iter_any():
        lines = (pending + data).split(b"\n") if pending else data.split(b"\n")
        pending = lines.pop()
        if len(pending) > READ_BUFSIZE:
            raise UpstreamError(f"upstream sent a line longer than {READ_BUFSIZE} bytes")
        for line in lines:
            yield line.strip()
    if pending:
        yield pending.strip()
