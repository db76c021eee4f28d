"""Metric computations on hand-made timings, against the definitions."""

from __future__ import annotations

import pytest

from llmserver.bench.metrics import (
    RequestResult,
    Slo,
    compare,
    meets_slo,
    parse_slo,
    percentile,
    ratio,
    recommend,
    stats_ms,
    summarize,
    tpot,
)


def _results() -> list[RequestResult]:
    return [
        RequestResult(
            ok=True,
            e2e=1.0,
            ttft=0.1,
            itl=[0.1, 0.3],
            output_tokens=5,
            prompt_tokens=10,
            usage_reported=True,
        ),
        RequestResult(
            ok=True,
            e2e=2.0,
            ttft=0.3,
            itl=[0.5, 0.2],
            output_tokens=4,
            prompt_tokens=12,
            usage_reported=True,
        ),
        RequestResult(ok=True, e2e=0.6, ttft=0.6, itl=[], output_tokens=1),
        RequestResult(ok=False, e2e=9.0, ttft=0.01, output_tokens=50, error="HTTP 500"),
    ]


def _linear(ordered: list[float], pct: float) -> float:
    """The percentile definition, spelled out: linear between the two closest ranks."""
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def test_percentile_interpolates_between_ranks() -> None:
    values = [5.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 90) == pytest.approx(3.0 + 0.7 * 2.0)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_percentile_matches_numpy() -> None:
    np = pytest.importorskip("numpy")
    values = [0.3, 12.0, 4.5, 4.5, 9.1, 0.01, 77.0]
    for pct in (1, 25, 50, 90, 99):
        assert percentile(values, pct) == pytest.approx(float(np.percentile(values, pct)))


def test_tpot_excludes_first_token() -> None:
    first, second, third, failed = _results()
    assert tpot(first) == pytest.approx((1.0 - 0.1) / (5 - 1))
    assert tpot(second) == pytest.approx((2.0 - 0.3) / (4 - 1))
    assert tpot(third) is None
    assert tpot(RequestResult(ok=True, e2e=1.0, output_tokens=8)) is None
    assert failed.error == "HTTP 500"


def test_summarize_excludes_failures() -> None:
    results = _results()
    slo = Slo(ttft=400, tpot=300)
    summary = summarize(results, 4.0, slo)
    assert summary.completed == 3
    assert summary.failed == 1
    assert summary.errors == {"HTTP 500": 1}
    assert summary.request_throughput == pytest.approx(3 / 4.0)
    assert summary.output_throughput == pytest.approx((5 + 4 + 1) / 4.0)
    assert summary.total_output_tokens == 10
    assert summary.total_input_tokens == 22
    assert (summary.output_tokens_min, summary.output_tokens_max) == (1, 5)
    assert summary.usage_reported == 2
    # Only the first meets both: the second misses TPOT, the third TTFT.
    assert summary.good == 1
    assert summary.goodput == pytest.approx(1 / 4.0)

    ttfts = [100.0, 300.0, 600.0]
    assert summary.ttft_ms.mean == pytest.approx(sum(ttfts) / 3)
    assert summary.ttft_ms.p50 == pytest.approx(_linear(ttfts, 50))
    assert summary.ttft_ms.p90 == pytest.approx(_linear(ttfts, 90))
    assert summary.ttft_ms.p99 == pytest.approx(_linear(ttfts, 99))

    tpots = sorted([900.0 / 4, 1700.0 / 3])
    assert summary.tpot_ms.mean == pytest.approx(sum(tpots) / 2)
    assert summary.tpot_ms.p90 == pytest.approx(_linear(tpots, 90))

    itls = [100.0, 200.0, 300.0, 500.0]
    assert summary.itl_ms.mean == pytest.approx(275.0)
    assert summary.itl_ms.p50 == pytest.approx(250.0)
    assert summary.itl_ms.p99 == pytest.approx(_linear(itls, 99))

    e2es = [600.0, 1000.0, 2000.0]
    assert summary.e2e_ms.p50 == pytest.approx(1000.0)
    assert summary.e2e_ms.p99 == pytest.approx(_linear(e2es, 99))


def test_summarize_without_slo_or_results() -> None:
    summary = summarize([], 0.0, Slo())
    assert summary.goodput is None
    assert summary.completed == summary.failed == 0
    assert summary.request_throughput == 0.0
    assert summary.ttft_ms.p50 is None
    assert stats_ms([]).mean is None


def test_meets_slo_per_key() -> None:
    first, second, third, failed = _results()
    assert meets_slo(third, Slo(e2e=700))
    assert not meets_slo(first, Slo(e2e=700))
    assert not meets_slo(failed, Slo())
    # A request without TTFT (non-streaming) is judged on what it has.
    assert meets_slo(RequestResult(ok=True, e2e=0.2, output_tokens=3), Slo(ttft=1, e2e=300))
    assert meets_slo(second, Slo(ttft=300))
    assert not meets_slo(second, Slo(ttft=299.9))


def test_parse_slo() -> None:
    assert parse_slo("ttft=500,tpot=50") == Slo(ttft=500, tpot=50)
    assert parse_slo(" e2e = 2000 ") == Slo(e2e=2000)
    assert parse_slo(None) == Slo()
    assert not Slo().is_set()
    for bad in ("ttft", "itl=5", "ttft=-1", "ttft=abc"):
        with pytest.raises(ValueError):  # noqa: PT011
            parse_slo(bad)


def test_recommend_best_throughput_meeting_slo() -> None:
    fast = RequestResult(ok=True, e2e=0.1, ttft=0.05, output_tokens=10)
    slow = RequestResult(ok=True, e2e=5.0, ttft=2.0, output_tokens=10)
    broken = RequestResult(ok=False, e2e=0.1, error="HTTP 500")
    slo = Slo(ttft=100)
    one = summarize([fast] * 10, 10.0, slo)  # 10 tok/s, all good
    two = summarize([fast] * 19 + [slow], 10.0, slo)  # 20 tok/s, 95% good
    four = summarize([fast] * 5 + [slow] * 25, 10.0, slo)  # 30 tok/s, 17% good
    points = [(1.0, one), (2.0, two), (4.0, four)]
    assert recommend(points, 0.9) == 2.0
    assert recommend(points, 0.99) == 1.0
    assert recommend(points, 0.1) == 4.0
    failing = summarize([fast] * 5 + [broken] * 5, 1.0, Slo())
    assert recommend([(1.0, failing)], 0.9) is None
    # Equal throughput: the lower level wins.
    assert recommend([(8.0, one), (4.0, one)], 0.9) == 4.0


def test_ratio_and_compare() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0.0) is None
    a = summarize([RequestResult(ok=True, e2e=1.0, ttft=0.2, output_tokens=5)], 2.0, Slo())
    b = summarize([RequestResult(ok=True, e2e=2.0, ttft=0.1, output_tokens=5)] * 2, 2.0, Slo())
    ratios = compare(a, b)
    assert ratios["request_throughput"] == pytest.approx(0.5)
    assert ratios["output_throughput"] == pytest.approx(0.5)
    assert ratios["ttft_p50"] == pytest.approx(2.0)
    assert ratios["tpot_p50"] == pytest.approx((0.8 / 4) / (1.9 / 4))
    assert ratios["e2e_p50"] == pytest.approx(0.5)
