"""Configuration of a benchmark run; free of heavy imports so the CLI can build it cheaply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llmserver.bench.metrics import Slo, Summary
from llmserver.bench.workload import Workload

LoadMode = Literal["concurrency", "rate"]
#: the wire protocol a target speaks: OpenAI's (base URL ending in /v1) or Ollama's (/api)
Api = Literal["openai", "ollama"]


class BenchError(Exception):
    """A run cannot go on: bad arguments, or a target that cannot be used."""


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One endpoint to measure."""

    label: str
    base_url: str
    api_key: str | None = None
    model: str | None = None
    api: Api = "openai"


@dataclass(frozen=True, slots=True)
class Level:
    """One point of the sweep: a number of concurrent clients or an arrival rate (req/s)."""

    mode: LoadMode
    value: float

    @property
    def number(self) -> float | int:
        """The value, as an int when it is whole (concurrency levels always are)."""
        return int(self.value) if self.value == int(self.value) else self.value

    @property
    def name(self) -> str:
        """Short display name, e.g. ``c=8`` or ``rate=2.5``."""
        shown = f"{self.value:g}"
        return f"c={shown}" if self.mode == "concurrency" else f"rate={shown}"


@dataclass(frozen=True)
class BenchConfig:
    """Everything one run needs."""

    targets: tuple[TargetSpec, ...]
    workload: Workload
    levels: tuple[Level, ...]
    requests: int | None = 100
    duration_s: float | None = None
    warmup: int = 0
    rounds: int = 1
    timeout_s: float = 600.0
    slo: Slo = field(default_factory=Slo)
    attainment: float = 0.9
    progress: bool = True


@dataclass
class LevelResult:
    """The summaries of one level, by target label, and the A/B ratios when there are two."""

    level: Level
    summaries: dict[str, Summary]
    ratios: dict[str, float | None] | None = None


@dataclass
class BenchReport:
    """The outcome of a run."""

    config: BenchConfig
    models: dict[str, str]
    levels: list[LevelResult]
    recommendations: dict[str, float | None]
