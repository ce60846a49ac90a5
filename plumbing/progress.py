"""A small progress bar: live on a terminal, silent otherwise (CI logs stay readable)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts work done out of `total`; redraws one line on a TTY at most 10 times a second."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total, self.label, self.done = max(total, 0), label, 0
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = self._last = time.perf_counter()

    def __call__(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.live and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        rate = self.done / max(now - self.start, 1e-9)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} ({rate:.1f}/s)")
        self.stream.flush()

    def close(self) -> float:
        """End the line; returns elapsed seconds."""
        elapsed = time.perf_counter() - self.start
        if self.live:
            self._draw(time.perf_counter())
            self.stream.write("\n")
        return elapsed

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
