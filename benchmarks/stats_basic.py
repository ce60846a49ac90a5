"""Medians and spreads of repeated measurements (shared by every benchmark script)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def summarize(samples: Sequence[float]) -> dict:
    """Median, interquartile range, min and max of repeated measurements."""
    values = np.asarray(samples, dtype=float)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "iqr": float(q3 - q1), "min": float(values.min()),
            "max": float(values.max()), "n": int(values.size), "samples": [float(v) for v in values]}


def format_rate(summary: dict, unit: str) -> str:
    return (f"{summary['median']:,.1f} {unit} (median of {summary['n']}, IQR {summary['iqr']:,.1f}, "
            f"range {summary['min']:,.1f}-{summary['max']:,.1f})")
