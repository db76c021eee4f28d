"""The thought splitter on reasoning models' replies (tests/data/reasoning, written in the
style of Qwen3's and DeepSeek-R1's public examples), streamed in every possible two-piece
split and piece by piece: the streamed thought and answer join to exactly the collected ones,
and no marker leaks into either."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from llmserver.backends.thought import ThoughtSpec, ThoughtSplitter, split

DATA = Path(__file__).parents[1] / "data" / "reasoning"
#: each recorded reply and whether its prompt opened the thought (R1's template does)
CASES = [("qwen3.txt", False), ("deepseek_r1.txt", True), ("qwen3_no_think.txt", False)]


def _case(name: str) -> tuple[str, str, str]:
    head, raw = (DATA / name).read_text(encoding="utf-8").split("\n---\n", 1)
    thought, answer = (codecs.decode(line, "unicode_escape") for line in head.split("\n"))
    return raw, thought, answer


def _streamed(spec: ThoughtSpec, pieces: list[str]) -> tuple[str, str, list[tuple[str, str]]]:
    splitter = ThoughtSplitter(spec)
    out = [splitter.feed(piece) for piece in pieces]
    out.append(splitter.finish())
    return "".join(t for t, _ in out), "".join(a for _, a in out), out


@pytest.mark.parametrize(("name", "opened"), CASES)
def test_collected_split_matches_the_recorded_thought_and_answer(name: str, opened: bool) -> None:
    raw, thought, answer = _case(name)
    assert split(ThoughtSpec(open=opened), raw) == (thought, answer)


@pytest.mark.parametrize(("name", "opened"), CASES)
def test_every_two_piece_split_streams_the_collected_result(name: str, opened: bool) -> None:
    raw, thought, answer = _case(name)
    spec = ThoughtSpec(open=opened)
    for cut in range(len(raw) + 1):
        got_thought, got_answer, pieces = _streamed(spec, [raw[:cut], raw[cut:]])
        assert (got_thought, got_answer) == (thought, answer), cut
        for piece_thought, piece_answer in pieces:
            assert "<think>" not in piece_thought + piece_answer or name == "qwen3_no_think.txt"
            assert "</think>" not in piece_thought + piece_answer


@pytest.mark.parametrize(("name", "opened"), CASES)
def test_character_by_character_never_leaks_a_marker(name: str, opened: bool) -> None:
    raw, thought, answer = _case(name)
    got_thought, got_answer, pieces = _streamed(ThoughtSpec(open=opened), list(raw))
    assert (got_thought, got_answer) == (thought, answer)
    if name != "qwen3_no_think.txt":
        assert not any("<" in t and "think" in t for t, _ in pieces)


def test_a_thought_cut_short_is_all_thought() -> None:
    raw, _, _ = _case("qwen3.txt")
    cut = raw[: raw.index("</think>") + 3]  # ends inside the end marker
    thought, answer = split(ThoughtSpec(), cut)
    assert answer == ""
    assert thought.startswith("Okay, the user")
    assert thought.endswith("</t")


def test_a_reply_without_a_thought_is_left_as_written() -> None:
    assert split(ThoughtSpec(), "  Hello there") == ("", "  Hello there")
    assert split(ThoughtSpec(), "<thinking>not ours") == ("", "<thinking>not ours")
    assert split(ThoughtSpec(), "  ") == ("", "")


def test_custom_markers() -> None:
    spec = ThoughtSpec(start="[THINK]", end="[/THINK]", open=False)
    assert split(spec, "[THINK]plan[/THINK]answer") == ("plan", "answer")
