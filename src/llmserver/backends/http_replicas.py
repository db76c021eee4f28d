"""What every backend that talks to replicas of one model over HTTP shares: the connection pool,
probes, health and close, and the translation of a replica's failures into our errors.

The OpenAI-compatible upstream (:mod:`llmserver.backends.upstream`) and the Ollama upstream
(:mod:`llmserver.backends.ollama`) differ only in what they send and how they read the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import aiohttp
import orjson

from llmserver.backends.base import Delta, GenerationRequest
from llmserver.backends.replicas import Replica, ReplicaFailed, ReplicaSet, failover
from llmserver.config.model_configs import RemoteConfig
from llmserver.errors import (
    EngineError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamStatusError,
)

logger = logging.getLogger("llmserver.backends.upstream")

#: statuses that say "this replica cannot serve now", so another replica may
RETRYABLE = {502, 503, 504}
PROBE_TIMEOUT_S = 2.0
#: longest line (an SSE event, an NDJSON object) accepted from a replica
READ_BUFSIZE = 2**20
JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json"}

C = TypeVar("C", bound=RemoteConfig)
T = TypeVar("T")


class HttpReplicaBackend(ABC, Generic[C]):
    """A model served by one or more replicas over HTTP: one aiohttp session per model keeps
    a pool of connections to every replica; a request goes to the live replica with the fewest
    outstanding requests; a replica that cannot be reached is marked down and probed in the
    background. A subclass says what to send (:meth:`body`) and how to read the stream that
    comes back (:meth:`deltas`)."""

    #: what log lines and errors call the engine behind the URLs
    engine: ClassVar[str]
    #: the path a probe GETs; any answer below 500 means the replica is up
    probe_path: ClassVar[str]
    #: where a chat (messages) and a text (prompt) generation go
    chat_path: ClassVar[str]
    text_path: ClassVar[str]
    #: the headers a generation is sent with
    stream_headers: ClassVar[Mapping[str, str]] = JSON_HEADERS

    def __init__(self, config: C) -> None:
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
            raise EngineError(f"{self.engine} model is not started")
        return self._session

    async def _probe(self, url: str) -> bool:
        """True when the replica answers the probe path (any status below 500)."""
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        try:
            async with self.session.get(url + self.probe_path, timeout=timeout) as resp:
                return resp.status < 500
        except (aiohttp.ClientError, TimeoutError):
            return False

    @abstractmethod
    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body of a generation, in the engine's API."""

    @abstractmethod
    def deltas(
        self, resp: aiohttp.ClientResponse, chat: bool, request_bytes: int
    ) -> AsyncIterator[Delta]:
        """Deltas from a streamed answer as it arrives; the last carries the finish reason."""

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Stream from the least busy live replica, moving on only before the first delta."""
        chat = request.messages is not None
        path = self.chat_path if chat else self.text_path
        body = orjson.dumps(self.body(request))
        deltas = self._failover(
            request.request_id, lambda replica: self._stream(replica, path, body, chat)
        )
        async for delta in deltas:
            yield delta

    async def _stream(
        self, replica: Replica, path: str, body: bytes, chat: bool
    ) -> AsyncIterator[Delta]:
        async with self._request(replica, path, body, self.stream_headers) as resp:
            async for delta in self.deltas(resp, chat, len(body)):
                yield delta

    def replica_states(self) -> dict[str, bool]:
        """Replica URL -> whether it is up (for metrics and status pages)."""
        return self.replicas.states()

    async def health(self) -> bool:
        """True while at least one replica is in rotation."""
        return self._session is not None and any(self.replicas.states().values())

    async def close(self) -> None:
        """Stop the probes and close the connection pool."""
        await self.replicas.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _failover(
        self, request_id: str, call: Callable[[Replica], AsyncIterator[T]]
    ) -> AsyncIterator[T]:
        """``call`` on the least busy live replica, moving on only before its first item."""
        return failover(self.replicas, request_id, call, self._unavailable)

    def _unavailable(self) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"no {self.engine} replica of '{self.config.id}' is reachable",
            code="upstream_unavailable",
            headers={"Retry-After": str(max(1, round(self.config.probe_interval_s)))},
        )

    @contextlib.asynccontextmanager
    async def _request(
        self, replica: Replica, path: str, body: bytes, headers: Mapping[str, str] = JSON_HEADERS
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST to one replica; an error status is our error (see :func:`status_error`); a
        replica that cannot be reached, while connecting or while answering, raises
        :class:`ReplicaFailed`."""
        try:
            async with self.session.post(replica.url + path, data=body, headers=headers) as resp:
                if resp.status >= 400:
                    raise await status_error(resp)
                yield resp
        except aiohttp.ConnectionTimeoutError:
            # a host that is off drops the connection attempt: the replica is down, not slow
            reason = f"{self.engine} {replica.url} unreachable: no connection within "
            reason += f"{self.config.connect_timeout_s} s"
            raise ReplicaFailed(
                ServiceUnavailableError(reason, code="upstream_unavailable")
            ) from None
        except TimeoutError:
            raise ServiceUnavailableError(
                f"{self.engine} did not answer within {self.config.read_timeout_s} s",
                code="upstream_timeout",
            ) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            reason = f"{self.engine} {replica.url} unreachable: {type(exc).__name__}: {exc}"
            raise ReplicaFailed(
                ServiceUnavailableError(reason, code="upstream_unavailable")
            ) from None


async def status_error(resp: aiohttp.ClientResponse) -> Exception:
    """Our error for a replica's error status: 4xx keeps its status, 5xx becomes 502."""
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


async def lines(resp: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
    """The body's lines, stripped, as they arrive. Split here rather than with aiohttp's
    ``readline``, which costs a call through its stream reader per line: an instant upstream's
    whole answer arrives in one or two reads."""
    pending = b""
    async for data in resp.content.iter_any():
        parts = (pending + data).split(b"\n") if pending else data.split(b"\n")
        pending = parts.pop()
        if len(pending) > READ_BUFSIZE:
            raise UpstreamError(f"upstream sent a line longer than {READ_BUFSIZE} bytes")
        for line in parts:
            yield line.strip()
    if pending:
        yield pending.strip()
