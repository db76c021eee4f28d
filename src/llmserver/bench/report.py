"""Results of a run as a text table, as JSON and as a PNG chart."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import orjson

from llmserver.bench.config import BenchReport, LevelResult
from llmserver.bench.metrics import DEFINITIONS, Stats, Summary

_LATENCIES = (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2E", "e2e_ms"))
PLOT_HINT = "--plot needs matplotlib: pip install 'llmserver[bench]'"


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])

    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


def _throughput_rows(levels: list[LevelResult], label: str) -> list[list[str]]:
    rows = []
    for lr in levels:
        s = lr.summaries[label]
        rows.append(
            [
                lr.level.name,
                str(s.completed),
                str(s.failed),
                _num(s.request_throughput),
                _num(s.output_throughput, 1),
                _num(s.goodput),
                _num(s.total_output_tokens / s.completed if s.completed else None, 1),
                _num(s.total_input_tokens / s.completed if s.total_input_tokens else None, 1),
                _num(s.total_cached_tokens / s.completed if s.total_cached_tokens else None, 1),
            ]
        )
    return rows


def _latency_rows(levels: list[LevelResult], label: str) -> list[list[str]]:
    rows = []
    for name, attr in _LATENCIES:
        for lr in levels:
            stats: Stats = getattr(lr.summaries[label], attr)
            rows.append([f"{name} {lr.level.name}", *(_num(v) for v in dataclasses.astuple(stats))])
    return rows


def _target_block(report: BenchReport, label: str, base_url: str) -> str:
    head = f"== {label}: {base_url} (model {report.models[label]}) =="
    throughput = _table(
        ["level", "ok", "failed", "req/s", "out tok/s", "goodput", "out tok", "in tok", "cached"],
        _throughput_rows(report.levels, label),
    )
    latency = _table(
        ["latency (ms)", "mean", "p50", "p90", "p99"], _latency_rows(report.levels, label)
    )
    errors: dict[str, int] = {}
    for lr in report.levels:
        for reason, count in lr.summaries[label].errors.items():
            errors[reason] = errors.get(reason, 0) + count
    parts = [head, throughput, "", latency]
    turns = [
        [lr.level.name, *(_num(v) for v in lr.summaries[label].ttft_p50_by_turn)]
        for lr in report.levels
        if lr.summaries[label].ttft_p50_by_turn
    ]
    if turns:
        width = max(len(row) for row in turns) - 1
        header = ["TTFT p50 (ms) by turn", *(str(t + 1) for t in range(width))]
        parts += ["", _table(header, [row + ["-"] * (width + 1 - len(row)) for row in turns])]
    if errors:
        parts.append("failures: " + ", ".join(f"{k}: {v}" for k, v in errors.items()))
    return "\n".join(parts)


def _ratio_block(report: BenchReport) -> str:
    a, b = (t.label for t in report.config.targets)
    rows = []
    for lr in report.levels:
        ratios = lr.ratios or {}
        rows.append([lr.level.name, *(_ratio(ratios.get(k)) for k in _RATIO_KEYS)])
    header = ["level", "req/s", "out tok/s", "TTFT p50", "TPOT p50", "E2E p50"]
    note = f"ratios {a} / {b} (throughput > 1 and latency < 1 mean {a} is better)"
    return note + "\n" + _table(header, rows)


_RATIO_KEYS = ("request_throughput", "output_throughput", "ttft_p50", "tpot_p50", "e2e_p50")


def _recommendation_lines(report: BenchReport) -> list[str]:
    mode = report.config.levels[0].mode
    slo = report.config.slo
    condition = (
        f"meeting the SLO for {report.config.attainment:.0%} of requests"
        if slo.is_set()
        else f"with {report.config.attainment:.0%} of requests successful (no --slo given)"
    )
    lines = []
    for label, value in report.recommendations.items():
        if value is None:
            lines.append(f"recommendation ({label}): no level {condition}")
        elif mode == "concurrency":
            lines.append(
                f"recommendation ({label}): concurrency {value:g}, the best output throughput "
                f"{condition}; configure it as the model's slots"
            )
        else:
            lines.append(
                f"recommendation ({label}): rate {value:g} req/s, the best output throughput "
                f"{condition}"
            )
    return lines


def format_report(report: BenchReport) -> str:
    """The human-readable results: tables, ratios, definitions and the recommendation."""
    blocks = [_target_block(report, t.label, t.base_url) for t in report.config.targets]
    if len(report.config.targets) == 2:
        blocks.append(_ratio_block(report))
    definitions = "\n".join(f"  {k}: {v}" for k, v in DEFINITIONS.items())
    blocks.append("definitions (vLLM benchmark_serving):\n" + definitions)
    blocks.append("\n".join(_recommendation_lines(report)))
    return "\n\n".join(blocks)


def _config_dict(report: BenchReport) -> dict[str, Any]:
    config = report.config
    workload = config.workload
    return {
        "endpoint": workload.endpoint,
        "stream": workload.stream,
        "input_tokens": None if workload.prompts else workload.input_tokens,
        "output_tokens": workload.output_tokens,
        "prompts": len(workload.prompts) or None,
        "seed": workload.seed,
        "extra_body": workload.extra_body,
        "shared_prefix": workload.shared_prefix,
        "multi_turn": workload.turns,
        "conversations": workload.conversations,
        "unique": workload.unique,
        "mode": config.levels[0].mode,
        "levels": [level.number for level in config.levels],
        "requests": config.requests,
        "duration_s": config.duration_s,
        "warmup": config.warmup,
        "rounds": config.rounds,
        "slo_ms": dataclasses.asdict(config.slo),
        "slo_attainment": config.attainment,
    }


def report_dict(report: BenchReport) -> dict[str, Any]:
    """The results as plain JSON-ready data."""
    results = []
    ratios = []
    for lr in report.levels:
        level = {"mode": lr.level.mode, "level": lr.level.number}
        for label, summary in lr.summaries.items():
            results.append({"target": label, **level, **dataclasses.asdict(summary)})
        if lr.ratios is not None:
            ratios.append({**level, **lr.ratios})
    return {
        "definitions": DEFINITIONS,
        "config": _config_dict(report),
        "targets": [
            {"label": t.label, "base_url": t.base_url, "model": report.models[t.label]}
            for t in report.config.targets
        ],
        "results": results,
        "ratios": ratios,
        "recommendations": {
            label: {"mode": report.config.levels[0].mode, "value": _number(value)}
            for label, value in report.recommendations.items()
        },
    }


def _number(value: float | None) -> float | int | None:
    return int(value) if value is not None and value == int(value) else value


def write_json(report: BenchReport, path: Path) -> None:
    """Write :func:`report_dict` to ``path``."""
    path.write_bytes(orjson.dumps(report_dict(report), option=orjson.OPT_INDENT_2))


def plot_available() -> bool:
    """Whether matplotlib can be imported."""
    return importlib.util.find_spec("matplotlib") is not None


def _series(report: BenchReport, label: str, pick: str) -> list[float | None]:
    values: list[float | None] = []
    for lr in report.levels:
        summary: Summary = lr.summaries[label]
        if pick == "output_throughput":
            values.append(summary.output_throughput)
        else:
            values.append(getattr(summary, pick).p50)
    return values


def write_plot(report: BenchReport, path: Path) -> None:
    """Chart output throughput and p50 latencies against the level, one line per target.

    Raises PlotUnavailableError when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailableError(PLOT_HINT) from exc
    mode = report.config.levels[0].mode
    xs = [lr.level.value for lr in report.levels]
    panels = (
        ("output_throughput", "output tokens/s"),
        ("ttft_ms", "TTFT p50 (ms)"),
        ("tpot_ms", "TPOT p50 (ms)"),
        ("e2e_ms", "E2E p50 (ms)"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (pick, title) in zip(axes.flat, panels, strict=True):
        for target in report.config.targets:
            ys = [float("nan") if y is None else y for y in _series(report, target.label, pick)]
            ax.plot(xs, ys, marker="o", label=target.label)
        ax.set_title(title)
        ax.set_xlabel("concurrency" if mode == "concurrency" else "request rate (req/s)")
        if mode == "concurrency" and len(xs) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"llmserver bench ({report.config.workload.endpoint})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
