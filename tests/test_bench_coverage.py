"""The harness's 95% interval under the conditions it really runs in, by simulation: bundles
in the order the runner draws (`bundle_orders`), each bundle's configurations in the order it
draws within the process (`bundles`), an effect of both places, drift that hits the two sides
unequally, between-process spread, Stein's extra repeats and the time budget's stop; and the
other statistics the report states (fits of a + b x batch, their crossings, lack of fit)."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.analyse.stats import (
    crossover_batch,
    fieller_crossing,
    lack_of_fit,
    log_ratios,
    overhead_fit,
    ratio_interval,
    stein_repeats,
)
from benchmarks.config import MAX_REPEATS, PRECISION_TARGET
from benchmarks.measure.runner import bundle_orders, bundles, controlled_groups
from benchmarks.presets import preset, quick_configs

TRUE_RATIO = 1.3
POSITION_EFFECT = 0.05   # the last bundle of a repeat runs 5% slower than the first
SLOT_EFFECT = 0.05       # the last configuration of a process runs 5% slower than its first
STEP_SD = 0.03           # step-to-step noise within a process (20 timed steps)


def _quick() -> tuple[int, list[int], int]:
    """(bundles per repeat, the shuffled members of the two largest bundles, first-stage
    repeats) of the quick preset."""
    runnable = [c for c in quick_configs() if not c.applicable()]
    grouped, controlled = bundles(runnable), controlled_groups(runnable)
    shuffled = sorted((sum(c.group() not in controlled for c in b) for b in grouped), reverse=True)[:2]
    return len(grouped), shuffled, preset("quick")[1]


def _shuffled_slots(rng, members: int) -> np.ndarray:
    """The places (0 first, 1 last) the runner gives one configuration of a bundle of `members`
    shuffled configurations in each repeat, drawn by its own `bundle_orders`."""
    orders = bundle_orders(members, f"{int(rng.integers(2 ** 31))}/bundle", MAX_REPEATS)
    return np.array([order.index(members - 1) for order in orders]) / (members - 1)


def _one_run(rng, orders: list[list[int]], slots: tuple[np.ndarray, np.ndarray], process_sd: float,
             first: int, budget_repeats: float) -> dict:
    """Per-repeat median step times of two bundles' configurations (bundle 0: the fast side,
    bundle 1: the slow one; `slots`: each side's place in its process per repeat, 0 to 1), the
    repeats the harness would run, and its interval."""
    count = len(orders[0])
    drift, unequal = np.zeros(MAX_REPEATS), (1.0, 0.5)  # AR(1) machine drift; the slow side feels half of it
    for r in range(1, MAX_REPEATS):
        drift[r] = 0.7 * drift[r - 1] + rng.normal(0, 0.02)
    sides = []
    for bundle, base in ((0, 0.1 / TRUE_RATIO), (1, 0.1)):
        position = np.array([order.index(bundle) for order in orders]) / (count - 1)
        process = np.exp(unequal[bundle] * drift + POSITION_EFFECT * position + SLOT_EFFECT * slots[bundle]
                         + rng.normal(0, process_sd, MAX_REPEATS))
        steps = base * process[:, None] * np.exp(rng.normal(0, STEP_SD, (MAX_REPEATS, 20)))
        sides.append(np.median(steps, axis=1))
    fast, slow = sides
    planned = stein_repeats(log_ratios(fast[:first], slow[:first]), PRECISION_TARGET, cap=MAX_REPEATS)
    # the budget stops the extra repeats after as many as it holds, each costing 0.8-1.2 of a mean one
    affordable = first + int(np.searchsorted(np.cumsum(rng.uniform(0.8, 1.2, MAX_REPEATS)), budget_repeats,
                                             side="right"))
    n = min(planned, affordable)
    r = ratio_interval(fast[:n], slow[:n], first_stage=first)
    return {"covered": r["lo"] <= TRUE_RATIO <= r["hi"], "planned": planned, "ran": n}


@pytest.mark.parametrize("process_sd", [0.03, 0.17])
def test_interval_keeps_95_percent_with_shuffled_bundles_unequal_drift_and_adaptive_stops(process_sd):
    """>= 93% coverage for the nominal 95% over 3,000 simulated quick-preset runs, with the
    adaptive path really taken (extra repeats planned, some cut by the budget)."""
    rng = np.random.default_rng(11)
    count, members, first = _quick()
    runs = [_one_run(rng, bundle_orders(count, int(rng.integers(2 ** 31)), MAX_REPEATS),
                     (_shuffled_slots(rng, members[0]), _shuffled_slots(rng, members[1])), process_sd, first, 3.0)
            for _ in range(3000)]
    coverage = np.mean([r["covered"] for r in runs])
    assert 0.93 <= coverage <= 0.99, coverage
    if process_sd < 0.1:  # a spread the first stage can meet: how many extra repeats varies
        extra = [r["ran"] - first for r in runs]
        assert 0.2 < np.mean([0 < e for e in extra]) < 0.95
        assert np.mean([r["ran"] < r["planned"] for r in runs]) > 0.05  # the budget's stop


def test_a_fixed_bundle_order_would_break_the_promise():
    """The same simulation with the bundles in one order every repeat: the position effect is
    a bias no pairing cancels, and coverage falls well below 95% (what the shuffle prevents)."""
    rng = np.random.default_rng(12)
    count, members, first = _quick()
    fixed = [[0] + list(range(2, count)) + [1]] * MAX_REPEATS  # the two sides first and last, always
    coverage = np.mean([_one_run(rng, fixed, (_shuffled_slots(rng, members[0]), _shuffled_slots(rng, members[1])),
                                 0.03, first, 3.0)["covered"] for _ in range(3000)])
    assert coverage < 0.85, coverage


def test_a_fixed_order_within_the_processes_would_break_the_promise():
    """Bundles shuffled, but each process running its configurations in one order: one side
    first in its process and the other last, every repeat, is a bias the bundle shuffle does not
    reach, and coverage falls well below 95% (what the shuffle within each process prevents)."""
    rng = np.random.default_rng(13)
    count, _, first = _quick()
    fixed = (np.zeros(MAX_REPEATS), np.ones(MAX_REPEATS))
    coverage = np.mean([_one_run(rng, bundle_orders(count, int(rng.integers(2 ** 31)), MAX_REPEATS), fixed,
                                 0.03, first, 3.0)["covered"] for _ in range(3000)])
    assert coverage < 0.85, coverage


def test_bundle_orders_are_permutations_that_change_every_repeat_and_follow_the_seed():
    orders = bundle_orders(5, seed=3, repeats=40)
    assert all(sorted(o) == list(range(5)) for o in orders)
    assert all(a != b for a, b in zip(orders, orders[1:]))
    assert bundle_orders(5, seed=3, repeats=40) == orders and bundle_orders(5, seed=4, repeats=40) != orders
    firsts = {o[0] for o in orders}
    assert firsts == set(range(5))  # every bundle takes the first place in some repeat
    assert bundle_orders(2, seed=0, repeats=4) in ([[0, 1], [1, 0]] * 2, [[1, 0], [0, 1]] * 2)


def _simulated_medians(rng, true_ratio: float, repeats: int, process_sd: float, drift_sd: float = 0.05):
    """Per-repeat median step times of two modes run side by side: each process draws its own
    speed (log-normal, `process_sd`), the pair shares the machine's drift, and 20 steps vary
    within the process; the fast mode's true step time is 1/true_ratio of the slow one's."""
    drift = rng.normal(0, drift_sd, repeats)
    fast, slow = [], []
    for side, base in ((fast, 0.1 / true_ratio), (slow, 0.1)):
        process = np.exp(drift + rng.normal(0, process_sd, repeats))
        steps = base * process[:, None] * np.exp(rng.normal(0, 0.03, (repeats, 20)))
        side.extend(np.median(steps, axis=1))
    return fast, slow


@pytest.mark.parametrize("process_sd", [0.17, 0.30])
def test_ratio_interval_keeps_its_95_percent_promise_at_the_quick_presets_repeats(process_sd):
    """Between-process spread of 17% (the demo's report) and 30%: the t interval over the quick
    preset's 3 repeats covers the true ratio in >= 93% of 3,000 simulated runs; steps within a
    process are not independent evidence and are not counted as such."""
    rng = np.random.default_rng(7)
    repeats = preset("quick")[1]
    covered = 0
    for _ in range(3000):
        fast, slow = _simulated_medians(rng, 2.5, repeats, process_sd)
        r = ratio_interval(fast, slow)
        covered += r["lo"] <= 2.5 <= r["hi"]
    assert 0.93 <= covered / 3000 <= 0.975


def test_extra_repeats_chosen_from_the_first_stage_keep_the_promise():
    """Stein's two-stage rule: the number of extra repeats is decided from the first stage's
    spread, and the interval keeps 95% (>= 93% of 3,000 runs) whatever that number came out."""
    rng = np.random.default_rng(8)
    covered, extra = 0, []
    for _ in range(3000):
        fast, slow = _simulated_medians(rng, 1.3, 10, 0.17)
        n = stein_repeats(np.log(np.divide(slow[:3], fast[:3])), target=0.10, cap=10)
        extra.append(n - 3)
        r = ratio_interval(fast[:n], slow[:n], first_stage=3)
        covered += r["lo"] <= 1.3 <= r["hi"]
    assert 0.93 <= covered / 3000 <= 0.975
    assert 0 < np.mean(extra) < 7  # the rule varied the count: the test covers the adaptive case


def _fits_of_noisy_repeats(rng, a_ms, b_ms, batches, repeats, sd):
    """Each repeat's own fit of step times a + b x batch with a process effect and noise (sd)."""
    x = np.asarray(batches, float)
    out = []
    for _ in range(repeats):
        y = (a_ms + b_ms * x) * np.exp(rng.normal(0, sd) + rng.normal(0, sd, x.size))
        b, a = np.polyfit(x, y, 1)
        out.append({"a_ms": a, "b_ms": b})
    return out


def test_fieller_interval_of_the_crossing_batch_keeps_95_percent():
    """The batch where slow / fast = 2.5 from two lines (fast 1 + 0.1 B ms, slow 5 + 0.2 B ms:
    B = 50, inside the measured 8-128): Fieller's interval over 3 repeats' fits covers it in
    93-99% of 2,000 simulated runs (an unbounded interval counts as covering)."""
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(2000):
        fast = _fits_of_noisy_repeats(rng, 1.0, 0.1, (8, 32, 64, 128), 3, 0.05)
        slow = _fits_of_noisy_repeats(rng, 5.0, 0.2, (8, 32, 64, 128), 3, 0.05)
        lo, hi = fieller_crossing(fast, slow, 2.5)
        covered += lo is None or lo <= 50 <= hi
    assert 0.93 <= covered / 2000 <= 0.99


def test_lack_of_fit_passes_a_line_and_flags_a_curve():
    rng = np.random.default_rng(6)
    batches = (8, 32, 64, 128)
    line = [[(2 + 0.1 * b) * (1 + rng.normal(0, 0.01)) for b in batches] for _ in range(3)]
    curve = [[(2 + 0.001 * b * b) * (1 + rng.normal(0, 0.01)) for b in batches] for _ in range(3)]
    fit_line, fit_curve = lack_of_fit(batches, line), lack_of_fit(batches, curve)
    assert fit_line["p"] > 0.01 and fit_line["max_miss"] < 0.05 and fit_line["df"] == [2, 8]
    assert fit_curve["p"] < 1e-4 and fit_curve["max_miss"] > 0.2
    assert lack_of_fit((8, 32), [r[:2] for r in line]) is None and lack_of_fit(batches, line[:1]) is None


def test_ratio_interval_needs_paired_repeats_and_two_for_an_interval():
    with pytest.raises(ValueError, match="paired repeats need equal counts"):
        ratio_interval([0.1, 0.1], [0.2])
    one = ratio_interval([0.1], [0.25])
    assert one["ratio"] == pytest.approx(2.5) and one["lo"] is None and one["hi"] is None


def test_overhead_fit_recovers_a_and_b():
    batches = [1, 8, 32, 128]
    times = [0.030 + 0.002 * b for b in batches]  # a = 30 ms, b = 2 ms per image
    fit = overhead_fit(batches, times)
    assert fit["a_ms"] == pytest.approx(30.0, abs=1e-6) and fit["b_ms"] == pytest.approx(2.0, abs=1e-9)
    assert overhead_fit([32, 32], [0.1, 0.1]) is None


def test_crossover_batch():
    # graph: 10 ms + 1 ms/img; keras: 40 ms + 1 ms/img -> ratio (40+B)/(10+B) > 2.5 for B < 10
    graph, keras = {"a_ms": 10.0, "b_ms": 1.0}, {"a_ms": 40.0, "b_ms": 1.0}
    assert crossover_batch(graph, keras, 2.5) == {"holds": "below", "batch": pytest.approx(10.0)}
    assert crossover_batch(graph, {"a_ms": 12.0, "b_ms": 1.1}, 2.5)["holds"] == "never"
    assert crossover_batch(graph, {"a_ms": 100.0, "b_ms": 3.0}, 2.5)["holds"] == "always"
