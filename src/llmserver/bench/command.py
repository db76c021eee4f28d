"""``llmserver bench``: arguments and the entry point.

Importing this module is cheap: aiohttp and matplotlib are imported only when a run starts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from llmserver.bench.config import BenchConfig, BenchError, Level, LoadMode, TargetSpec
from llmserver.bench.metrics import parse_slo
from llmserver.bench.workload import Workload, load_prompts

DEFAULT_CONCURRENCY = "1,2,4,8,16"
DEFAULT_REQUESTS = 100


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("targets")
    group.add_argument(
        "--base-url",
        default="http://127.0.0.1:8000/v1",
        help="OpenAI-compatible base URL, ending in /v1 (default: %(default)s)",
    )
    group.add_argument("--api-key", help="API key, sent as a Bearer token")
    group.add_argument("--model", help="model id (default: the first one from GET /models)")
    group.add_argument("--label", default="A", help="name of this target in the output")
    group.add_argument(
        "--api",
        choices=("openai", "ollama"),
        default="openai",
        help="the target's protocol: openai (base URL ending in /v1) or ollama (the server's "
        "root URL; /api/chat and /api/generate) (default: %(default)s)",
    )
    group.add_argument(
        "--vs", metavar="URL", help="a second base URL, measured in the same run, interleaved"
    )
    group.add_argument("--vs-model", help="model id on --vs (default: its first model)")
    group.add_argument("--vs-api-key", help="API key for --vs")
    group.add_argument("--vs-label", default="B", help="name of the --vs target in the output")
    group.add_argument(
        "--vs-api", choices=("openai", "ollama"), default="openai", help="--api of --vs"
    )


def _add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("workload")
    group.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    group.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stream responses; needed for TTFT, TPOT and ITL (default: on)",
    )
    group.add_argument(
        "--input-tokens",
        type=int,
        default=128,
        help="approximate prompt length, in repeated common words; the server's usage, "
        "when reported, gives the real count ('in tok') (default: %(default)s)",
    )
    group.add_argument(
        "--output-tokens",
        type=int,
        default=128,
        help="output length, enforced with max_tokens, min_tokens and ignore_eos; "
        "0 lets the server decide (default: %(default)s)",
    )
    group.add_argument(
        "--prompts",
        type=Path,
        metavar="FILE",
        help="prompts, one per line or JSON Lines (string or {messages|prompt|text})",
    )
    group.add_argument(
        "--shared-prefix",
        type=int,
        default=0,
        metavar="N",
        help="put the same instruction of about N tokens before every prompt (a prefix cache "
        "serves it); each request's tag comes after it (default: none)",
    )
    group.add_argument(
        "--multi-turn",
        type=int,
        default=0,
        metavar="T",
        help="chat conversations of T turns, each request repeating its conversation's earlier "
        "turns; TTFT is also reported per turn (default: off)",
    )
    group.add_argument(
        "--conversations",
        type=int,
        default=1,
        help="conversations side by side with --multi-turn (default: %(default)s)",
    )
    group.add_argument(
        "--unique",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tag each prompt so that no two requests are the same; --no-unique sends the same "
        "request every time, to measure a response cache (default: on)",
    )
    group.add_argument("--extra-body", metavar="JSON", help="a JSON object merged into requests")
    group.add_argument("--seed", type=int, default=0, help="seed for prompts and arrivals")


def _add_load_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("load")
    group.add_argument(
        "--concurrency",
        metavar="N[,N...]",
        help=f"closed-loop sweep of concurrent clients (default: {DEFAULT_CONCURRENCY})",
    )
    group.add_argument(
        "--rate",
        metavar="R[,R...]",
        help="open loop: Poisson arrivals of R requests/s, seeded (instead of --concurrency)",
    )
    group.add_argument(
        "--requests",
        type=int,
        help=f"requests per level (default: {DEFAULT_REQUESTS}, or unlimited with --duration)",
    )
    group.add_argument("--duration", type=float, metavar="S", help="seconds per level")
    group.add_argument(
        "--warmup", type=int, default=2, help="requests sent first, not counted (default: 2)"
    )
    group.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="split each level in rounds, alternating targets A,B,B,A... (default: 1)",
    )
    group.add_argument("--timeout", type=float, default=600.0, help="seconds per request")


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("results")
    group.add_argument(
        "--slo",
        metavar="KEY=MS,...",
        help="objectives for goodput, keys ttft, tpot, e2e in ms, e.g. ttft=500,tpot=50",
    )
    group.add_argument(
        "--slo-attainment",
        type=float,
        default=0.9,
        help="share of requests that must meet the SLO for a level to qualify (default: 0.9)",
    )
    group.add_argument("--out", type=Path, metavar="FILE", help="write the results as JSON")
    group.add_argument("--plot", type=Path, metavar="FILE", help="write a PNG chart (matplotlib)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bench command's arguments to ``parser``."""
    parser.description = parser.description or (
        "Load-test an OpenAI-compatible endpoint: TTFT, TPOT, ITL, E2E latency, throughput "
        "and goodput per concurrency level, with a recommended number of slots."
    )
    _add_target_arguments(parser)
    _add_workload_arguments(parser)
    _add_load_arguments(parser)
    _add_output_arguments(parser)


def _parse_levels(args: argparse.Namespace) -> tuple[Level, ...]:
    if args.rate and args.concurrency:
        raise BenchError("give --concurrency or --rate, not both")
    mode: LoadMode = "rate" if args.rate else "concurrency"
    text = args.rate or args.concurrency or DEFAULT_CONCURRENCY
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise BenchError(f"bad --{mode}: {text!r}") from exc
    if not values or any(v <= 0 for v in values):
        raise BenchError(f"--{mode} needs positive numbers")
    if mode == "concurrency" and any(v != int(v) for v in values):
        raise BenchError("--concurrency needs whole numbers")
    return tuple(Level(mode, v) for v in values)


def _parse_extra_body(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BenchError(f"bad --extra-body: {exc}") from exc
    if not isinstance(value, dict):
        raise BenchError("--extra-body must be a JSON object")
    return value


def _workload(args: argparse.Namespace) -> Workload:
    if args.output_tokens < 0 or args.input_tokens < 1:
        raise BenchError("--input-tokens must be >= 1 and --output-tokens >= 0")
    if args.shared_prefix < 0 or args.multi_turn < 0 or args.conversations < 1:
        raise BenchError("--shared-prefix and --multi-turn must be >= 0, --conversations >= 1")
    if args.multi_turn and args.endpoint != "chat":
        raise BenchError("--multi-turn needs --endpoint chat")
    try:
        prompts = load_prompts(args.prompts) if args.prompts else ()
    except (OSError, ValueError) as exc:
        raise BenchError(f"--prompts: {exc}") from exc
    return Workload(
        endpoint=args.endpoint,
        stream=args.stream,
        input_tokens=args.input_tokens,
        output_tokens=args.output_tokens,
        seed=args.seed,
        prompts=prompts,
        extra_body=_parse_extra_body(args.extra_body),
        shared_prefix=args.shared_prefix,
        turns=args.multi_turn,
        conversations=args.conversations,
        unique=args.unique,
    )


def _targets(args: argparse.Namespace) -> tuple[TargetSpec, ...]:
    targets = [TargetSpec(args.label, args.base_url, args.api_key, args.model, args.api)]
    if args.vs:
        if args.vs_label == args.label:
            raise BenchError("--label and --vs-label must differ")
        vs = TargetSpec(args.vs_label, args.vs, args.vs_api_key, args.vs_model, args.vs_api)
        targets.append(vs)
    return tuple(targets)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Validate the parsed arguments into a :class:`BenchConfig`; raises BenchError."""
    requests = args.requests
    if requests is None and args.duration is None:
        requests = DEFAULT_REQUESTS
    if (requests is not None and requests < 1) or (
        args.duration is not None and args.duration <= 0
    ):
        raise BenchError("--requests and --duration must be positive")
    if args.rounds < 1 or args.warmup < 0 or args.timeout <= 0:
        raise BenchError("--rounds must be >= 1, --warmup >= 0 and --timeout > 0")
    if not 0 < args.slo_attainment <= 1:
        raise BenchError("--slo-attainment must be in (0, 1]")
    try:
        slo = parse_slo(args.slo)
    except ValueError as exc:
        raise BenchError(str(exc)) from exc
    if not args.stream and (slo.ttft is not None or slo.tpot is not None):
        raise BenchError("--slo ttft and tpot need --stream; use e2e with --no-stream")
    return BenchConfig(
        targets=_targets(args),
        workload=_workload(args),
        levels=_parse_levels(args),
        requests=requests,
        duration_s=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        timeout_s=args.timeout,
        slo=slo,
        attainment=args.slo_attainment,
        progress=not args.no_progress,
    )


def _error(message: str) -> int:
    print(f"llmserver bench: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; 0 when requests succeeded, 1 when none did, 2 on a usage error."""
    from llmserver.bench import report

    try:
        config = config_from_args(args)
    except BenchError as exc:
        return _error(str(exc))
    if args.plot and not report.plot_available():
        return _error(report.PLOT_HINT)

    from llmserver.bench.runner import run_benchmark

    try:
        result = asyncio.run(run_benchmark(config))
    except BenchError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        return 130
    print(report.format_report(result))
    if args.out:
        report.write_json(result, args.out)
    if args.plot:
        report.write_plot(result, args.plot)
    succeeded = any(s.completed for lr in result.levels for s in lr.summaries.values())
    return 0 if succeeded else 1
