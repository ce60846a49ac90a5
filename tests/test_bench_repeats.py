"""The adaptive second stage of a benchmark run, with a stand-in for the worker process:
extra repeats only for imprecise pairs, within the budget and the cap, set from the command; and
the report's precision table that says which pairs met the target."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from benchmarks.analyse.records import ConfigSummary
from benchmarks.config import BenchConfig
from benchmarks.present.report import extra_repeats_text, precision_rows


def _fake_worker(noisy_batch: int):
    """Stands in for a worker process: Keras fit steady at 1.0 s; the graph steady at 0.9 s,
    except at `noisy_batch`, where whole processes swing between 0.6 and 1.5 s."""
    calls = Counter()

    def record(config):
        step = 1.0
        if config.mode == "graph":
            calls[config.key()] += 1
            step = (0.6, 1.5, 0.9)[calls[config.key()] % 3] if config.batch == noisy_batch else 0.9
        settings = {k: v for k, v in config.to_dict().items() if k != "mode"}
        return {"key": config.key(), "config": config.to_dict(), "ok": True, "settings": settings,
                "step_times_s": [step * f for f in (0.99, 1.0, 1.01)], "warmup_times_s": [step],
                "first_step_s": 2.0, "peak_rss_mb": 100.0, "wall_s": 20.0}

    def run_bundle(configs, env, timeout):
        return [record(c) for c in configs]
    return run_bundle


@pytest.mark.parametrize("budget_s, expect_extra", [(3600, True), (30, False), (None, False)])
def test_extra_repeats_only_for_imprecise_pairs_and_within_the_budget(monkeypatch, tmp_path, budget_s, expect_extra):
    from benchmarks.measure import runner
    monkeypatch.setattr(runner, "run_bundle", _fake_worker(noisy_batch=4))
    configs = [BenchConfig(mode=m, batch=b, image_size=32) for b in (4, 16) for m in ("graph", "keras-fit")]
    lines = []
    results = runner.run(configs, 3, tmp_path / "results.json", log=lines.append, budget_s=budget_s, max_repeats=6)
    extra = [r for r in results["runs"] if r["repeat"] >= 3]
    header = extra_repeats_text(results)
    if not expect_extra:
        assert not extra and not results["adaptive"]["extra"]
        if budget_s:  # planned, but the next repeat's estimate (2 bundles of 20 s) is past the budget
            assert results["adaptive"]["stop"]["reason"] == "budget"
            assert header.startswith(" plus 0 of the 3 extra repeats planned for the 1 comparison(s) whose "
                                     "interval was wider than +-10%") and "stopped by the budget" in header
        else:
            assert "stop" not in results["adaptive"] and header == ""
        return
    assert results["adaptive"]["stop"]["reason"] == "done"
    assert header.startswith(" plus 3 of the 3 extra repeats planned for the 1 comparison(s)")
    assert "stopped" not in header
    # the batch-16 pair met +-10% after 3 repeats; for the noisy batch-4 pair the first stage's spread
    # asks for more than the cap, so both sides run to it, each in its whole bundle (both batches) as
    # in the first stage, the bundles' order drawn anew
    assert set(results["adaptive"]["plan"]) == {f"{m}/{configs[0].group()}" for m in ("graph", "keras-fit")}
    assert {r["key"].split("/")[0] for r in extra} == {"graph", "keras-fit"}
    assert {r["config"]["batch"] for r in extra} == {4, 16} and len(extra) == 4 * 3
    orders = [tuple(o["bundles"]) for o in results["order"]["repeats"]]
    assert len(orders) == 6 and all(a != b for a, b in zip(orders, orders[1:]))
    assert [e["repeat"] for e in results["adaptive"]["extra"]] == [3, 4, 5]
    assert set(results["adaptive"]["plan"].values()) == {6} and any("extra repeats: done" in line for line in lines)
    noisy = next(r for r in results["summary"]["ratios"] if r["batch"] == 4)
    assert noisy["repeats"] == 6 and noisy["first_stage"] == 3 and "Stein" in noisy["method"]
    assert json.loads((tmp_path / "results.json").read_text())["adaptive"]["extra"] == results["adaptive"]["extra"]


def test_extra_repeats_stop_when_every_pair_is_precise(monkeypatch, tmp_path):
    from benchmarks.measure import runner
    monkeypatch.setattr(runner, "run_bundle", _fake_worker(noisy_batch=0))
    lines = []
    configs = [BenchConfig(mode=m, batch=4, image_size=32) for m in ("graph", "keras-fit")]
    results = runner.run(configs, 3, tmp_path / "results.json", log=lines.append, budget_s=3600)
    assert len(results["runs"]) == 6 and any("none needed" in line for line in lines)
    assert results["adaptive"]["stop"]["reason"] == "none needed"
    assert extra_repeats_text(results) == " (no extra repeats needed: every comparison's interval was within +-10%)"
    one = runner.run(configs, 1, tmp_path / "one.json", log=lines.append, budget_s=3600)
    assert one["adaptive"]["stop"]["reason"] == "one repeat" and "one repeat gives no interval" in lines[-1]
    assert extra_repeats_text(one) == " (no extra repeats: one repeat gives no interval to plan them from)"
    (ratio,) = results["summary"]["ratios"]
    assert abs(ratio["ratio"] - 1 / 0.9) < 1e-9 and ratio["lo"] <= ratio["ratio"] <= ratio["hi"]


def test_profiled_samples_are_a_bounded_share_of_the_timed_ones_or_a_whole_pass():
    long_steps = BenchConfig(model="resnet50", steps=8)
    assert long_steps.profiled_samples(5) == 2 and long_steps.profiled_samples(0) == 0
    assert BenchConfig(model="vgg16_head", steps=20).profiled_samples(5) == 5
    assert BenchConfig(model="vgg16_head", steps=12).profiled_samples(5) == 3
    assert BenchConfig(model="mlp", data="numpy", steps=12).profiled_samples(5) == 12  # per pass: all of it


@pytest.mark.parametrize("flags, repeats, profiled", [
    (["--xla", "off", "--budget-min", "60", "--max-repeats", "4", "--profile-samples", "2"], 4, 2),
    (["--xla", "on", "--budget-min", "0", "--profile-samples", "0"], 3, 0)])
def test_run_flags_set_xla_the_extra_repeats_and_the_profiled_samples(monkeypatch, tmp_path, flags, repeats, profiled):
    """Through the command, with a stand-in worker whose graph side is noisy: --xla reaches
    every configuration; --max-repeats caps the extra repeats a budget allows; --budget-min 0
    allows none; --profile-samples reaches both sides of the row (the head's fixed cost), in the
    first repeat only."""
    from benchmarks import cli
    from benchmarks.measure import runner
    ran, worker = [], _fake_worker(noisy_batch=32)
    monkeypatch.setattr(runner, "run_bundle", lambda configs, env, timeout: ran.extend(configs) or worker(configs, env, timeout))
    assert cli.main(["run", "--models", "vgg16_head", "--modes", "graph", "keras-fit", "--batches", "32", "--repeats",
                     "3", "--out", str(tmp_path / "r"), *flags]) == 0
    assert ran and all(config.xla == ("on" in flags) for config in ran)
    runs = Counter(config.key() for config in ran)  # repeats per configuration
    assert max(runs.values()) == repeats and min(runs.values()) == 3, runs
    accounted = [c for c in ran if c.account]
    assert len(accounted) == (2 if profiled else 0) and all(c.account == profiled for c in accounted)
    assert {c.mode for c in accounted} == ({"graph", "keras-fit"} if profiled else set())


def test_precision_rows_show_per_repeat_ratios_and_the_target():
    def entry(mode: str, steps: tuple[float, float]) -> ConfigSummary:
        config = BenchConfig(mode=mode, model="resnet50", batch=16, image_size=64)
        return ConfigSummary(config, 2, [], throughput={"median": 1.0}, spread_by_repeat={"0": 0.0, "1": 0.0},
                             repeat_step_s={str(r): t for r, t in enumerate(steps)})
    configs = {e.key: e for e in (entry("graph", (1.0, 1.0)), entry("keras-fit", (1.1, 0.8)))}
    group = "resnet50/train/b16/64px/fp32/noxla/cpu/NHWC/synthetic"
    ratios = [{"mode": "graph", "group": group, "ratio": 0.95, "lo": 0.80, "hi": 1.00},
              {"mode": "eager", "group": group, "ratio": 0.5, "lo": 0.4, "hi": 0.6}]
    (row,) = precision_rows(ratios, configs)
    np.testing.assert_allclose(row["per_repeat"], [1.1, 0.8])
    assert not row["met"] and abs(row["below"] - 0.15 / 0.95) < 1e-12
    assert row["within_process"] == 0.0 and abs(row["between_repeats"] - (1.1 / 0.8 - 1)) < 1e-12
    ratios[0].update(lo=0.90, hi=1.02)
    assert precision_rows(ratios, configs)[0]["met"]
