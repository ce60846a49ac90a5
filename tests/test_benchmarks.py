"""benchmarks: statistics with known answers, the comparability check, a tiny end-to-end run,
report and compare, and the bad-input cases."""
import json
import shutil

import numpy as np
import pytest

from benchmarks.config import BenchConfig, check_comparable, preset
from benchmarks.report import precision_rows
from benchmarks.stats import crossover_batch, overhead_fit, ratio_interval, tost
from data_pipeline.errors import DataError

from conftest import run_cli


def test_ratio_interval_covers_the_true_ratio():
    """Step times drawn around 100 ms and 250 ms: the true speed ratio is 2.5."""
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(20):
        fast = [rng.normal(0.100, 0.008, 15) for _ in range(3)]
        slow = [rng.normal(0.250, 0.020, 15) for _ in range(3)]
        r = ratio_interval(fast, slow, seed=trial, n=400)
        assert r["lo"] <= r["ratio"] <= r["hi"]
        covered += r["lo"] <= 2.5 <= r["hi"]
    assert covered >= 17  # a 95% interval: ~19 of 20, allow sampling luck
    assert abs(r["ratio"] - 2.5) < 0.15


def test_ratio_interval_widens_with_drift_between_repeats():
    rng = np.random.default_rng(2)
    steady = [rng.normal(0.1, 0.002, 20) for _ in range(3)]
    drifting = [rng.normal(0.1 * f, 0.002, 20) for f in (0.8, 1.0, 1.25)]
    base = [rng.normal(0.2, 0.004, 20) for _ in range(3)]
    narrow, wide = ratio_interval(steady, base, n=400), ratio_interval(drifting, base, n=400)
    assert wide["hi"] - wide["lo"] > 3 * (narrow["hi"] - narrow["lo"])


def test_paired_repeats_cancel_drift_common_to_both_modes():
    """Interleaved repeats share the machine's state: when both modes slow down together,
    resampling the pairs together cancels it; resampling each side alone does not."""
    rng = np.random.default_rng(3)
    drift = (0.8, 1.0, 1.25)
    fast = [rng.normal(0.1 * f, 0.002, 20) for f in drift]
    slow = [rng.normal(0.2 * f, 0.004, 20) for f in drift]
    paired, unpaired = ratio_interval(fast, slow, n=400, paired=True), ratio_interval(fast, slow, n=400)
    assert paired["lo"] <= 2.0 <= paired["hi"] and paired["hi"] - paired["lo"] < 0.1
    assert unpaired["hi"] - unpaired["lo"] > 5 * (paired["hi"] - paired["lo"])
    with pytest.raises(ValueError, match="paired repeats need equal counts"):
        ratio_interval(fast, slow[:2], paired=True)


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


def test_runner_refuses_settings_that_differ_in_more_than_the_mode():
    same = {"batch": 8, "env": {"TF_SET_ONEDNN_FPMATH_MODE": None}, "xla_effective": False}
    check_comparable({"graph": same, "keras-fit": dict(same)})
    with pytest.raises(DataError, match="graph and keras-fit differ in xla_effective"):
        check_comparable({"graph": same, "keras-fit": {**same, "xla_effective": True}})
    with pytest.raises(DataError, match="differ in env"):
        check_comparable({"graph": same, "keras-fit": {**same, "env": {"TF_SET_ONEDNN_FPMATH_MODE": "BF16"}}})


def test_presets_and_unknown_names():
    configs, repeats = preset("quick")
    modes = {c.mode for c in configs}
    assert {"graph", "keras-fit", "keras-ctl", "eager"} <= modes and repeats >= 3
    assert all(c.applicable() is None for c in configs)
    for name in ("full", "gpu"):
        assert preset(name)[0]
    with pytest.raises(DataError, match="unknown preset 'fast'"):
        preset("fast")
    with pytest.raises(DataError, match="unknown mode 'session'"):
        BenchConfig(mode="session").validate()
    assert BenchConfig(mode="eager", xla=True).applicable()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Three modes of the VGG16 head (graph on the TF1 runtime, the same graph on the TF2
    runtime, Keras fit), tiny steps, two repeats of two batch sizes."""
    out = tmp_path_factory.mktemp("bench")
    result = run_cli("benchmarks", "run", "--preset", "quick", "--models", "vgg16_head", "--modes", "graph",
                     "graph-v2", "keras-fit", "--batches", "8", "32", "--steps", "3", "--warmup", "1", "--repeats", "2",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_tiny_end_to_end_run_writes_json_csv_report_and_plots(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["schema"] == 1 and results["git_commit"] and results["machine"]["cpu_count"]
    ok = [r for r in results["runs"] if r["ok"]]
    # graph and keras-fit at batches 8 and 32, the preset's graph-v2 and graph + XLA at 32; 2 repeats
    assert len(ok) == len(results["runs"]) == 6 * 2
    assert all(len(r["step_times_s"]) == 3 and len(r["warmup_times_s"]) == 1 for r in ok)
    assert [r["config"]["mode"] for r in results["runs"][:4]] == ["graph", "keras-fit"] * 2  # interleaved
    summary = results["summary"]
    assert {r["mode"] for r in summary["ratios"]} == {"graph", "graph-v2"} and len(summary["ratios"]) == 3
    # the runtime each worker really ran on: graph_api's modes on TF1, graph-v2 and Keras on TF2
    runtimes = {r["config"]["mode"]: r["runtime"]["tf1_runtime"] for r in ok}
    assert runtimes == {"graph": True, "graph-v2": False, "keras-fit": False}
    assert {f["mode"] for f in summary["fits"]} == {"graph", "keras-fit"}
    report = (tiny_run / "report.md").read_text()
    assert "## Verdict" in report and "Claimed: not using Keras is about 2.5x faster" in report
    assert "## Precision of the measurement" in report and report.count("| met |") + report.count("| missed") == 3
    for name in ("ratios.png", "throughput_vs_batch.png", "step_times.png", "results.csv"):
        assert (tiny_run / name).stat().st_size > 0
    assert len((tiny_run / "results.csv").read_text().splitlines()) == 1 + 6


def test_compare_and_its_bad_input(tiny_run, tmp_path):
    result = run_cli("benchmarks", "compare", str(tiny_run / "results.json"), str(tiny_run / "results.json"))
    assert result.returncode == 0 and "| 1.00 |" in result.stdout
    (tmp_path / "bad.json").write_text("{not json")
    result = run_cli("benchmarks", "compare", str(tiny_run / "results.json"), str(tmp_path / "bad.json"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "bad.json: not a results JSON" in errors[0]


def test_unknown_mode_or_model_is_one_clear_line(tmp_path):
    result = run_cli("benchmarks", "run", "--modes", "session", "--out", str(tmp_path))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and errors == ["error: unknown mode session: expected one of graph, graph-feed, "
                                                 "graph-fused-bn, graph-v2, keras-fit, keras-ctl, eager"]


def test_a_failing_configuration_is_recorded_and_the_run_goes_on(tmp_path):
    from benchmarks.runner import run
    configs = [BenchConfig(mode="graph", model="vgg16_head", batch=4, steps=2, warmup=1, device="gpu"),
               BenchConfig(mode="graph", model="vgg16_head", batch=4, steps=2, warmup=1)]
    results = run(configs, 1, tmp_path / "results.json", log=lambda _: None)
    failed, ok = results["runs"]
    assert not failed["ok"] and "no GPU visible" in failed["error"] and ok["ok"]
    assert json.loads((tmp_path / "results.json").read_text())["summary"]["configs"][ok["key"]]["repeats_ok"] == 1


def test_precision_rows_show_per_repeat_ratios_and_the_target():
    group = "resnet50/train/b16/64px/fp32/noxla/cpu/NHWC/synthetic"
    runs = [{"ok": True, "key": f"{mode}/{group}", "repeat": rep, "step_times_s": [t, t, t]}
            for rep, (g, k) in enumerate([(1.0, 1.1), (1.0, 0.8)]) for mode, t in (("graph", g), ("keras-fit", k))]
    ratios = [{"mode": "graph", "group": group, "ratio": 0.95, "lo": 0.80, "hi": 1.00},
              {"mode": "eager", "group": group, "ratio": 0.5, "lo": 0.4, "hi": 0.6}]
    (row,) = precision_rows(ratios, runs)
    np.testing.assert_allclose(row["per_repeat"], [1.1, 0.8])
    assert not row["met"] and abs(row["below"] - 0.15 / 0.95) < 1e-12
    assert row["within_process"] == 0.0 and abs(row["between_repeats"] - (1.1 / 0.8 - 1)) < 1e-12
    ratios[0].update(lo=0.90, hi=1.02)
    assert precision_rows(ratios, runs)[0]["met"]


def _fake_worker(noisy_batch: int):
    """Stands in for a worker process: Keras fit steady at 1.0 s; the graph steady at 0.9 s,
    except at `noisy_batch`, where whole processes swing between 0.6 and 1.5 s."""
    calls = {"graph": 0}

    def run_one(config, env, timeout):
        step = 1.0
        if config.mode == "graph":
            calls["graph"] += 1
            step = (0.6, 1.5, 0.9)[calls["graph"] % 3] if config.batch == noisy_batch else 0.9
        settings = {k: v for k, v in config.to_dict().items() if k != "mode"}
        return {"key": config.key(), "config": config.to_dict(), "ok": True, "settings": settings,
                "step_times_s": [step * f for f in (0.99, 1.0, 1.01)], "warmup_times_s": [step],
                "first_step_s": 2.0, "peak_rss_mb": 100.0, "wall_s": 20.0}
    return run_one


@pytest.mark.parametrize("budget_s, expect_extra", [(3600, True), (30, False), (None, False)])
def test_extra_repeats_only_for_imprecise_pairs_and_within_the_budget(monkeypatch, tmp_path, budget_s, expect_extra):
    from benchmarks import runner
    monkeypatch.setattr(runner, "run_one", _fake_worker(noisy_batch=4))
    configs = [BenchConfig(mode=m, batch=b, image_size=32) for b in (4, 16) for m in ("graph", "keras-fit")]
    lines = []
    results = runner.run(configs, 3, tmp_path / "results.json", log=lines.append, budget_s=budget_s, max_repeats=6)
    extra = [r for r in results["runs"] if r["repeat"] >= 3]
    if not expect_extra:
        assert not extra and not results["adaptive"]["extra"]
        return
    # the batch-16 pair met +-10% after 3 repeats; the noisy batch-4 pair is repeated, both sides, to the cap
    assert {r["key"].split("/")[0] for r in extra} == {"graph", "keras-fit"}
    assert {r["config"]["batch"] for r in extra} == {4} and len(extra) == 2 * 3
    assert [e["repeat"] for e in results["adaptive"]["extra"]] == [3, 4, 5]
    assert any("cap of 6 repeats is reached" in line for line in lines)
    assert json.loads((tmp_path / "results.json").read_text())["adaptive"]["extra"] == results["adaptive"]["extra"]


def test_extra_repeats_stop_when_every_pair_is_precise(monkeypatch, tmp_path):
    from benchmarks import runner
    monkeypatch.setattr(runner, "run_one", _fake_worker(noisy_batch=0))
    lines = []
    configs = [BenchConfig(mode=m, batch=4, image_size=32) for m in ("graph", "keras-fit")]
    results = runner.run(configs, 3, tmp_path / "results.json", log=lines.append, budget_s=3600)
    assert len(results["runs"]) == 6 and any("none needed" in line for line in lines)
    (ratio,) = results["summary"]["ratios"]
    assert abs(ratio["ratio"] - 1 / 0.9) < 1e-9


def test_verdict_credits_fused_batch_norm_gain_to_the_kernel():
    from benchmarks.report import verdict
    group = "resnet50/train/b32/224px/fp32/noxla/cpu/NHWC/synthetic"
    ratios = [{"mode": "graph", "group": group, "ratio": 1.0, "lo": 0.95, "hi": 1.05},
              {"mode": "graph-fused-bn", "group": group, "ratio": 1.4, "lo": 1.35, "hi": 1.45}]
    text = verdict({"ratios": ratios, "fits": [], "crossovers": []})
    assert "manual batch norm: 1.40x for " + group in text and "belongs to the kernel" in text
    assert "fused" not in verdict({"ratios": ratios[:1], "fits": [], "crossovers": []}).lower()
    ratios[1]["ratio"] = 0.8  # slower than manual BN (as under XLA on this CPU): no credit claimed
    text = verdict({"ratios": ratios, "fits": [], "crossovers": []})
    assert "manual batch norm: 0.80x" in text and "belongs to the kernel" not in text


def test_report_includes_the_parity_section_written_beside_it(tiny_run, tmp_path):
    """`benchmarks report` picks up a parity.json in its directory (made-up curves: this checks
    the rendering; tests/test_parity.py runs the real experiment)."""
    from benchmarks.parity import ParityConfig, curve_gaps
    from benchmarks.runner import machine_info
    shutil.copytree(tiny_run, tmp_path / "r")
    curves = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.7], "val_accuracy": [0.4, 0.7]}
    finals = {"graph": {"val_accuracy": [0.70, 0.72, 0.69], "val_loss": [0.70, 0.66, 0.71]},
              "keras": {"val_accuracy": [0.71, 0.70, 0.73], "val_loss": [0.69, 0.72, 0.68]}}
    record = {"config": vars(ParityConfig(manifest="m.json", seeds=3)), "machine": machine_info(), "num_classes": 4,
              "samples": {"train": 32, "val": 16},
              "same_start": {"curves": {"graph": curves, "keras": curves},
                             "gaps": curve_gaps(curves, curves, 4, {"train": 32, "val": 16}, 0.02)},
              "seeds": {"final": finals, "tost": {m: tost(finals["graph"][m], finals["keras"][m], 0.05)
                                                  for m in ("val_accuracy", "val_loss")}}}
    (tmp_path / "r" / "parity.json").write_text(json.dumps(record))
    result = run_cli("benchmarks", "report", str(tmp_path / "r" / "results.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Training parity" in report and "![parity.png](parity.png)" in report
    assert "final val_accuracy: graph 0.7033" in report and "**equivalent**" in report
