"""Pure benchmark metrics, following the definitions of vLLM's ``benchmark_serving``.

Everything here works on plain timings, so it is unit-testable without a server. Times in
:class:`RequestResult` are seconds; the figures in :class:`Summary` are milliseconds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

DEFINITIONS: dict[str, str] = {
    "ttft": "Time to first token: from sending the request to the first chunk with content "
    "(streaming only).",
    "tpot": "Time per output token after the first: (e2e - ttft) / (output_tokens - 1), "
    "for requests with more than one output token.",
    "itl": "Inter-token latency: the gaps between consecutive content chunks, pooled over "
    "all requests.",
    "e2e": "End-to-end latency: from sending the request to the end of the response.",
    "output_tokens": "completion_tokens from the server's usage when reported, else the number "
    "of content chunks.",
    "request_throughput": "Successful requests / duration (first send to last completion).",
    "output_throughput": "Output tokens of successful requests / duration.",
    "goodput": "Successful requests meeting every SLO / duration.",
    "percentiles": "Linear interpolation between closest ranks (numpy's default method).",
    "failures": "Non-200 status, transport error, stream without [DONE] or finish_reason, or an "
    "output token count different from the one requested; excluded from every figure.",
}

SLO_KEYS = ("ttft", "tpot", "e2e")


@dataclass(slots=True)
class RequestResult:
    """Timings and outcome of one request; times in seconds."""

    ok: bool
    e2e: float
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int | None = None
    usage_reported: bool = False
    error: str | None = None
    cached_tokens: int | None = None  # prompt tokens the server took from its cache
    turn: int = 0  # the request's turn in its conversation (multi-turn workloads)


@dataclass(frozen=True, slots=True)
class Stats:
    """Mean and percentiles of one metric, in milliseconds (None when there is no sample)."""

    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class Slo:
    """Service-level objectives in milliseconds; None means the key is not checked."""

    ttft: float | None = None
    tpot: float | None = None
    e2e: float | None = None

    def is_set(self) -> bool:
        """Whether any objective is given."""
        return any(v is not None for v in (self.ttft, self.tpot, self.e2e))


@dataclass(frozen=True, slots=True)
class Summary:
    """The figures of one level for one target."""

    completed: int
    failed: int
    good: int
    duration_s: float
    request_throughput: float
    output_throughput: float
    goodput: float | None
    total_output_tokens: int
    total_input_tokens: int | None
    output_tokens_min: int | None
    output_tokens_max: int | None
    usage_reported: int
    ttft_ms: Stats
    tpot_ms: Stats
    itl_ms: Stats
    e2e_ms: Stats
    errors: dict[str, int]
    #: sum of the servers' usage.prompt_tokens_details.cached_tokens (None: never reported)
    total_cached_tokens: int | None = None
    #: TTFT p50 (ms) of each turn of a multi-turn workload, from the first; empty otherwise
    ttft_p50_by_turn: tuple[float | None, ...] = ()


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Return the ``pct`` percentile of ``values`` with linear interpolation (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def stats_ms(values_s: Sequence[float]) -> Stats:
    """Mean, p50, p90 and p99 of timings given in seconds, returned in milliseconds."""
    if not values_s:
        return Stats(None, None, None, None)
    ms = [v * 1000.0 for v in values_s]

    def pct(p: float) -> float | None:
        return percentile(ms, p)

    return Stats(sum(ms) / len(ms), pct(50), pct(90), pct(99))


def tpot(result: RequestResult) -> float | None:
    """Time per output token after the first, in seconds; None when it is undefined."""
    if result.ttft is None or result.output_tokens < 2:
        return None
    return (result.e2e - result.ttft) / (result.output_tokens - 1)


def parse_slo(text: str | None) -> Slo:
    """Parse ``"ttft=500,tpot=50"`` (milliseconds) into an :class:`Slo`.

    Raises ValueError on an unknown key or a value that is not a positive number.
    """
    if not text:
        return Slo()
    values: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in SLO_KEYS:
            raise ValueError(f"bad SLO {part!r}: expected KEY=MS with KEY in {', '.join(SLO_KEYS)}")
        value = float(raw)
        if not value > 0:
            raise ValueError(f"bad SLO {part!r}: the value must be a positive number of ms")
        values[key] = value
    return Slo(**values)


def meets_slo(result: RequestResult, slo: Slo) -> bool:
    """Whether a successful request meets every objective.

    A metric the request does not have (TTFT without streaming, TPOT of a one-token answer) is
    not checked, as vLLM does for TPOT.
    """
    if not result.ok:
        return False
    checks = (
        (slo.ttft, result.ttft),
        (slo.tpot, tpot(result)),
        (slo.e2e, result.e2e),
    )
    return all(limit is None or value is None or value * 1000.0 <= limit for limit, value in checks)


def summarize(results: Sequence[RequestResult], duration_s: float, slo: Slo) -> Summary:
    """Compute the figures of one level; failed requests are counted and otherwise excluded."""
    ok = [r for r in results if r.ok]
    failed = len(results) - len(ok)
    good = sum(1 for r in ok if meets_slo(r, slo))
    rate = 1.0 / duration_s if duration_s > 0 else 0.0
    out_tokens = [r.output_tokens for r in ok]
    in_tokens = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    errors = Counter(r.error or "unknown" for r in results if not r.ok)
    cached = [r.cached_tokens for r in ok if r.cached_tokens is not None]
    turns = max((r.turn for r in ok), default=0) + 1 if any(r.turn for r in ok) else 0
    by_turn = tuple(
        percentile([r.ttft * 1000.0 for r in ok if r.turn == t and r.ttft is not None], 50)
        for t in range(turns)
    )
    return Summary(
        completed=len(ok),
        failed=failed,
        good=good,
        duration_s=duration_s,
        request_throughput=len(ok) * rate,
        output_throughput=sum(out_tokens) * rate,
        goodput=good * rate if slo.is_set() else None,
        total_output_tokens=sum(out_tokens),
        total_input_tokens=sum(in_tokens) if in_tokens else None,
        output_tokens_min=min(out_tokens) if out_tokens else None,
        output_tokens_max=max(out_tokens) if out_tokens else None,
        usage_reported=sum(1 for r in ok if r.usage_reported),
        ttft_ms=stats_ms([r.ttft for r in ok if r.ttft is not None]),
        tpot_ms=stats_ms([t for t in (tpot(r) for r in ok) if t is not None]),
        itl_ms=stats_ms([gap for r in ok for gap in r.itl]),
        e2e_ms=stats_ms([r.e2e for r in ok]),
        errors=dict(errors.most_common()),
        total_cached_tokens=sum(cached) if cached else None,
        ttft_p50_by_turn=by_turn,
    )


def meets_attainment(summary: Summary, attainment: float) -> bool:
    """Whether at least ``attainment`` of all requests of a level succeeded and met the SLO."""
    total = summary.completed + summary.failed
    return total > 0 and summary.good / total >= attainment


def recommend(points: Iterable[tuple[float, Summary]], attainment: float) -> float | None:
    """The level with the best output throughput that still meets the SLO, or None.

    A level meets the SLO when :func:`meets_attainment` holds; ties go to the lower level.
    """
    best: tuple[float, float] | None = None
    for value, summary in points:
        if not meets_attainment(summary, attainment):
            continue
        key = (summary.output_throughput, -value)
        if best is None or key > best:
            best = key
    return None if best is None else -best[1]


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def compare(a: Summary, b: Summary) -> dict[str, float | None]:
    """Ratios of target A over target B for one level (throughput > 1 and latency < 1: A wins)."""
    return {
        "request_throughput": ratio(a.request_throughput, b.request_throughput),
        "output_throughput": ratio(a.output_throughput, b.output_throughput),
        "ttft_p50": ratio(a.ttft_ms.p50, b.ttft_ms.p50),
        "tpot_p50": ratio(a.tpot_ms.p50, b.tpot_ms.p50),
        "e2e_p50": ratio(a.e2e_ms.p50, b.e2e_ms.p50),
    }
