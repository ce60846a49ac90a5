"""Statistics of the harness: throughput summaries, t intervals of ratios over repeats
(processes), the fixed-overhead fit step_time = a + b x batch with its lack of fit and
Fieller's interval of where two fits' ratio crosses the claim, and TOST equivalence."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from benchmarks.analyse.records import ConfigSummary


def throughput(step_times_by_repeat: Sequence[Sequence[float]], batch: int) -> dict:
    """Images/s summary over every timed step of every repeat (median, IQR, range, n)."""
    rates = [batch / t for times in step_times_by_repeat for t in times]
    return summarize(rates)


def log_ratios(fast: Sequence[float], slow: Sequence[float]) -> np.ndarray:
    """log(slow_i / fast_i) of paired repeats: per-repeat step times (s: each repeat's median step, or
    total / steps where costs come per call or pass) of two modes
    that ran side by side (interleaved), so drift common to the pair cancels."""
    fast, slow = np.asarray(fast, float), np.asarray(slow, float)
    if fast.shape != slow.shape or fast.ndim != 1:
        raise ValueError(f"paired repeats need equal counts, got {fast.size} and {slow.size}")
    return np.log(slow / fast)


def ratio_interval(fast: Sequence[float], slow: Sequence[float], level: float = 0.95,
                   first_stage: int | None = None) -> dict:
    """How many times faster `fast` is than `slow`: the geometric mean of the per-repeat ratios
    slow_i / fast_i, with a t interval on their logarithms.

    The independent unit is the process (a repeat): steps within one share its state, so only
    the spread between repeats says how far another run could land. With `first_stage`, the
    spread is taken from the first `first_stage` pairs only and the mean from all (Stein's
    two-stage procedure): when the number of extra repeats is chosen from that first-stage
    spread, the interval still keeps its level exactly for normal log ratios. One repeat gives
    no interval (lo and hi are None).
    """
    d = log_ratios(fast, slow)
    n = d.size
    n0 = n if first_stage is None else max(1, min(first_stage, n))
    mean = float(d.mean())
    out = {"ratio": float(np.exp(mean)), "lo": None, "hi": None, "level": level, "repeats": int(n),
           "first_stage": int(n0), "paired": True,
           "method": "paired t on log ratios" + (", Stein two-stage" if n > n0 else "")}
    if n0 < 2:
        return out
    half = float(sps.t.ppf((1 + level) / 2, n0 - 1) * d[:n0].std(ddof=1) / np.sqrt(n))
    out.update(lo=float(np.exp(mean - half)), hi=float(np.exp(mean + half)))
    return out


def stein_repeats(first_stage: Sequence[float], target: float, level: float = 0.95, cap: int = 10) -> int:
    """Repeats in all (>= the first stage, <= `cap`) for a `ratio_interval` within +-`target`
    of its ratio, from the first stage's log ratios: N >= (t * s / log(1 + target))^2."""
    d = np.asarray(first_stage, float)
    if d.size < 2:
        return cap
    needed = (sps.t.ppf((1 + level) / 2, d.size - 1) * d.std(ddof=1) / np.log1p(target)) ** 2
    return int(min(cap, max(d.size, np.ceil(needed))))


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """(mean, lo, hi): a t interval of the mean of independent values (None with fewer than 2)."""
    v = np.asarray(values, float)
    if v.size < 2:
        return float(v.mean()), None, None
    half = float(sps.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


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


def lack_of_fit(batches: Sequence[int], per_repeat: Sequence[Sequence[float]]) -> dict | None:
    """How well one line step = a + b x batch fits each batch's mean over repeats.

    `per_repeat[r][j]`: repeat r's step time at `batches[j]` (s). The lack-of-fit F test
    compares the batch means' distance from the line (J - 2 degrees of freedom) with the
    repeats' own spread around those means (J (R - 1)); `max_miss` is the largest distance of a
    batch mean from the line, as a fraction of that mean. None with fewer than 3 batch sizes or
    2 repeats (nothing left to test the line against)."""
    y = np.asarray(per_repeat, float)
    x = np.asarray(batches, float)
    repeats, count = y.shape
    if count < 3 or repeats < 2:
        return None
    means = y.mean(axis=0)
    b, a = np.polyfit(np.tile(x, repeats), y.ravel(), 1)
    line = a + b * x
    ss_lof, df_lof = float(repeats * np.sum((means - line) ** 2)), count - 2
    ss_pe, df_pe = float(np.sum((y - means) ** 2)), count * (repeats - 1)
    f = (ss_lof / df_lof) / (ss_pe / df_pe) if ss_pe > 0 else float("inf")
    return {"f": f, "df": [df_lof, df_pe], "p": float(sps.f.sf(f, df_lof, df_pe)) if np.isfinite(f) else 0.0,
            "max_miss": float(np.max(np.abs(means - line) / means))}


def fieller_crossing(fast: Sequence[dict], slow: Sequence[dict], claimed: float,
                     level: float = 0.95) -> tuple[float | None, float | None]:
    """Fieller's interval for the batch where slow / fast = `claimed`, B = (c a_f - a_s) /
    (b_s - c b_f), from each repeat's pair of fits (a ratio of two means estimated together:
    the interval of their ratio, not a mean of per-repeat ratios). (None, None) when the
    denominator's own interval holds 0 (the crossing is then unbounded) or fewer than 2 repeats."""
    num = np.array([claimed * f["a_ms"] - s["a_ms"] for f, s in zip(fast, slow)])
    den = np.array([s["b_ms"] - claimed * f["b_ms"] for f, s in zip(fast, slow)])
    n = num.size
    if n < 2:
        return None, None
    m1, m2 = num.mean(), den.mean()
    cov = np.cov(num, den, ddof=1) / n
    t2 = sps.t.ppf((1 + level) / 2, n - 1) ** 2
    qa, qb, qc = m2 ** 2 - t2 * cov[1, 1], -2 * (m1 * m2 - t2 * cov[0, 1]), m1 ** 2 - t2 * cov[0, 0]
    disc = qb ** 2 - 4 * qa * qc
    if qa <= 0 or disc < 0:
        return None, None
    root = np.sqrt(disc)
    return float((-qb - root) / (2 * qa)), float((-qb + root) / (2 * qa))


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


def summarize(samples: Sequence[float]) -> dict:
    """Median, interquartile range, min and max of repeated measurements."""
    values = np.asarray(samples, dtype=float)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "iqr": float(q3 - q1), "min": float(values.min()),
            "max": float(values.max()), "n": int(values.size), "samples": [float(v) for v in values]}


def format_rate(summary: dict, unit: str) -> str:
    return (f"{summary['median']:,.1f} {unit} (median of {summary['n']}, IQR {summary['iqr']:,.1f}, "
            f"range {summary['min']:,.1f}-{summary['max']:,.1f})")


def common_repeats(*entries: ConfigSummary) -> list[str]:
    """The repeats every one of `entries` completed (keys of `repeat_step_s`), in run order."""
    return sorted(set.intersection(*(set(e.repeat_step_s) for e in entries)), key=int)


def pair_ratio(fast: ConfigSummary, slow: ConfigSummary, first_stage: int | None = None) -> dict | None:
    """How many times faster configuration `fast` ran than `slow` (summary entries: their
    `repeat_step_s`), over the repeats both completed (they ran side by side); None without a
    common repeat."""
    common = common_repeats(fast, slow)
    if not common:
        return None
    stage = None if first_stage is None else sum(int(r) < first_stage for r in common)
    return ratio_interval([fast.repeat_step_s[r] for r in common],
                          [slow.repeat_step_s[r] for r in common], first_stage=stage)
