"""What the server did in the last minutes, in memory, for the dashboard: a ring of the last
requests (who, which model, status, tokens, timings; never prompt or reply text), rolling
TTFT and latency percentiles, 429s and errors per model, and tokens per second right now.

Fed by the access-log middleware, as one of its observers: :meth:`Recent.begin` when a request
arrives (so the tokens of a stream still running count towards tokens per second) and
:meth:`Recent.finish` when its response has been sent.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from llmserver.observability.logs import AccessRecord, FinishedRequest

#: the requests the ring keeps
RING_SIZE = 200
#: how far back the percentiles and counts look
WINDOW_S = 300.0
#: how far back "tokens per second now" looks
RATE_WINDOW_S = 10.0
#: samples kept per model in the window, at most (the oldest go first)
MAX_SAMPLES = 5000
#: paths that are about the server or the page itself, not work: not kept in the ring
QUIET_PREFIXES = ("/health", "/ready", "/metrics", "/ui", "/dashboard", "/favicon")
PERCENTILES = (50, 90, 99)
#: statuses not counted as errors: 429s are counted apart, 499 is a client that left
QUIET = (429, 499)


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """One finished request as the dashboard shows it (no text of the request or reply)."""

    time: float  # UNIX time when it finished
    key_name: str | None
    method: str
    endpoint: str  # the route template, never the raw path
    model: str | None
    status: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    streamed: bool
    error_code: str | None


@dataclass(frozen=True, slots=True)
class ModelWindow:
    """One model's figures over the window."""

    requests: int
    rejected: int  # 429s
    errors: int  # other 4xx/5xx answers (client disconnects excluded)
    ttft_ms: dict[str, float | None]
    latency_ms: dict[str, float | None]
    tokens_per_s: float


@dataclass(slots=True)
class _Sample:
    time: float
    status: int
    ttft_ms: float | None
    latency_ms: float


def percentile(values: list[float], pct: float) -> float | None:
    """The nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _percentiles(values: list[float]) -> dict[str, float | None]:
    return {f"p{p}": percentile(values, p) for p in PERCENTILES}


class Recent:
    """The ring, the windows and the in-flight requests; safe to call from any thread."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        window_s: float = WINDOW_S,
        rate_window_s: float = RATE_WINDOW_S,
    ) -> None:
        self._clock = clock
        self.window_s = window_s
        self.rate_window_s = rate_window_s
        self._lock = threading.Lock()
        self._ring: deque[RequestSummary] = deque(maxlen=RING_SIZE)
        self._samples: dict[str, deque[_Sample]] = {}
        # by id(): records compare by value, so they cannot go into a set
        self._in_flight: dict[int, AccessRecord] = {}
        # completion tokens of finished requests, per model, and (time, cumulative) readings
        self._done_tokens: dict[str, int] = {}
        self._readings: dict[str, deque[tuple[float, int]]] = {}

    def request_started(self, record: AccessRecord) -> None:
        """A request arrived; its record fills in (model, usage) while it runs."""
        with self._lock:
            self._in_flight[id(record)] = record

    def request_finished(self, done: FinishedRequest) -> None:
        """A request's response has been sent (or the client left: status 499). Its ``path``
        only decides whether the ring keeps it (requests about the server or the page itself,
        and redirects, are left out); its ``endpoint``, the route template, is what it keeps."""
        record, status = done.record, done.status
        now = self._clock()
        usage = record.usage
        ttft = record.ttft_s
        summary = RequestSummary(
            time=now,
            key_name=record.key_name,
            method=done.method,
            endpoint=done.endpoint,
            model=record.model,
            status=status,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_ms=round(done.latency_s * 1000, 1),
            ttft_ms=None if ttft is None else round(ttft * 1000, 1),
            streamed=record.streamed,
            error_code=record.error_code,
        )
        with self._lock:
            self._in_flight.pop(id(record), None)
            if record.model:
                model = record.model
                tokens = self._done_tokens.get(model, 0) + max(usage.completion_tokens, 0)
                self._done_tokens[model] = tokens
                samples = self._samples.setdefault(model, deque(maxlen=MAX_SAMPLES))
                samples.append(_Sample(now, status, summary.ttft_ms, summary.latency_ms))
            if not done.path.startswith(QUIET_PREFIXES) and not 300 <= status < 400:
                self._ring.append(summary)

    def last(self, key_name: str | None = None, limit: int = 50) -> list[RequestSummary]:
        """The newest requests first; only those of ``key_name`` when it is given."""
        with self._lock:
            items = list(self._ring)
        items.reverse()
        if key_name is not None:
            items = [s for s in items if s.key_name == key_name]
        return items[:limit]

    def _cumulative(self, model: str) -> int:
        running = sum(
            max(r.usage.completion_tokens, 0) for r in self._in_flight.values() if r.model == model
        )
        return self._done_tokens.get(model, 0) + running

    def _rate(self, model: str, now: float) -> float:
        """Completion tokens per second over the rate window, from cumulative readings taken at
        each call (so a model that stops generating falls to 0 once the window has passed)."""
        total = self._cumulative(model)
        readings = self._readings.setdefault(model, deque(maxlen=1000))
        readings.append((now, total))
        horizon = now - self.rate_window_s
        while len(readings) > 1 and readings[1][0] <= horizon:
            readings.popleft()
        first_t, first_total = readings[0]
        if now - first_t <= 0:
            return 0.0
        return max(total - first_total, 0) / max(now - first_t, self.rate_window_s / 10)

    def window(self, models: Iterable[str]) -> dict[str, ModelWindow]:
        """Each model's figures over the last ``window_s`` seconds."""
        now = self._clock()
        cutoff = now - self.window_s
        out: dict[str, ModelWindow] = {}
        with self._lock:
            for model in models:
                samples = self._samples.get(model, deque())
                while samples and samples[0].time < cutoff:
                    samples.popleft()
                ok = [s for s in samples if s.status < 400]
                out[model] = ModelWindow(
                    requests=len(samples),
                    rejected=sum(1 for s in samples if s.status == 429),
                    errors=sum(1 for s in samples if s.status >= 400 and s.status not in QUIET),
                    ttft_ms=_percentiles([s.ttft_ms for s in ok if s.ttft_ms is not None]),
                    latency_ms=_percentiles([s.latency_ms for s in ok]),
                    tokens_per_s=round(self._rate(model, now), 1),
                )
        return out
