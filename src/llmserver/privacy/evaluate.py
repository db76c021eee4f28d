"""Precision and recall of the recognisers on a labelled set of sentences.

Each line of the cases file is ``{"text": ..., "entities": [{"type": ..., "text": ...}]}``;
entity texts are exact substrings of the normalised sentence. Predictions and labels are
compared as multisets of (type, text) per sentence.

Run ``python -m llmserver.privacy.evaluate [path]`` to print a table.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmserver.privacy.masker import PIIMasker
from llmserver.privacy.normalize import normalize
from llmserver.privacy.types import PIIType


@dataclass(frozen=True)
class Scores:
    """Counts for one type; precision and recall are 1.0 where nothing was predicted or due."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def support(self) -> int:
        """Number of labelled entities of this type."""
        return self.true_positives + self.false_negatives

    @property
    def precision(self) -> float:
        """Share of predictions that were labelled."""
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 1.0

    @property
    def recall(self) -> float:
        """Share of labelled entities that were predicted."""
        return self.true_positives / self.support if self.support else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def default_cases_path() -> Path:
    """Return ``tests/data/pii_cases.jsonl`` of the source checkout this module lives in."""
    return Path(__file__).resolve().parents[3] / "tests" / "data" / "pii_cases.jsonl"


def load_cases(path: Path) -> list[tuple[str, Counter[tuple[PIIType, str]]]]:
    """Read the labelled cases: (sentence, multiset of (type, text))."""
    cases: list[tuple[str, Counter[tuple[PIIType, str]]]] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            labels = Counter((PIIType(e["type"]), str(e["text"])) for e in record["entities"])
            cases.append((str(record["text"]), labels))
    return cases


def evaluate(cases_path: str | Path, masker: PIIMasker | None = None) -> dict[PIIType, Scores]:
    """Score ``masker`` (by default one that finds every type) per type on a cases file."""
    masker = masker or PIIMasker()
    counts = {t: [0, 0, 0] for t in PIIType}
    for text, expected in load_cases(Path(cases_path)):
        found = Counter((m.type, m.text) for m in masker.find(normalize(text)))
        for (kind, _), n in (found & expected).items():
            counts[kind][0] += n
        for (kind, _), n in (found - expected).items():
            counts[kind][1] += n
        for (kind, _), n in (expected - found).items():
            counts[kind][2] += n
    return {t: Scores(*c) for t, c in counts.items()}


def overall(scores: Iterable[Scores]) -> Scores:
    """Micro-average: the summed counts of all types."""
    tp = fp = fn = 0
    for s in scores:
        tp, fp, fn = tp + s.true_positives, fp + s.false_positives, fn + s.false_negatives
    return Scores(tp, fp, fn)


def format_table(scores: dict[PIIType, Scores]) -> str:
    """Return a plain-text table of precision, recall, F1 and support per type and overall."""
    rows = [f"{'type':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    named = [(t.value, s) for t, s in scores.items()]
    for name, s in [*named, ("overall", overall(scores.values()))]:
        rows.append(f"{name:<10}{s.precision:>10.3f}{s.recall:>10.3f}{s.f1:>10.3f}{s.support:>10}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the evaluation table for a cases file."""
    parser = argparse.ArgumentParser(description="Evaluate the PII recognisers.")
    parser.add_argument("path", nargs="?", type=Path, default=None, help="labelled JSONL file")
    args = parser.parse_args(argv)
    path: Path = args.path or default_cases_path()
    print(format_table(evaluate(path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
