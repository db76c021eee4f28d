"""Quality thresholds on the labelled set, and the evaluation command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmserver.privacy import PIIType, normalize
from llmserver.privacy.evaluate import Scores, default_cases_path, evaluate, main, overall

CASES = Path(__file__).resolve().parents[2] / "data" / "pii_cases.jsonl"
# Values written the way people write them: glued, wrapped, in URLs and JSON, Hangul numerals.
HARD_CASES = CASES.with_name("pii_cases_hard.jsonl")


def test_labelled_set_is_large_and_well_formed() -> None:
    lines = [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines()]
    assert len(lines) >= 300
    assert sum(1 for case in lines if not case["entities"]) >= 60
    for case in lines:
        for entity in case["entities"]:
            assert PIIType(entity["type"])
            assert entity["text"] in normalize(case["text"])


def test_hard_set_is_large_and_well_formed() -> None:
    lines = [json.loads(line) for line in HARD_CASES.read_text(encoding="utf-8").splitlines()]
    assert len(lines) >= 150
    assert sum(1 for case in lines if not case["entities"]) >= 60
    for case in lines:
        for entity in case["entities"]:
            assert PIIType(entity["type"])
            assert entity["text"] in normalize(case["text"])


def test_default_path_is_the_repository_set() -> None:
    assert default_cases_path() == CASES


@pytest.fixture(scope="module")
def scores() -> dict[PIIType, Scores]:
    return evaluate(CASES)


@pytest.mark.parametrize("kind", [t for t in PIIType if t is not PIIType.ACCOUNT])
def test_recall_of_strict_types(scores: dict[PIIType, Scores], kind: PIIType) -> None:
    assert scores[kind].support >= 15
    assert scores[kind].recall >= 0.98


def test_account_recall(scores: dict[PIIType, Scores]) -> None:
    assert scores[PIIType.ACCOUNT].recall >= 0.9


def test_overall_precision(scores: dict[PIIType, Scores]) -> None:
    assert overall(scores.values()).precision >= 0.95


@pytest.mark.parametrize("cases", [CASES, HARD_CASES], ids=["first", "hard"])
def test_recall_and_precision_of_every_type_on_both_sets(cases: Path) -> None:
    scores = evaluate(cases)
    for kind, score in [*scores.items(), ("overall", overall(scores.values()))]:
        assert score.support > 0, kind
        assert score.recall >= 0.98, (kind, score)
        assert score.precision >= 0.98, (kind, score)


def test_main_prints_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        json.dumps(
            {"text": "전화 010-1234-5678", "entities": [{"type": "PHONE", "text": "010-1234-5678"}]}
        )
        + "\n"
        + json.dumps({"text": "고객센터 1588-1234", "entities": []})
        + "\n",
        encoding="utf-8",
    )
    assert main([str(cases)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["type", "precision", "recall", "f1", "support"]
    row = next(line for line in out.splitlines() if line.startswith("PHONE"))
    assert row.split()[1:] == ["1.000", "1.000", "1.000", "1"]
    assert any(line.startswith("overall") for line in out.splitlines())
