"""Statistics of the harness: throughput summaries, bootstrap intervals of ratios, and the
fixed-overhead fit step_time = a + b x batch."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .stats_basic import summarize

BOOTSTRAP_SAMPLES = 2000


def throughput(step_times_by_repeat: Sequence[Sequence[float]], batch: int) -> dict:
    """Images/s summary over every timed step of every repeat (median, IQR, range, n)."""
    rates = [batch / t for times in step_times_by_repeat for t in times]
    return summarize(rates)


def _resampled_medians(groups: Sequence[Sequence[float]], rng: np.random.Generator, picks: np.ndarray) -> np.ndarray:
    """Two-level bootstrap of the median: `picks` (n x repeats) says which repeats each
    resample takes; the steps within each picked repeat are resampled too, so drift between
    repeats widens the interval as it should."""
    arrays = [np.asarray(g, float) for g in groups]
    out = np.empty(len(picks))
    for i, row in enumerate(picks):
        out[i] = np.median(np.concatenate([rng.choice(arrays[p], arrays[p].size) for p in row]))
    return out


def ratio_interval(numerator: Sequence[Sequence[float]], denominator: Sequence[Sequence[float]],
                   seed: int = 0, n: int = BOOTSTRAP_SAMPLES, level: float = 0.95, paired: bool = False) -> dict:
    """Ratio of median step times denominator/numerator, i.e. how many times faster the
    numerator's mode is; each argument is per-repeat lists of step times (s).

    ``paired``: repeat i of both sides ran side by side (interleaved A B A B), so a resample
    takes the same repeats from both and machine drift common to the pair cancels, as the
    interleaving intends. Returns the point estimate and a percentile bootstrap interval.
    """
    if paired and len(numerator) != len(denominator):
        raise ValueError(f"paired repeats need equal counts, got {len(numerator)} and {len(denominator)}")
    rng = np.random.default_rng(seed)
    point = float(np.median(np.concatenate([np.asarray(g, float) for g in denominator])) /
                  np.median(np.concatenate([np.asarray(g, float) for g in numerator])))
    picks_num = rng.integers(0, len(numerator), (n, len(numerator)))
    picks_den = picks_num if paired else rng.integers(0, len(denominator), (n, len(denominator)))
    boot = _resampled_medians(denominator, rng, picks_den) / _resampled_medians(numerator, rng, picks_num)
    lo, hi = np.percentile(boot, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return {"ratio": point, "lo": float(lo), "hi": float(hi), "level": level, "paired": paired}


def overhead_fit(batches: Sequence[int], step_times: Sequence[float]) -> dict | None:
    """Least squares step_time = a + b x batch -> a (ms per step) and b (ms per image).

    Needs at least two distinct batch sizes; None otherwise.
    """
    x, y = np.asarray(batches, float), np.asarray(step_times, float)
    if np.unique(x).size < 2:
        return None
    b, a = np.polyfit(x, y, 1)
    residual = y - (a + b * x)
    return {"a_ms": float(a * 1000), "b_ms": float(b * 1000), "rms_residual_ms": float(np.sqrt(np.mean(residual ** 2))),
            "points": int(x.size)}


def crossover_batch(fast: dict, slow: dict, claimed: float) -> dict:
    """Where slow/fast step time exceeds `claimed`, from two overhead fits (batch >= 1).

    (a_s + b_s B) / (a_f + b_f B) > c  <=>  B (b_s - c b_f) > c a_f - a_s.
    Returns {"holds": "never" | "always" | "below" | "above", "batch": crossing or None}.
    """
    a_f, b_f, a_s, b_s = fast["a_ms"], fast["b_ms"], slow["a_ms"], slow["b_ms"]
    slope, rhs = b_s - claimed * b_f, claimed * a_f - a_s
    if slope == 0:
        return {"holds": "always" if rhs < 0 else "never", "batch": None}
    crossing = rhs / slope
    if slope < 0:  # the ratio falls as the batch grows: it holds below the crossing
        return {"holds": "below", "batch": crossing} if crossing > 1 else {"holds": "never", "batch": None}
    return {"holds": "above", "batch": crossing} if crossing > 1 else {"holds": "always", "batch": None}


def tost(a: Sequence[float], b: Sequence[float], margin: float, alpha: float = 0.05) -> dict:
    """Equivalence of two means by two one-sided Welch t-tests (TOST): is |mean(b) - mean(a)| <
    `margin`? Equivalent when both one-sided tests reject at `alpha`, i.e. when the 1 - 2 alpha
    (90%) interval of the difference lies inside (-margin, margin). Each sample needs >= 2 values.

    Returns the difference b - a, its interval, the TOST p-value (the larger one-sided p) and
    the decision; with zero spread in both samples the interval is the point difference.
    """
    from scipy import stats as sps
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        raise ValueError(f"TOST needs at least 2 values per sample, got {a.size} and {b.size}")
    diff = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    if se == 0:
        inside = abs(diff) < margin
        return {"difference": diff, "lo": diff, "hi": diff, "p": 0.0 if inside else 1.0, "df": None,
                "margin": margin, "alpha": alpha, "equivalent": inside}
    # Welch-Satterthwaite degrees of freedom: the samples' variances are not assumed equal
    df = float((va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)))
    p_lower = float(sps.t.sf((diff + margin) / se, df))   # H0: difference <= -margin
    p_upper = float(sps.t.cdf((diff - margin) / se, df))  # H0: difference >= margin
    half = float(sps.t.ppf(1 - alpha, df)) * se
    p = max(p_lower, p_upper)
    return {"difference": diff, "lo": diff - half, "hi": diff + half, "p": p, "df": df, "margin": margin,
            "alpha": alpha, "equivalent": p < alpha}


def tost_decision(result: dict) -> str:
    """A `tost` result in words: "equivalent" or "not shown equivalent"."""
    return "equivalent" if result["equivalent"] else "not shown equivalent"
