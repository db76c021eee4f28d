"""A small progress bar on stderr, redrawn at most ten times a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 24
_INTERVAL_S = 0.1


class ProgressBar:
    """Progress of one batch, by request count or by elapsed time.

    On a terminal the line is redrawn in place; elsewhere only the final line is written, so
    logs stay readable.
    """

    def __init__(
        self,
        label: str,
        total: int | None,
        duration_s: float | None,
        enabled: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self._label = label
        self._total = total
        self._duration = duration_s
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._live = enabled and self._stream.isatty()
        self._start = time.perf_counter()
        self._drawn = 0.0
        self.done = 0
        self.failed = 0

    def update(self, ok: bool) -> None:
        """Count one finished request and redraw when it is time."""
        self.done += 1
        if not ok:
            self.failed += 1
        now = time.perf_counter()
        if self._live and now - self._drawn >= _INTERVAL_S:
            self._drawn = now
            self._stream.write("\r" + self._line(now))
            self._stream.flush()

    def close(self) -> None:
        """Write the final state of the bar and end its line."""
        if not self._enabled:
            return
        prefix = "\r" if self._live else ""
        self._stream.write(prefix + self._line(time.perf_counter()) + "\n")
        self._stream.flush()

    def _fraction(self, elapsed: float) -> float:
        fractions = []
        if self._total:
            fractions.append(self.done / self._total)
        if self._duration:
            fractions.append(elapsed / self._duration)
        return min(1.0, max(fractions, default=0.0))

    def _line(self, now: float) -> str:
        elapsed = now - self._start
        filled = round(self._fraction(elapsed) * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        count = f"{self.done}/{self._total}" if self._total else str(self.done)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self._label:<24} [{bar}] {count} {elapsed:6.1f}s {rate:7.1f} req/s{failed}"
