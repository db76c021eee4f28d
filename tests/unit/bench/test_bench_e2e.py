"""The bench command end to end, against mock servers on loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmserver.bench.__main__ import main

StartMock = Callable[..., str]


def _bench(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "results.json"
    code = main([*argv, "--no-progress", "--out", str(out)])
    data = orjson.loads(out.read_bytes()) if out.exists() else {}
    return code, data


def _results(data: dict[str, Any], target: str) -> list[dict[str, Any]]:
    return [r for r in data["results"] if r["target"] == target]


def test_stream_sweep_against_two_servers(
    mock_server: StartMock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = mock_server(), mock_server(model="other-model")
    code, data = _bench(
        tmp_path,
        "--base-url", a, "--vs", b, "--label", "ours", "--vs-label", "theirs",
        "--concurrency", "1,2", "--requests", "12", "--rounds", "2", "--warmup", "2",
        "--output-tokens", "5", "--input-tokens", "40", "--slo", "ttft=5000,tpot=5000",
    )  # fmt: skip
    assert code == 0
    assert [t["model"] for t in data["targets"]] == ["mock-model", "other-model"]
    for target in ("ours", "theirs"):
        rows = _results(data, target)
        assert [r["level"] for r in rows] == [1, 2]
        for row in rows:
            assert row["completed"] == 12
            assert row["failed"] == 0
            assert row["good"] == 12
            assert row["total_output_tokens"] == 12 * 5
            assert row["output_tokens_min"] == row["output_tokens_max"] == 5
            assert row["usage_reported"] == 12
            assert row["ttft_ms"]["p50"] is not None
            assert row["goodput"] == pytest.approx(row["request_throughput"])
    assert [r["level"] for r in data["ratios"]] == [1, 2]
    assert all(r["output_throughput"] > 0 for r in data["ratios"])
    assert data["recommendations"]["ours"]["value"] in (1, 2)
    assert data["config"]["slo_ms"] == {"ttft": 5000.0, "tpot": 5000.0, "e2e": None}
    stdout = capsys.readouterr().out
    assert "ratios ours / theirs" in stdout
    assert "recommendation (ours): concurrency" in stdout
    assert "TPOT" in stdout


def test_non_stream_completions(mock_server: StartMock, tmp_path: Path) -> None:
    url = mock_server()
    code, data = _bench(
        tmp_path, "--base-url", url, "--endpoint", "completions", "--no-stream",
        "--concurrency", "2", "--requests", "10", "--output-tokens", "7", "--warmup", "0",
    )  # fmt: skip
    assert code == 0
    (row,) = data["results"]
    assert (row["completed"], row["failed"]) == (10, 0)
    assert row["total_output_tokens"] == 70
    assert row["ttft_ms"]["mean"] is None
    assert row["e2e_ms"]["mean"] > 0


def test_streamed_chunks_give_itl_and_tpot(mock_server: StartMock, tmp_path: Path) -> None:
    url = mock_server(delay_ms=2.0)
    code, data = _bench(
        tmp_path, "--base-url", url, "--model", "chosen", "--concurrency", "2",
        "--requests", "4", "--output-tokens", "4",
    )  # fmt: skip
    assert code == 0
    (row,) = data["results"]
    assert data["targets"][0]["model"] == "chosen"
    assert row["completed"] == 4
    assert row["itl_ms"]["p50"] >= 1.0
    assert row["tpot_ms"]["p50"] >= 1.0


@pytest.mark.parametrize("stream", ["--stream", "--no-stream"])
def test_truncating_server_counts_as_failures(
    mock_server: StartMock, tmp_path: Path, stream: str
) -> None:
    url = mock_server(truncate=3)
    code, data = _bench(
        tmp_path, "--base-url", url, stream, "--concurrency", "2", "--requests", "6",
        "--output-tokens", "8", "--warmup", "0",
    )  # fmt: skip
    assert code == 1
    (row,) = data["results"]
    assert (row["completed"], row["failed"]) == (0, 6)
    assert row["total_output_tokens"] == 0
    assert row["output_throughput"] == 0
    expected = "stream ended without [DONE]" if stream == "--stream" else "output token count"
    assert any(reason.startswith(expected) for reason in row["errors"])
    assert data["recommendations"]["A"]["value"] is None


def test_open_loop_rate_and_duration(mock_server: StartMock, tmp_path: Path) -> None:
    url = mock_server()
    code, data = _bench(
        tmp_path, "--base-url", url, "--rate", "200", "--requests", "20", "--output-tokens", "3"
    )
    assert code == 0
    (row,) = data["results"]
    assert (row["mode"], row["level"], row["completed"]) == ("rate", 200, 20)
    code, data = _bench(tmp_path, "--base-url", url, "--concurrency", "2", "--duration", "0.2")
    assert code == 0
    assert data["results"][0]["completed"] > 0
    assert data["results"][0]["failed"] == 0


def test_prompts_file(mock_server: StartMock, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"messages": [{"role": "user", "content": "one two three"}]}\n')
    code, data = _bench(
        tmp_path, "--base-url", mock_server(), "--prompts", str(prompts),
        "--concurrency", "1", "--requests", "3", "--output-tokens", "2",
    )  # fmt: skip
    assert code == 0
    (row,) = data["results"]
    assert row["completed"] == 3
    assert row["total_input_tokens"] == 3 * 4  # the tag and three words, as the mock counts


def test_plot_writes_png(mock_server: StartMock, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    chart = tmp_path / "chart.png"
    code, _ = _bench(
        tmp_path, "--base-url", mock_server(), "--vs", mock_server(), "--concurrency", "1,2",
        "--requests", "4", "--output-tokens", "3", "--plot", str(chart),
    )  # fmt: skip
    assert code == 0
    assert chart.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "argv",
    [
        ["--slo", "latency=5"],
        ["--rate", "1", "--concurrency", "2"],
        ["--concurrency", "1.5"],
        ["--no-stream", "--slo", "ttft=100"],
        ["--extra-body", "[1]"],
        ["--prompts", "/nonexistent/prompts.txt"],
    ],
)
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--base-url", "http://127.0.0.1:9/v1", *argv]) == 2
    assert "llmserver bench: error:" in capsys.readouterr().err


def test_unreachable_server_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--base-url", "http://127.0.0.1:9/v1", "--timeout", "5"]) == 2
    assert "GET http://127.0.0.1:9/v1/models" in capsys.readouterr().err


def test_plot_without_matplotlib_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmserver.bench import report

    monkeypatch.setattr(report, "plot_available", lambda: False)
    assert main(["--plot", str(tmp_path / "c.png")]) == 2
    assert "pip install 'llmserver[bench]'" in capsys.readouterr().err
