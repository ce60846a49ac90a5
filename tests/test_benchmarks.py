"""benchmarks: statistics with known answers, the comparability check, a tiny end-to-end run,
report and compare, and the bad-input cases."""
import json
import shutil

import pytest

from benchmarks.analyse.records import ConfigSummary
from benchmarks.analyse.run_time import run_time
from benchmarks.analyse.stats import ratio_interval, tost
from benchmarks.analyse.summary import per_config
from benchmarks.analyse.verdict import verdict_map
from benchmarks.config import BenchConfig, check_comparable
from benchmarks.modes import MODES, Api
from benchmarks.present.markdown import machine_text
from benchmarks.presets import PRESETS, preset
from plumbing.errors import UserError

from conftest import assert_user_error, call_cli, fork_bench_workers


def test_runner_refuses_settings_that_differ_in_more_than_the_mode():
    same = {"batch": 8, "env": {"TF_SET_ONEDNN_FPMATH_MODE": None}, "xla_effective": False}
    check_comparable({"graph": same, "keras-fit": dict(same)})
    with pytest.raises(UserError, match="graph and keras-fit differ in xla_effective"):
        check_comparable({"graph": same, "keras-fit": {**same, "xla_effective": True}})
    with pytest.raises(UserError, match="differ in env"):
        check_comparable({"graph": same, "keras-fit": {**same, "env": {"TF_SET_ONEDNN_FPMATH_MODE": "BF16"}}})


def test_presets_and_unknown_names():
    configs, repeats = preset("quick")
    modes = {c.mode for c in configs}
    assert {"graph", "keras-fit", "keras-ctl", "eager"} <= modes and repeats >= 3
    assert all(c.applicable() is None for c in configs)
    assert all(preset(name)[0] for name in ("full", "gpu"))
    assert {c.mode for p in PRESETS.values() for c in p.configs("s.json")} == set(MODES)  # --modes picks from one
    with pytest.raises(UserError, match="unknown preset 'fast'"):
        preset("fast")
    with pytest.raises(UserError, match="unknown mode 'session'"):
        BenchConfig(mode="session").validate()
    assert BenchConfig(mode="eager", xla=True).applicable()
    # evaluation is a Session.run loop or model.evaluate; Keras 2 cannot load the VGG16 base's files
    assert "evaluation" in BenchConfig(mode="keras-ctl", task="evaluate").applicable()
    assert BenchConfig(mode="graph-feed", task="evaluate").applicable() is None
    assert "tf-keras" in BenchConfig(mode="tfkeras-fit", model="vgg16_transfer").applicable()
    assert BenchConfig(mode="tfkeras-v1", model="vgg16_head").applicable() is None


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Two modes of the VGG16 head (graph on the TF1 runtime, Keras fit), tiny steps, two
    repeats of two batch sizes."""
    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as patch:  # in this process: test_bench_scaling runs the command as one
        fork_bench_workers(patch)
        result = call_cli("benchmarks", "run", "--preset", "quick", "--models", "vgg16_head", "--modes", "graph",
                          "keras-fit", "--batches", "8", "32", "--steps", "3", "--warmup", "1", "--repeats", "2",
                          "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    # the map as the command prints it: each profiled row with its two sides' parts
    assert "parts, ms per profiled step (graph / keras-fit): inside ops (busy)" in result.stdout
    assert "residual (not seen)" in result.stdout and "scenarios of the map):" in result.stdout  # those it lacks
    assert "run time " in result.stdout and "building each model and its first step" in result.stdout
    assert f"on {machine_text(json.loads((out / 'results.json').read_text())['machine'])}\n" in result.stdout
    return out


@pytest.mark.slow
def test_tiny_end_to_end_run_writes_json_csv_report_and_plots(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["schema"] == 1 and results["git_commit"] and results["machine"]["cpu_count"]
    ok = [r for r in results["runs"] if r["ok"]]
    # training: graph and keras-fit at batches 8 and 32; the graph's gradients-only
    # step at 8 and 32; keras-fit training from numpy arrays and evaluating over them at 32; the A/A
    # control (graph at 32 again). 2 repeats, one process per bundle and repeat, the bundles in the
    # recorded order, which differs between the repeats
    assert len(ok) == len(results["runs"]) == 9 * 2
    # steps and warm-up as asked, on the arrays rounded up to whole passes of their 10 batches
    assert all((len(r["step_times_s"]), len(r["warmup_times_s"])) == ((10, 10) if r["config"]["epoch_samples"]
                                                                     else (3, 1)) for r in ok)
    # the head's fixed-cost row (graph / keras-fit at 32) profiles 5 more steps in its first repeat
    assert {(r["config"]["mode"], r["config"]["batch"], r["repeat"]) for r in ok if r["config"]["account"]} == \
        {("graph", 32, 0), ("keras-fit", 32, 0)}
    for r in ok:  # every sample a step, the profiled call's first (`profile_lead`) as well
        ran = len(r["warmup_times_s"]) + len(r["step_times_s"]) + r["config"]["account"]
        lead = BenchConfig.from_dict(r["config"]).profile_lead()
        assert r["updates_applied"] == (ran + lead if r["config"]["task"] == "train" else 0)
    orders = [o["bundles"] for o in results["order"]["repeats"]]
    assert len(orders) == 2 and orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])
    for repeat, order in enumerate(orders):
        ran = [r for r in results["runs"] if r["repeat"] == repeat]
        assert [order[r["position"]].split("/")[0] for r in ran] == [r["config"]["mode"] for r in ran]
        assert [r["position"] for r in ran] == sorted(r["position"] for r in ran)
    processes: dict[tuple, list[dict]] = {}
    for r in results["runs"]:
        processes.setdefault((r["repeat"], r["position"]), []).append(r)
    for process in processes.values():  # in the order each process ran them, the A/A's group first
        assert [r["process_slot"] for r in process] == list(range(len(process)))
        lead = process[0]["config"]
        assert (lead["task"], lead["batch"], lead["data"]) == ("train", 32, "synthetic")
    slot = {(r["key"], r["repeat"]): r["process_slot"] for r in results["runs"]}
    moved = {key.split("/")[0] for key, repeat in slot if repeat == 0 and slot[(key, 1)] != slot[(key, 0)]}
    assert moved == {"graph", "keras-fit"}  # both modes' processes ran their others in a new order
    assert all(r["peak_rss_scope"] == "configuration" and r["start_rss_mb"] <= r["peak_rss_mb"] for r in ok)
    summary = results["summary"]
    (control,) = summary["controls"]
    assert control["key"] == "graph/vgg16_head/train/b32/7px/fp32/noxla/cpu/NHWC/synthetic"
    assert control["repeats"] == 2 and control["spread"] >= 0
    assert control["covers_one"] == (control["lo"] <= 1 <= control["hi"])
    # the A/A pair covers 1 in an interval that misses 1 run in 1,000 (at 95%, 1 in 20 misses by design)
    twin, aa = (per_config(results)[k].repeat_step_s for k in (control["key"], control["control"]))
    wide = ratio_interval([twin[r] for r in sorted(twin)], [aa[r] for r in sorted(twin)], level=0.999)
    assert wide["lo"] <= 1 <= wide["hi"], wide
    assert {r["mode"] for r in summary["ratios"]} == {"graph"} and len(summary["ratios"]) == 2
    # the runtime each worker really ran on: graph_api's modes on TF1, Keras on TF2
    runtimes = {r["config"]["mode"]: r["runtime"]["tf1_runtime"] for r in ok}
    assert runtimes == {"graph": True, "keras-fit": False}
    assert {(f["mode"], f["family"].split("/")[1]) for f in summary["fits"]} == {
        ("graph", "train"), ("keras-fit", "train"), ("graph", "gradients")}
    assert all(f["a_lo_ms"] is not None for f in summary["fits"])  # each repeat's own fit -> an interval
    report = (tiny_run / "report.md").read_text()
    assert f"Machine: {machine_text(results['machine'])}; commit" in report  # its CPU flags included
    assert "the bundles, and the configurations within each, in an order drawn anew for every repeat" in report
    assert report.index("## Verdict map") < report.index("## Verdict\n") and "fixed cost per step" in report
    assert "## Verdict" in report and "Claimed: not using Keras is about 2.5x faster" in report
    assert "## Precision of the measurement" in report and report.count("| met |") + report.count("| missed") == 2
    for name in ("verdict_map.png", "ratios.png", "throughput_vs_batch.png", "step_times.png", "results.csv"):
        assert (tiny_run / name).stat().st_size > 0
    assert len((tiny_run / "results.csv").read_text().splitlines()) == 1 + 9
    assert "## Where each row's time goes" in report and (tiny_run / "accounting.png").stat().st_size > 0
    said = "(covers 1;" if control["covers_one"] else "(does not cover 1:"  # the report's 95%, as it fell
    assert "## A/A control\n\nThe same" in report and f"{control['key']} measured twice" in report and said in report
    assert "Not measured in this run: compute-bound training: ResNet50 from scratch (P3.36), any size" in report
    # where the run's time went: its parts add up to the run, its configurations of this run ranked
    timing = run_time(results)
    assert abs(sum(timing.parts_s.values()) - timing.total_s) < 1e-6 and timing.parts_s["setup"] > 0
    assert {c.key for c in timing.costliest} <= {r["key"] for r in results["runs"]}
    assert "## Where the run's time went" in report and f"| {timing.costliest[0].key} |" in report


@pytest.mark.slow
def test_compare_and_its_bad_input(tiny_run, tmp_path):
    # B: the same run with every graph step twice as fast -> B/A 2.00 on graph rows, 1.00 on the rest
    results = json.loads((tiny_run / "results.json").read_text())
    for record in results["runs"]:
        if record["ok"] and record["config"]["mode"] == "graph":
            record["step_times_s"] = [t / 2 for t in record["step_times_s"]]
    (tmp_path / "faster.json").write_text(json.dumps(results))
    result = call_cli("benchmarks", "compare", str(tiny_run / "results.json"), str(tmp_path / "faster.json"))
    assert result.returncode == 0, result.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[4].strip() for line in result.stdout.splitlines()
            if line.startswith("| ") and line.count("|") == 5 and "/" in line.split("|")[1]}
    assert any(k.startswith("graph/") for k in rows), rows
    assert all(v == ("2.00" if k.startswith("graph/") else "1.00") for k, v in rows.items()), rows
    spreads = {line.split("|")[1].strip(): [float(cell.split("IQR ")[1].rstrip(") ").replace(",", ""))
                                           for cell in line.split("|")[2:4]]
               for line in result.stdout.splitlines() if line.startswith("| graph/")}
    iqr = {key: c["throughput"]["iqr"] for key, c in results["summary"]["configs"].items() if c.get("throughput")}
    assert spreads and all(a == round(iqr[k], 1) and abs(b - 2 * a) <= 0.16 for k, (a, b) in spreads.items()), spreads
    assert result.stdout.count(f"; {machine_text(results['machine'])})") == 2  # A's and B's machine
    (tmp_path / "bad.json").write_text("{not json")
    result = call_cli("benchmarks", "compare", str(tiny_run / "results.json"), str(tmp_path / "bad.json"))
    assert_user_error(result, "bad.json: not a results JSON")


@pytest.mark.slow
def test_a_failing_configuration_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    from benchmarks.measure.runner import run
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # the GPU configuration fails on any machine
    configs = [BenchConfig(mode="graph", model="vgg16_head", batch=4, steps=2, warmup=1, device="gpu"),
               BenchConfig(mode="graph", model="vgg16_head", batch=4, steps=2, warmup=1)]
    results = run(configs, 1, tmp_path / "results.json", log=lambda _: None)
    # the bundle order is drawn at random, so the records are found by their device
    by_device = {r["config"]["device"]: r for r in results["runs"]}
    failed, ok = by_device["gpu"], by_device["cpu"]
    assert len(results["runs"]) == 2 and not failed["ok"] and "no GPU visible" in failed["error"] and ok["ok"]
    assert json.loads((tmp_path / "results.json").read_text())["summary"]["configs"][ok["key"]]["repeats_ok"] == 1


def test_verdict_credits_fused_batch_norm_gain_to_the_kernel_only_where_keras_ran_none():
    from benchmarks.present.report import verdict
    group = "resnet50/train/b32/224px/fp32/noxla/cpu/NHWC/synthetic"
    ratios = [{"mode": "graph", "group": group, "ratio": 1.0, "lo": 0.95, "hi": 1.05},
              {"mode": "graph-fused-bn", "group": group, "ratio": 1.4, "lo": 1.35, "hi": 1.45}]

    def entry(mode: str, ops: list[str] | None) -> ConfigSummary:
        config = BenchConfig(mode=mode, model="resnet50", batch=32, image_size=224)
        assert config.group() == group
        return ConfigSummary(config, 1, [], fused_batch_norm_ops=ops)
    configs = {"f": entry("graph-fused-bn", ["FusedBatchNormGradV3", "FusedBatchNormV3"]), "k": entry("keras-fit", [])}
    text = verdict({"ratios": ratios, "fits": [], "crossovers": [], "configs": configs})
    assert "manual batch norm: 1.40x for " + group in text and "belongs to the kernel" in text
    assert "graph-fused-bn ran `FusedBatchNormGradV3`, `FusedBatchNormV3`; keras-fit ran no fused" in text
    configs["k"] = entry("keras-fit", ["FusedBatchNormV3"])  # Keras fused as well: the gain is not the API's
    text = verdict({"ratios": ratios, "fits": [], "crossovers": [], "configs": configs})
    assert "keras-fit ran `FusedBatchNormV3`" in text and "belongs to the kernel" not in text
    configs["k"] = entry("keras-fit", None)  # not read: no claim either way
    assert "belongs to the kernel" not in verdict({"ratios": ratios, "fits": [], "crossovers": [], "configs": configs})
    assert "fused" not in verdict({"ratios": ratios[:1], "fits": [], "crossovers": []}).lower()
    ratios[1]["ratio"] = 0.8  # slower than manual BN (as under XLA on this CPU): no credit claimed
    text = verdict({"ratios": ratios, "fits": [], "crossovers": [], "configs": {"f": configs["f"]}})
    assert "manual batch norm: 0.80x" in text and "belongs to the kernel" not in text


@pytest.mark.slow
def test_report_includes_the_parity_section_written_beside_it(tiny_run, tmp_path):
    """`benchmarks report` picks up a parity.json in its directory (made-up curves: this checks
    the rendering; tests/test_parity.py runs the real experiment)."""
    from benchmarks.measure.runner import machine_info
    from benchmarks.parity.experiment import ParityConfig, curve_gaps
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
    older = json.loads((tmp_path / "r" / "results.json").read_text())  # from before the runs recorded their slot
    for run in older["runs"]:
        del run["process_slot"]
    (tmp_path / "r" / "results.json").write_text(json.dumps(older))
    result = call_cli("benchmarks", "report", str(tmp_path / "r" / "results.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Training parity" in report and "![parity.png](parity.png)" in report
    assert "final val_accuracy: graph 0.7033" in report and "**equivalent**" in report
    assert "the bundles in an order drawn anew" in report and "configurations within each" not in report


def _every_mode_configs() -> list[BenchConfig]:
    """Every mode in MODES, tiny: training on the MLP at batches 1 and 32 (the map's overhead
    rows) where the mode trains, the per-call modes predicting, fused BN on a 32 px ResNet50."""
    tiny = dict(steps=3, warmup=1, data="numpy")
    configs = []
    for mode in MODES:
        if mode == "graph-replicated":
            continue  # several devices: test_bench_scaling runs it
        if mode == "graph-fused-bn":
            configs.append(BenchConfig(mode=mode, model="resnet50", image_size=32, batch=2, steps=2, warmup=1))
        elif mode in ("keras-predict", "keras-call"):
            configs.append(BenchConfig(mode=mode, model="mlp", task="inference", batch=1, **tiny))
        else:
            configs += [BenchConfig(mode=mode, model="mlp", batch=b, **tiny) for b in (1, 32)]
    configs += [BenchConfig(mode=m, model="mlp", task="gradients", batch=1, **tiny) for m in ("graph", "keras-ctl")]
    configs += [BenchConfig(mode="graph-feed", model="mlp", task="inference", batch=1, **tiny)]
    configs += [BenchConfig(mode=m, model="mlp", task="evaluate", batch=32, **tiny) for m in ("graph-feed", "keras-fit")]
    # the origin model's sparse update, and Keras 2 training a textbook model in both of its modes
    configs += [BenchConfig(mode=m, model="embedding", optimizer="sgd", batch=2, **tiny)
                for m in ("graph-feed", "keras-ctl", "keras-fit")]
    configs += [BenchConfig(mode=m, model="vgg16_head", batch=2, steps=2, warmup=1) for m in MODES if MODES[m].api is Api.TF_KERAS]
    return configs


@pytest.mark.slow
def test_every_mode_runs_and_times_the_steps_it_claims(tmp_path, forked_workers):
    from benchmarks.measure.runner import run
    configs = _every_mode_configs()
    results = run(configs, 1, tmp_path / "results.json", log=lambda _: None)
    runs = {r["key"]: r for r in results["runs"]}
    assert len(runs) == len(configs) and all(r["ok"] for r in runs.values()), \
        [r["error"] for r in runs.values() if not r["ok"]]
    assert {r["config"]["mode"] for r in runs.values()} == set(MODES) - {"graph-replicated"}
    for r in runs.values():
        config = BenchConfig.from_dict(r["config"])
        per = config.steps_per_sample()
        assert len(r["step_times_s"]) == config.steps and len(r["warmup_times_s"]) == config.warmup
        # one update per step: a sample of keras-fit-spe holds 32 of them
        assert r["updates_applied"] == ((config.steps + config.warmup + config.profile_lead() + config.account) * per
                                        if config.task == "train" else 0)
        assert r["settings"]["xla_effective"] is False
        assert r["settings"]["env"]["CUDA_VISIBLE_DEVICES"] == "-1"  # a CPU configuration's worker hides the GPUs
        expected = {"tfkeras-fit": "tf-keras", "tfkeras-v1": "tf-keras"}.get(config.mode, "keras")
        assert r["keras_used"].startswith(expected) or config.mode.startswith("graph")
        assert r["runtime"]["tf1_runtime"] == (config.mode in ("graph", "graph-feed", "graph-fused-bn"))
        # graph-v2's Session runs in a process that keeps TF2's eager default; Keras 2's v1 mode does not
        assert r["runtime"]["executing_eagerly"] == (config.mode not in ("graph", "graph-feed", "graph-fused-bn",
                                                                         "tfkeras-v1"))
        if config.model == "embedding":  # only the looked-up rows are written, in both APIs
            assert any("Scatter" in op for op in r["sparse_update_ops"]), r["sparse_update_ops"]
        # read from what ran: the fused graph's kernels, none in the MLPs; ops run one by one leave no record
        fused = {"FusedBatchNormV3", "FusedBatchNormGradV3"} if config.mode == "graph-fused-bn" else set()
        ran = r["fused_batch_norm_ops"]
        assert ran is None if not config.spec.traced else set(ran) == fused, (config.mode, ran)
    rows = {row["scenario"] for row in verdict_map(results["summary"])}
    assert any(s.startswith("MNIST-style MLP, batch 32") for s in rows) and any("steps_per_execution" in s for s in rows)


@pytest.mark.slow
def test_the_harness_runs_vgg16_transfer_on_the_shards_bfloat16_and_the_trivial_model(shard_dir, tmp_path, forked_workers):
    """The models, precision and data source the every-mode test leaves out, on both sides of
    a ratio: what ran is read from the built graph and model (their matrix products' and
    kernels' dtypes; the class count the shards gave the model)."""
    from benchmarks.measure.runner import run
    tiny = dict(steps=1, warmup=1, batch=2)
    sides = ("graph", "keras-fit")
    configs = [BenchConfig(mode=m, model="vgg16_transfer", image_size=32, data="pipeline",
                           manifest=str(shard_dir / "manifest.json"), **tiny) for m in sides]
    configs += [BenchConfig(mode=m, model="trivial", image_size=32, **tiny) for m in sides]
    configs += [BenchConfig(mode=m, model="mlp", precision="mixed_bfloat16", data="numpy", **tiny) for m in sides]
    results = run(configs, 1, tmp_path / "results.json", log=lambda _: None)
    runs = {(r["config"]["mode"], r["config"]["model"]): r for r in results["runs"]}
    assert len(runs) == len(configs) and all(r["ok"] for r in runs.values()), [r.get("error") for r in runs.values()]
    for (mode, model), r in runs.items():
        assert r["updates_applied"] == 2, (mode, model)
        assert r["compute_dtypes"] == (["bfloat16"] if model == "mlp" else ["float32"]), (mode, model, r["compute_dtypes"])
        assert r["config"]["num_classes"] == (4 if model == "vgg16_transfer" else BenchConfig(model=model).num_classes)
    assert {row["group"].split("/")[0] for row in results["summary"]["ratios"]} == {"vgg16_transfer", "trivial", "mlp"}


@pytest.mark.slow
def test_xla_is_read_from_what_ran_and_an_environment_that_differs_is_refused(monkeypatch, tmp_path):
    """XLA on: the Session really runs compiled clusters, the custom loop's and fit's functions
    are jit-compiled; both workers see the same TF_XLA_FLAGS (the CPU flag included). A real
    worker given another oneDNN math mode is refused a ratio."""
    from benchmarks.measure import runner
    tiny = dict(model="mlp", batch=8, steps=2, warmup=1, data="numpy")
    results = runner.run([BenchConfig(mode=m, xla=True, **tiny) for m in ("graph", "keras-ctl", "keras-fit")], 1,
                         tmp_path / "xla.json", log=lambda _: None)
    for r in results["runs"]:
        assert r["ok"] and r["settings"]["xla_effective"] is True, r.get("error")
        assert "--tf_xla_cpu_global_jit" in r["settings"]["env"]["TF_XLA_FLAGS"]
    (graph,) = [r for r in results["runs"] if r["config"]["mode"] == "graph"]
    assert graph["xla_cluster_ops"] > 0
    real = runner.run_bundle

    def differing(configs, env, timeout):
        if configs[0].mode == "keras-fit":
            env = {**env, "TF_SET_ONEDNN_FPMATH_MODE": "BF16"}
        return real(configs, env, timeout)
    monkeypatch.setattr(runner, "run_bundle", differing)
    results = runner.run([BenchConfig(mode=m, **tiny) for m in ("graph", "keras-fit")], 1, tmp_path / "env.json",
                         log=lambda _: None)
    (refused,) = results["summary"]["refused"]
    assert "differ in env" in refused["reason"] and "BF16" in refused["reason"] and not results["summary"]["ratios"]


def test_xla_is_read_from_the_functions_a_configuration_handed_the_runtime():
    """A jit-compiled function counts for the configuration that ran it, not for the next one
    in the same process."""
    import tensorflow as tf

    from benchmarks.measure.timing import runtime_functions, xla_compiled_since
    before = runtime_functions()
    compiled = tf.function(lambda x: x * 2, jit_compile=True)  # held: the runtime drops a collected one
    compiled(tf.constant(1.0))
    assert xla_compiled_since(before)
    after = runtime_functions()
    plain = tf.function(lambda x: x * 3)
    plain(tf.constant(1.0))
    # new names, not a superset: a collection may drop an earlier test's function meanwhile
    assert not xla_compiled_since(after) and runtime_functions() - after


def test_evaluate_walks_the_arrays_in_passes_and_times_every_batch(monkeypatch):
    """A split of 2 batches, 2 warm-up and 4 timed batches: model.evaluate runs one call per pass
    (3), each timed whole, and the timer keeps the 6 batch times; the graph's evaluate fetches a
    loss and an accuracy."""
    import keras

    from benchmarks.measure import keras_fit
    from benchmarks.measure.graph_steps import make_graph_step
    config = BenchConfig(mode="keras-fit", model="mlp", task="evaluate", batch=4, steps=4, warmup=2, data="numpy",
                         epoch_samples=8)
    passes, evaluate = [], keras.Model.evaluate
    monkeypatch.setattr(keras.Model, "evaluate",
                        lambda self, *a, **k: passes.append(len(a[0])) or evaluate(self, *a, **k))
    times, _, facts, _ = keras_fit.run_fit(config)
    assert len(times) == 6 and passes == [8, 8, 8] and facts["updates_applied"] == 0
    step = make_graph_step(BenchConfig(mode="graph-feed", model="mlp", task="evaluate", batch=4, data="numpy"))
    try:
        loss, accuracy = step.run()
        assert loss > 0 and 0 <= accuracy <= 1
    finally:
        step.close()
