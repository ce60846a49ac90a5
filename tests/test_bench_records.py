"""What a benchmark record claims: a configuration's own peak memory, a repeat's step as its
costs come (per step, or per pass), the verdict row matched on every field of its scenario with
a label generated from what it matched, the rows a run did not produce listed as such."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from bench_helpers import run_record

from benchmarks.analyse.summary import per_config, summarize_results
from benchmarks.analyse.verdict import ROWS, not_measured, row_pairs, verdict_map
from benchmarks.config import BenchConfig
from benchmarks.measure.memory import configuration_peak, start_configuration
from benchmarks.present.markdown import machine_text
from benchmarks.presets import preset


def test_a_configuration_s_peak_excludes_what_an_earlier_one_freed():
    before = np.ones(300 * 2 ** 20 // 8)  # 300 MiB, touched
    del before
    start = start_configuration()
    assert start is not None  # Linux: the high-water mark can be reset
    small = np.ones(20 * 2 ** 20 // 8)
    peak = configuration_peak(start)
    assert peak.scope == "configuration" and peak.start_mb <= peak.peak_mb
    assert peak.peak_mb - peak.start_mb < 150 and small.sum() > 0  # not the freed 300 MiB
    process = configuration_peak(None)  # without a reset: the process's mark, named as such
    assert process.scope == "process so far" and process.start_mb is None


def test_a_finished_configuration_s_graph_is_released_with_its_custom_gradients():
    """TensorFlow keeps a graph-mode custom gradient's graph alive in its registry after its
    model is gone; `release_graphs` unregisters it, and the graph is collected."""
    import gc
    import weakref

    import tensorflow as tf

    from benchmarks.measure.memory import custom_gradients, release_graphs
    before = custom_gradients()
    graph = tf.Graph()
    with graph.as_default():
        @tf.custom_gradient
        def double(x):
            return 2 * x, lambda dy: 2 * dy
        double(tf.compat.v1.placeholder(tf.float32, [3]))
    alive = weakref.ref(graph)
    del graph, double
    gc.collect()
    assert alive() is not None  # held by the registry alone
    assert release_graphs(before) == 1 and custom_gradients() == before
    gc.collect()
    assert alive() is None


def test_settling_collects_a_configuration_s_garbage_and_takes_the_rest_out_of_later_walks():
    import gc
    import weakref

    from benchmarks.measure.memory import settle

    class Node:
        pass

    kept, dropped = Node(), Node()
    kept.me, dropped.me = kept, dropped  # cycles: only the collector frees them
    gone = weakref.ref(dropped)
    del dropped
    try:
        settle()
        assert gone() is None and gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects())  # frozen: no collection walks it
    finally:
        gc.unfreeze()


def _results(configs, step_s) -> dict:
    """Two repeats of `configs`, each step taking `step_s(config)` seconds."""
    runs = []
    for repeat in range(2):
        for c in configs:
            t = step_s(c) * (1 + 0.01 * repeat)
            runs.append(run_record(c, [t, t, t], repeat, peak_rss_mb=100.0))
    return {"schema": 1, "repeats": 2, "runs": runs}


def test_rows_match_every_field_of_their_scenario_and_label_what_they_matched():
    """From the `full` preset's configurations: the compute-bound row is ResNet50 at 224 px in fp32
    at the largest batch (64), not the bfloat16 or inference configurations beside it, whose
    graph side is made 10x faster here (and which run at a larger batch too) so that matching them
    would show; the rows the preset has
    no configurations for are listed as not measured."""
    configs = [c for c in preset("full")[0] if c.model == "resnet50" and c.mode in ("graph", "keras-fit")
               and c.data == "synthetic"]
    others = [c for c in configs if c.precision != "fp32" or c.task != "train"]
    assert {(c.precision, c.task) for c in others} == {("mixed_bfloat16", "train"), ("fp32", "inference")}
    configs += [replace(c, batch=128) for c in others]  # larger than any fp32 training batch

    def step_s(c):
        slow = 1.0 if c.mode == "keras-fit" else 0.8
        return slow / (10 if c.precision != "fp32" or c.task != "train" else 1) * c.batch / 64
    summary = summarize_results(_results(configs, step_s))
    (row,) = [r for r in verdict_map(summary) if r["regime"] == "compute-bound training"]
    assert row["scenario"] == "ResNet50 from scratch (P3.36), 224 px, batch 64"
    assert row["group"] == "resnet50/train/b64/224px/fp32/noxla/cpu/NHWC/synthetic"
    assert abs(row["ratio"] - 1.25) < 1e-9
    missing = not_measured(summary)
    assert any(m.startswith("overhead regime: trivial model, batch 1:") for m in missing)
    assert not any(m.startswith("compute-bound training: ResNet50 from scratch") for m in missing)
    assert any(m.startswith("compute-bound training: ResNet50 from the shards'") for m in missing)
    assert len(missing) + len(verdict_map(summary)) == len(ROWS)  # every scenario, one way or the other


def test_a_row_on_the_gpu_is_labelled_so_and_kept_apart_from_the_same_row_on_the_cpu():
    """The `gpu` preset's ResNet50 configurations and their CPU twins: two compute-bound rows, one
    per device, the GPU's label saying so (from the device's record)."""
    configs = [c for c in preset("gpu")[0] if c.model == "resnet50" and c.mode in ("graph", "keras-fit")
               and c.replicas() == 1 and c.data == "synthetic"]
    configs += [replace(c, device="cpu") for c in configs]
    summary = summarize_results(_results(configs, lambda c: (1.0 if c.mode == "keras-fit" else 0.8) * c.batch / 64))
    rows = [r for r in verdict_map(summary) if r["regime"] == "compute-bound training"]
    assert sorted(r["scenario"] for r in rows) == ["ResNet50 from scratch (P3.36), 224 px, batch 256",
                                                   "ResNet50 from scratch (P3.36), 224 px, batch 256 on GPU"]
    assert {r["group"].split("/")[6] for r in rows} == {"cpu", "gpu"}


def test_the_answer_quotes_each_row_it_cites_by_a_label_that_names_its_model():
    """The answer cites rows out of the map's order, so a row's label reads alone: Keras 2's fit of
    the embedding model, 5x slower here, is named by its model, not as "the same" as the row above."""
    from benchmarks.analyse.verdict import answer
    configs = [BenchConfig(mode=m, model="embedding", batch=32, data="numpy", optimizer="sgd")
               for m in ("graph-feed", "tfkeras-fit")]
    rows = verdict_map(summarize_results(_results(configs, lambda c: 5.0 if c.mode == "tfkeras-fit" else 1.0)))
    assert [r["claim"] for r in rows] == ["holds"]
    assert "It holds where keras#7818's model, SGD, batch 32: TF1 loop vs Keras 2 fit (tf.function)" in answer(rows)
    # over many rows, the misses chance alone would give: none to expect of one interval
    assert "by chance" not in answer(rows)
    assert "of these 20, about 1.0 would miss its true ratio in a run by chance alone" in answer(rows * 20)


def test_quick_trains_resnet50_compute_bound_from_the_shards_when_given_else_from_one_batch():
    """One compute-bound row either way, and the numpy row beside it: ResNet50's set-up is
    most of the preset's time, so it is not trained from both sources."""
    from benchmarks.presets import quick_configs
    for manifest, source in ((None, "synthetic"), ("shards/manifest.json", "pipeline")):
        configs = quick_configs(manifest)
        training = {(c.mode, c.data) for c in configs if c.model == "resnet50" and c.task == "train"}
        assert training == {("graph", source), ("keras-fit", source), ("graph-feed", "numpy"), ("keras-fit", "numpy")}
        compute = [r for r in ROWS if r.regime == "compute-bound training" and row_pairs(r, configs)]
        assert [r.data for r in compute] == [source]


def test_per_pass_configurations_count_the_pass_s_set_up_and_per_step_ones_the_median():
    """An evaluation over a split pays its call's set-up once per pass (here the 5 s sample): the
    repeat's step is total / steps, 2 s, where a median (1 s) would drop it; a synthetic training
    step is the median."""
    evaluate = BenchConfig(mode="graph-feed", model="vgg16_head", task="evaluate", data="numpy")
    train = BenchConfig(mode="graph", model="vgg16_head")
    results = _results([evaluate, train], lambda c: 1.0)
    for run in results["runs"]:
        run["step_times_s"] = [1.0, 1.0, 1.0, 5.0]
    configs = per_config(results)
    assert configs[evaluate.key()].repeat_step_s == {"0": 2.0, "1": 2.0}
    assert configs[evaluate.key()].statistic == "total / steps"
    assert configs[train.key()].repeat_step_s == {"0": 1.0, "1": 1.0} and configs[train.key()].statistic == "median step"


def test_the_group_an_a_a_control_measures_runs_first_in_every_bundle():
    """The control runs alone in a fresh process; its twin and the twin's counterparts in the other
    modes run first in theirs, so no side of the A/A (or of the twin's ratios) meets a warmer process."""
    from benchmarks.measure.runner import bundles
    from benchmarks.presets import quick_configs
    grouped = bundles([c for c in quick_configs() if not c.applicable()])
    (control,) = [b for b in grouped if b[0].control]
    twin_group = control[0].group().removesuffix("/aa-control")
    holding = [b for b in grouped if any(c.group() == twin_group for c in b)]
    assert len(holding) >= 4 and all(b[0].group() == twin_group for b in holding)  # graph, keras-fit, ...
    assert any(len(b) > 5 for b in holding)  # bundles where the order mattered
    # drawn for a run: the twin still first, the others in a new order in each repeat, from the seed
    configs = [c for c in quick_configs() if not c.applicable()]
    drawn = [bundles(configs, seed=9, repeat=r) for r in range(4)]
    assert bundles(configs, seed=9, repeat=2) == drawn[2] and bundles(configs, seed=8, repeat=2) != drawn[2]
    for this, last in zip(drawn[1:], drawn):
        for now, before, fixed in zip(this, last, grouped):
            assert sorted(map(repr, now)) == sorted(map(repr, fixed))  # the same members
            assert (now[0].group() == twin_group) == (fixed[0].group() == twin_group)  # the twin first
            if sum(c.group() != twin_group for c in fixed) > 1:
                assert now != before  # the others in another order than the previous repeat's


def test_the_embedding_rows_update_split_has_both_sides_gradients_only_step():
    """The step minus its gradients-only step is the update's cost: the quick preset measures that
    step in the mode of the row's TF1 side and in Keras's custom loop, as the mechanism looks them up."""
    from benchmarks.analyse.verdict import row_pairs
    from benchmarks.presets import quick_configs
    configs = quick_configs()
    keys = {c.key() for c in configs}
    rows = [r for r in ROWS if r.model == "embedding" and r.slow.name == "keras-fit"]
    assert rows
    for row in rows:
        (_, slow), = row_pairs(row, configs)
        for mode in (row.fast.name, "keras-ctl"):
            assert replace(slow, mode=mode, task="gradients", optimizer="rmsprop").key() in keys, mode


def test_run_time_splits_the_wall_into_its_parts_and_ranks_the_configurations():
    """Two processes of known spans: each part is the sum of its spans, the processes' rest is
    what their spans leave, the gap between them the run's, and the parts add up to the wall."""
    from benchmarks.analyse.run_time import run_time
    row = BenchConfig(mode="graph", model="vgg16_head", batch=32)  # a side of the fixed-cost row
    other = replace(row, batch=8)

    def record(config, position, wall_s, build_s, times, account=None):
        # times: the warm-up samples (the first of them the first step), then the timed ones
        return {"key": config.key(), "config": config.to_dict(), "ok": True, "repeat": 0, "position": position,
                "wall_s": wall_s, "build_s": build_s, "first_step_s": build_s + times[0],
                "warmup_times_s": times[:2], "step_times_s": times[2:], "steps_per_sample": 1,
                "accounting": account}
    runs = [record(row, 0, 10.0, 1.0, [2.0, 0.5, 0.5, 0.5], {"wall_ms": 250.0, "samples": 4, "steps_per_sample": 1}),
            record(other, 0, 10.0, 0.5, [1.0, 0.25, 0.25, 0.25]),  # one process: 20 s in all
            {"key": replace(row, mode="keras-fit").key(), "config": replace(row, mode="keras-fit").to_dict(),
             "ok": False, "error": "x", "repeat": 0, "position": 1, "wall_s": 6.0}]
    results = {"started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:00:30+00:00", "runs": runs,
               "configs": [c["config"] for c in runs]}
    timing = run_time(results)
    assert timing.total_s == 30.0
    assert timing.parts_s == {"setup": 3.0 + 1.5, "samples": 1.5 + 0.75, "profiled": 1.0,
                              "workers": (20.0 - 4.5 - 2.25 - 1.0) + 6.0, "between": 30.0 - 26.0}
    assert sum(timing.parts_s.values()) == timing.total_s
    rest = (20.0 - 4.5 - 2.25 - 1.0) / 2  # the first process's rest, shared by its two configurations
    costs = {c.key: (c.seconds, c.map_side) for c in timing.costliest}
    assert costs == {row.key(): (3.0 + 1.5 + 1.0 + rest, True), other.key(): (1.5 + 0.75 + rest, False),
                     replace(row, mode="keras-fit").key(): (6.0, True)}
    assert [c.key for c in timing.costliest][0] == row.key()
    assert run_time({**results, "finished": None}) is None


def test_the_machine_is_named_with_its_cpu_flags_and_what_was_not_recorded_is_left_out():
    machine = {"cpu_model": "Xeon", "cpu_count": 2, "memory_gib": 23.6, "cpu_flags_of_note": ["amx_tile", "avx512f"]}
    assert machine_text(machine) == "Xeon, 2 CPUs, 23.6 GiB, CPU flags amx_tile avx512f"
    assert machine_text({"processor": "arm64", "cpu_flags_of_note": []}) == \
        "arm64, CPU flags (none of AVX2, AVX-512, AMX, FMA)"
    assert machine_text({}) == "CPU not recorded"


def test_the_verdict_picture_s_legend_carries_each_row_s_whole_scenario_inside_the_figure(monkeypatch):
    """A long scenario (the embedding rows run past 100 characters) keeps the words that name its
    two sides, and the legend of 30 such rows still fits in the figure."""
    from benchmarks.present import plots
    shown = {}

    def keep(fig, path):
        shown["fig"] = fig
        return path
    monkeypatch.setattr(plots, "save_figure", keep)
    scenario = ("keras#7818's model (100k x 512 embedding), SGD, batch 32: TF1 loop vs Keras 2 fit "
                "(tf.function); timed within one epoch, row {}")
    rows = [{"scenario": scenario.format(i), "fast": "graph-feed", "slow": "tfkeras-fit", "ratio": 1.0 + i / 10,
             "lo": 0.8 + i / 10, "hi": 1.2 + i / 10, "step_ms": 10.0 + i} for i in range(30)]
    plots.ratio_vs_step(rows, "unused.png")
    fig = shown["fig"]
    legend = fig.axes[0].get_legend()
    texts = [" ".join(t.get_text().split()) for t in legend.get_texts()]
    for i, row in enumerate(rows):
        assert f"{i + 1}. {row['scenario']} (graph-feed / tfkeras-fit)" in texts
    box = legend.get_window_extent(fig.canvas.get_renderer())
    assert box.y0 >= 0 and box.y1 <= fig.bbox.height + 1 and box.x1 <= fig.bbox.width + 1


def test_a_report_of_one_mode_says_what_it_lacks_instead_of_showing_empty_tables(tmp_path):
    """One mode at one batch: no map row, no ratio, no line to fit; each section says so in words."""
    from benchmarks.present.report import write_report
    results = _results([BenchConfig(mode="graph", model="mlp", batch=32, data="numpy")], lambda c: 0.01)
    results["summary"] = summarize_results(results)
    text = write_report(results, tmp_path).read_text()
    assert "No row of the verdict map was measured in this run." in text and "| regime |" not in text
    assert "No mode was compared with its Keras baseline in this run." in text and "| mode | vs |" not in text
    assert "no line to fit" in text and "| family |" not in text
    assert "| graph/mlp/train/b32/" in text  # the configuration itself is still listed
