"""The exact-response cache: a deterministic request seen again within its TTL is answered from
the stored response instead of the model.

Only requests whose output cannot vary are stored (greedy sampling or a fixed seed, no tools).
The key is a digest of everything that decides the output (model, the rendered prompts, every
sampling parameter, the output constraint) and of the API key's name, so that one key never
reads another key's answers unless the operator shares the cache between keys. Entries expire
``ttl_s`` after they were stored; past ``max_entries`` the least recently used goes first.

The cache stores whatever the caller gives it (the service stores a generation's events and
usage) and knows nothing of HTTP or of any surface.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson

from llmserver.backends.base import GenerationRequest, SamplingParams

V = TypeVar("V")


def is_deterministic(params: SamplingParams, tools: bool = False) -> bool:
    """Whether a request's output is fixed by its input: greedy or seeded, and no tools."""
    return not tools and (params.temperature <= 0.0 or params.seed is not None)


def request_key(
    key_name: str | None,
    model: str,
    requests: Sequence[GenerationRequest],
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """The cache key of one API call: its generations' prompts, sampling and constraints.

    ``key_name`` is the API key's name (None: no key, or a cache shared between keys); ``extra``
    is anything else that shapes the response (the surface's kind of response, for example).
    """
    parts: list[Any] = [key_name, model, dict(extra or {})]
    for req in requests:
        parts.append(
            [
                req.prompt,
                list(req.prompt_tokens),
                dataclasses.asdict(req.params),
                None if req.constraint is None else req.constraint.schema or {},
                None if req.messages is None else [dict(m) for m in req.messages],
                [dict(t) for t in req.tools],
                req.tool_choice
                if isinstance(req.tool_choice, str | None)
                else dict(req.tool_choice),
            ]
        )
    data = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(data, digest_size=20).digest()


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    expires: float


@dataclass(slots=True)
class CacheCounts:
    """Lookups since the cache was made."""

    hits: int = 0
    misses: int = 0


class Cache(Protocol[V]):
    """What a generation needs of a response cache: this process's :class:`ResponseCache`, or
    the Redis one every gateway shares (:mod:`llmserver.core.shared_cache`)."""

    counts: CacheCounts

    async def lookup(self, key: bytes) -> V | None:
        """The stored response, or None."""

    async def store(self, key: bytes, value: V) -> None:
        """Store a response."""


class ResponseCache(Generic[V]):
    """An LRU map from request keys to stored responses, each kept for ``ttl_s`` seconds."""

    def __init__(
        self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1 or ttl_s <= 0:
            raise ValueError("max_entries must be >= 1 and ttl_s > 0")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[bytes, _Entry[V]] = OrderedDict()
        self.counts = CacheCounts()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> V | None:
        """The stored response, or None when there is none or it has expired."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= self._clock():
            del self._entries[key]
            entry = None
        if entry is None:
            self.counts.misses += 1
            return None
        self._entries.move_to_end(key)
        self.counts.hits += 1
        return entry.value

    def put(self, key: bytes, value: V) -> None:
        """Store a response (replacing an older one), evicting the least recently used."""
        self._entries[key] = _Entry(value, self._clock() + self.ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def lookup(self, key: bytes) -> V | None:
        """:meth:`get`, as :class:`Cache` asks."""
        return self.get(key)

    async def store(self, key: bytes, value: V) -> None:
        """:meth:`put`, as :class:`Cache` asks."""
        self.put(key, value)

    def clear(self) -> None:
        """Forget every response (the model was reloaded, for example)."""
        self._entries.clear()
