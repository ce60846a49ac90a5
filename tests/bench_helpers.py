"""Records of the benchmark harness as a worker writes them, for tests of what reads them."""
from __future__ import annotations

from benchmarks.config import BenchConfig


def run_record(config: BenchConfig, step_times_s: list[float], repeat: int = 0, **fields) -> dict:
    """A successful record of `config` in `repeat` as results.json holds it: its settings as the
    worker writes them (everything but the mode), its timed steps (s), and `fields` on top."""
    settings = {k: v for k, v in config.to_dict().items() if k != "mode"}
    return {"key": config.key(), "repeat": repeat, "ok": True, "config": config.to_dict(), "settings": settings,
            "step_times_s": list(step_times_s), "first_step_s": 1.0, "peak_rss_mb": 1.0, **fields}
