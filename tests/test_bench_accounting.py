"""The accounting of a verdict row: a known injected cost lands in the part it belongs to, the
parts add up to the profiled wall time with the residual, and the mechanism sentence is made of
the measured parts (changing a measurement changes the sentence)."""
from __future__ import annotations

import cProfile
import gc
import json
import time
from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks.analyse.gap import format_ms, gap_sentence, row_accounting
from benchmarks.analyse.gap import kernels as compare_kernels
from benchmarks.analyse.records import ConfigSummary
from benchmarks.config import BenchConfig
from benchmarks.measure.accounting import ProfilerCost, Tracer, _entries_while_on, host_parts, profile_table, traced
from benchmarks.measure.timing import timed_steps
from benchmarks.parts import PART_LABELS

SLEEP_S = 0.02  # the injected cost: at least this long, however loaded the machine


def _assert_closed(acc: dict) -> None:
    """The parts, residual included, are the profiled wall; what no profiler saw stays small."""
    parts = acc["parts_ms"]
    assert set(parts) == set(PART_LABELS) and parts["profiler"] >= 0  # cProfile's own time, calibrated
    assert sum(parts.values()) == pytest.approx(acc["wall_ms"], rel=1e-9)
    assert abs(parts["residual"]) <= 0.1 * acc["wall_ms"], parts


def test_an_op_of_known_cost_is_time_inside_ops_under_its_own_op_type():
    graph = tf.Graph()
    with graph.as_default():
        slow = tf.numpy_function(lambda: (time.sleep(SLEEP_S), np.float32(1))[1], [], tf.float32)
        fetch = slow + tf.constant(1.0)
    with tf.compat.v1.Session(graph=graph) as session:
        session.run(fetch)
        acc = traced(lambda: timed_steps(lambda: session.run(fetch), 3), SLEEP_S)
    _assert_closed(acc)
    assert acc["samples"] == 3 and acc["parts_ms"]["ops"] >= 0.95 * SLEEP_S * 1000
    assert acc["op_types"]["PyFunc"]["ms"] >= 0.95 * SLEEP_S * 1000 and acc["op_types"]["PyFunc"]["count"] == 1
    assert acc["threads"]["inter_op"] >= 1  # the Session's pool as it ran: the threads that ran its ops
    # the sleep ran on the runtime's thread, not in the Python that called Session.run
    assert acc["parts_ms"]["session"] < SLEEP_S * 1000 / 2 and acc["parts_ms"]["callbacks"] == 0


@pytest.mark.parametrize("sleep", [True, False])
def test_a_callback_that_sleeps_in_fit_is_the_callbacks_part(monkeypatch, sleep):
    from benchmarks.measure import keras_fit

    class Sleeper(keras.callbacks.Callback):  # a user's callback: its file is in no part's files
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(SLEEP_S if sleep else 0)

    fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, callbacks=(), **k:
                        fit(self, *a, callbacks=[Sleeper(), *callbacks], **k))
    config = BenchConfig(mode="keras-fit", model="mlp", batch=8, steps=3, warmup=1, data="numpy", account=4)
    times, _, facts, acc = keras_fit.run_fit(config)
    # the profiled samples are steps as well, and so is the one before them (the call's epoch starts in it)
    assert len(times) == 4 and facts["updates_applied"] == 1 + 3 + 1 + 4
    _assert_closed(acc)
    callbacks = acc["parts_ms"]["callbacks"]
    if sleep:  # all of the sleep, per step, in the callbacks part and not elsewhere
        assert callbacks >= 0.95 * SLEEP_S * 1000
        assert acc["parts_ms"]["other"] < SLEEP_S * 1000 / 2 and acc["parts_ms"]["harness"] < SLEEP_S * 1000 / 2
    else:
        assert callbacks < 0.95 * SLEEP_S * 1000
    assert acc["inflation"] is not None and acc["op_types"]
    # fit's step function spans the ops it runs: counted as ops itself it would count them twice
    assert not [t for t in acc["op_types"] if t.startswith("__")] and any("MatMul" in t for t in acc["op_types"])


def test_fit_with_steps_per_execution_is_accounted_per_step():
    """A keras-fit-spe sample is one execution of 32 steps: its parts are per step, as its
    timed samples are, and still close on the wall."""
    from benchmarks.measure import keras_fit
    config = BenchConfig(mode="keras-fit-spe", model="mlp", batch=8, steps=2, warmup=1, data="numpy", account=2)
    times, _, facts, acc = keras_fit.run_fit(config)
    assert len(times) == 3 and facts["updates_applied"] == (1 + 2 + 1 + 2) * 32  # a lead execution too
    assert acc["samples"] == 2 and acc["steps_per_sample"] == 32
    _assert_closed(acc)
    # per step like the timed statistic, which a per-execution wall would exceed 32-fold
    assert 0.3 < acc["inflation"] < 10


def _leaf(x: int) -> int:
    return x + 1


def _python_heavy_step() -> int:
    x = 0
    for _ in range(20_000):
        x = _leaf(x)
        len(())
    return x


def test_the_profiler_s_own_time_is_counted_once_on_a_step_of_many_python_calls():
    """cProfile's time lands inside the own times of the functions it times: moved from them to
    the profiler part, not added again, the parts of 40,000 calls per step close on the wall."""
    acc = traced(lambda: timed_steps(_python_heavy_step, 3), 0.01)
    _assert_closed(acc)
    assert acc["parts_ms"]["profiler"] > 0 and acc["parts_ms"]["harness"] > 0


def _loop_of_own_work(tracer: Tracer, python_on_before: bool) -> dict:
    """Samples whose time is this frame's own bytecode, as fit's loop is for its steps."""
    if python_on_before:
        tracer.start_window()
    else:
        tracer.start()
    walls = []
    for _ in range(3):
        start, x = time.perf_counter(), 0
        for i in range(300_000):  # no call: nothing cProfile would see enter
            x += i
        walls.append(time.perf_counter() - start)
    return tracer.stop(walls, 0.01)


def test_a_loop_already_running_is_seen_when_cprofile_starts_before_it():
    """Started inside the loop's frame, cProfile never sees that frame: its time is all residual.
    On before the frame is entered, with the window from the first sample, the frame's own time
    is a part (here `other`: a test file is in no part's files) and the parts close."""
    inside = _loop_of_own_work(Tracer(), python_on_before=False)
    assert inside["parts_ms"]["residual"] >= 0.8 * inside["wall_ms"]
    tracer = Tracer()
    tracer.start_python()
    seen = _loop_of_own_work(tracer, python_on_before=True)
    _assert_closed(seen)
    assert seen["parts_ms"]["other"] >= 0.8 * seen["wall_ms"]


def _generated(name: str, count: int) -> list:
    """`count` functions made by `exec`, each its own code object, all named ("<string>", 1, name)."""
    out = []
    for i in range(count):
        scope: dict = {}
        exec(f"def {name}():\n    return {i}\n", scope)
        out.append(scope[name])
    return out


def _call_each(functions: list) -> None:
    for f in functions:
        f()


def test_code_objects_of_one_name_are_counted_together():
    """Generated code (dataclass and namedtuple methods) gives many code objects one name;
    `pstats` would keep the calls of one of them."""
    twins = _generated("twin", 3)
    profile = cProfile.Profile()
    profile.enable()
    _call_each(twins)
    profile.disable()
    (row,) = [v for k, v in profile_table(profile.getstats()).items() if k[2] == "twin"]
    assert row[1] == 3 and sum(c[0] for c in row[4].values()) == 3


class _Cycle:
    """Garbage only the collector frees, whose finalizer makes profiled calls."""

    def __init__(self) -> None:
        self.me, self.calls = self, _generated("finalizer_call", 20)

    def __del__(self) -> None:
        for f in self.calls:
            f()


def test_the_window_s_snapshot_lists_every_entry_once_whatever_the_collector_does():
    """A collection that starts while cProfile's entries are walked runs finalizers, which are
    profiled: recording them reshapes the tree being walked. The snapshot keeps the collector
    off for the walk (each of 300 functions called once is listed with 1 call), and freezes
    its copies until the profile stops, so that the window's collections do not traverse them."""
    functions = [f for i in range(300) for f in _generated(f"once_{i}", 1)]
    profile = cProfile.Profile()
    threshold = gc.get_threshold()
    gc.set_threshold(10 ** 6)
    try:
        profile.enable()
        for f in functions:
            f()
        garbage = [_Cycle() for _ in range(100)]
        del garbage
        gc.set_threshold(gc.get_count()[0] + 300)  # a collection some way into the walk
        entries = _entries_while_on(profile)
        frozen = gc.get_freeze_count()
        profile.disable()
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
        gc.collect()
    calls = {k[2]: v[1] for k, v in profile_table(entries).items() if k[2].startswith("once_")}
    assert calls == {f"once_{i}": 1 for i in range(300)}
    assert frozen > 0


def test_the_profiler_s_charges_leave_each_function_s_own_time_as_counted():
    """Each call costs its callee its share and its caller the rest; a charge never exceeds the
    own time it is taken from; the runtime call is charged as a callee."""
    loop, keras_fn = ("/x/benchmarks/loop.py", 1, "loop"), ("/x/keras/src/step.py", 2, "step")
    run, tiny = ("~", 0, "<built-in method TF_SessionRun_wrapper>"), ("/x/keras/src/tiny.py", 3, "tiny")
    table = {  # {func: (cc, nc, own, cumulative, {caller: (nc, cc, own, cum)})}
        loop: (1, 1, 1e-3, 0, {}),
        keras_fn: (100, 100, 2e-4, 0, {loop: (100, 100, 2e-4, 0)}),
        run: (10, 10, 5e-3, 0, {keras_fn: (10, 10, 5e-3, 0)}),
        tiny: (50, 50, 1e-6, 0, {keras_fn: (50, 50, 1e-6, 0)})}
    cost = ProfilerCost(python_caller=1e-6, python_callee=2e-7, builtin_caller=5e-7, builtin_callee=1e-7)
    runtime, parts = host_parts(table, cost)
    assert runtime == pytest.approx(5e-3 - 10 * 1e-7)
    assert parts["harness"] == pytest.approx(1e-3 - 2e-7 - 100 * 1e-6)
    assert parts["keras"] == pytest.approx(2e-4 - 100 * 2e-7 - 10 * 5e-7 - 50 * 1e-6)  # tiny: charged to 0
    assert parts["profiler"] == pytest.approx(100.2e-6 + 75e-6 + 1e-6 + 1e-6)
    assert runtime + sum(parts.values()) == pytest.approx(1e-3 + 2e-4 + 5e-3 + 1e-6)  # nothing lost or added


def _summary(mode: str, parts: dict, op_types: dict) -> ConfigSummary:
    config = BenchConfig(mode=mode, model="mlp", batch=32, data="numpy")
    full = {name: parts.get(name, 0.0) for name in PART_LABELS}
    acc = {"samples": 5, "wall_ms": sum(full.values()), "inflation": 1.5, "parts_ms": full,
           "op_types": op_types, "input_ops_ms": 0.0}
    return ConfigSummary(config, 1, [], throughput={"median": 1.0}, accounting=acc)


def test_the_mechanism_sentence_is_made_of_the_measured_parts():
    kernels = {"MatMul": {"ms": 0.8, "count": 2}, "AddV2": {"ms": 0.3, "count": 3}}
    fast = _summary("graph-feed", {"ops": 1.1, "waiting": 0.3, "session": 0.2}, kernels)
    slow = _summary("keras-fit", {"ops": 1.1, "waiting": 0.3, "dispatch": 0.9, "keras": 0.2}, kernels)
    acc = row_accounting(fast, slow)
    assert acc["gap_ms"] == pytest.approx(0.9) and acc["largest"]["part"] == "dispatch"
    text = gap_sentence(acc, "graph-feed", "keras-fit")
    assert "tf.function dispatch and tracing +900 us (100% of it)" in text
    assert "the same 2 op types carry 90%" in text
    # more time in callbacks than in dispatch: the sentence names the new largest part and its ms
    busier = replace(slow, accounting={**slow.accounting, "wall_ms": slow.accounting["wall_ms"] + 2.5,
                                       "parts_ms": {**slow.accounting["parts_ms"], "callbacks": 2.5}})
    text = gap_sentence(row_accounting(fast, busier), "graph-feed", "keras-fit")
    assert "most of the rest is callbacks and progress +2.5 ms (74% of it)" in text
    # the same update on a resource variable is the same op type; a oneDNN kernel is not Eigen's
    k = compare_kernels({"AssignSub": {"ms": 1.0, "count": 4}, "_MklMatMul": {"ms": 1.0, "count": 1}},
                {"AssignSubVariableOp": {"ms": 1.2, "count": 4}, "MatMul": {"ms": 1.0, "count": 1}})
    assert k["only_fast"] == ["_MklMatMul"] and k["only_slow"] == ["MatMul"] and "AssignSub" in k["top_slow"]
    assert k["largest_difference"]["op_type"] in ("_MklMatMul", "MatMul")
    # a timed ratio the profiled steps contradict: no part is named as its cause
    text = gap_sentence(acc, "graph-feed", "keras-fit", ratio={"ratio": 0.9, "lo": 0.85, "hi": 0.95})
    assert ("do not show the timed gap (0.90x): their difference (+900 us without the profiler's own time) has the "
            "other sign") in text
    assert "most of" not in text
    # a timed interval that covers 1: the profiled difference is no gap's cause
    text = gap_sentence(acc, "graph-feed", "keras-fit", ratio={"ratio": 1.02, "lo": 0.9, "hi": 1.15})
    assert ("cannot tell the sides apart (1.02x [0.90, 1.15] covers 1), so the profiled difference (+900 us without the profiler's "
            "own time) locates none") in text
    assert "most of" not in text
    located = gap_sentence(acc, "graph-feed", "keras-fit", ratio={"ratio": 1.3, "lo": 1.1, "hi": 1.5})
    assert "most of the rest is tf.function dispatch and tracing +900 us" in located
    # another kernel on the Keras side: no longer "the same op types"
    other = replace(slow, accounting={**slow.accounting, "op_types": {**kernels, "Conv2D": {"ms": 5.0, "count": 1}}})
    text = gap_sentence(row_accounting(fast, other), "graph-feed", "keras-fit")
    assert "only the Keras side runs Conv2D" in text and "op time differs most in Conv2D (+5.0 ms)" in text


def test_a_part_larger_than_the_whole_gap_is_said_to_be_so_with_the_part_that_runs_the_other_way():
    """Keras's set-up +2.8 ms against ops 1.8 ms faster: the gap is 1 ms, and "most of it" would
    misread a 280% share."""
    kernels = {"MatMul": {"ms": 0.8, "count": 2}}
    fast = _summary("graph-feed", {"ops": 8.4}, kernels)
    slow = _summary("keras-fit", {"ops": 6.6, "keras": 2.8}, kernels)
    acc = row_accounting(fast, slow)
    assert acc["step_gap_ms"] == pytest.approx(1.0) and acc["against"]["part"] == "ops"
    text = gap_sentence(acc, "graph-feed", "keras-fit", ratio={"ratio": 1.1, "lo": 1.05, "hi": 1.2})
    assert ("Keras's per-call set-up and loop +2.8 ms is more than all of the rest (280% of it: inside ops (busy) "
            "-1.8 ms runs the other way)") in text and "most of" not in text
    # nothing against it: the ordinary sentence, and no part said to run the other way
    plain = row_accounting(fast, _summary("keras-fit", {"ops": 8.4, "keras": 2.8, "dispatch": 0.2}, kernels))
    assert plain["against"] is None
    assert format_ms(0.9999) == "1.0 ms" and format_ms(0.9994) == "999 us" and format_ms(-2.345) == "-2.3 ms"
    assert "most of the rest is Keras's per-call set-up and loop +2.8 ms (93% of it)" in gap_sentence(plain, "a", "b")


def test_the_profiler_s_own_time_is_the_measurement_s_not_the_mechanism():
    """cProfile costs more on the side with more Python calls, so it widens the profiled gap: the
    part named is the largest of the others, its share is of the gap less the profiler's own
    time, and a profiled gap that only the profiler opens locates no timed one."""
    kernels = {"MatMul": {"ms": 0.8, "count": 2}}
    fast = _summary("graph-feed", {"ops": 1.1, "session": 0.2, "profiler": 0.1}, kernels)
    slow = _summary("keras-fit", {"ops": 1.1, "session": 0.2, "dispatch": 0.3, "profiler": 0.6}, kernels)
    acc = row_accounting(fast, slow)
    assert acc["gap_ms"] == pytest.approx(0.8) and acc["step_gap_ms"] == pytest.approx(0.3)
    assert acc["largest"]["part"] == "dispatch" and acc["largest"]["share"] == pytest.approx(1.0)
    text = gap_sentence(acc, "graph-feed", "keras-fit", ratio={"ratio": 1.3, "lo": 1.1, "hi": 1.5})
    assert "(gap +800 us, of which the profiler's own time +500 us;" in text
    assert "most of the rest is tf.function dispatch and tracing +300 us (100% of it)" in text
    # the timed Keras steps slower; the profiled ones slower only by the profiler's own time
    only_profiler = _summary("keras-fit", {"ops": 1.1, "session": 0.1, "profiler": 0.6}, kernels)
    text = gap_sentence(row_accounting(fast, only_profiler), "graph-feed", "keras-fit",
                        ratio={"ratio": 1.3, "lo": 1.1, "hi": 1.5})
    assert "their difference (-100 us without the profiler's own time) has the other sign" in text
    assert "most of" not in text


def test_the_answer_names_parts_only_for_rows_whose_gap_the_profile_locates():
    """A row whose timed interval covers 1 has no gap: its profiled difference (here 50 ms of
    ops, from noise or unequal profiling) is not counted as any part's."""
    from benchmarks.analyse.verdict import gap_summary
    kernels = {"MatMul": {"ms": 0.8, "count": 2}}
    fast = _summary("graph-feed", {"ops": 1.1, "session": 0.2}, kernels)
    slow = _summary("keras-fit", {"ops": 1.1, "dispatch": 0.9}, kernels)
    noisy = _summary("keras-fit", {"ops": 51.1, "session": 0.2}, kernels)
    rows = [{"scenario": "MLP", "accounting": row_accounting(fast, slow), "located": True},
            {"scenario": "ResNet50", "accounting": row_accounting(fast, noisy), "located": False}]
    text = gap_summary(rows)
    assert "Of the 1 rows with a gap the profiled steps locate" in text
    assert "tf.function dispatch and tracing in 1 (up to 900 us per step, MLP)" in text
    assert "inside ops" not in text and "In 1 profiled row(s) the timed interval cannot tell the sides apart" in text
    # a gap the Keras side wins (fit with steps_per_execution): its size, and in whose favour
    lean = _summary("keras-fit-spe", {"ops": 1.1}, kernels)
    text = gap_summary([{"scenario": "MLP", "accounting": row_accounting(fast, lean), "located": True}])
    assert "Session.run feed and fetch handling in 1 (up to 200 us per step in the Keras side's favour, MLP)" in text


@pytest.mark.slow
def test_a_run_profiles_both_sides_of_each_row_in_its_first_repeat_and_reports_them(tmp_path, forked_workers):
    from benchmarks.analyse.summary import load_results
    from benchmarks.cli import main
    from benchmarks.measure.runner import run
    from benchmarks.present.report import write_report
    configs = [BenchConfig(mode=m, model="mlp", batch=32, data="numpy", steps=4, warmup=1)
               for m in ("graph-feed", "keras-fit")]
    results = run(configs, 2, tmp_path / "results.json", log=lambda _: None, account=3)
    profiled = {(r["config"]["mode"], r["repeat"]) for r in results["runs"] if r.get("accounting")}
    assert profiled == {("graph-feed", 0), ("keras-fit", 0)}  # the row's sides, in the first repeat only
    for run_record in results["runs"]:
        if run_record.get("accounting"):
            _assert_closed(run_record["accounting"])
            assert len(run_record["step_times_s"]) == 4  # the profiled samples are not among the timed
            # fed from arrays, costs come per pass as well: as many profiled samples as timed ones
            assert run_record["accounting"]["samples"] == 4
    report = write_report(load_results(tmp_path / "results.json"), tmp_path)
    text = report.read_text()
    assert "## Where each row's time goes" in text and (tmp_path / "accounting.png").stat().st_size > 0
    assert "1. graph-feed / keras-fit, MNIST-style MLP, batch 32" in text and "residual (not seen)" in text
    assert "measured at two or more batch sizes in one mode in this run: no line to fit" in text  # one batch
    # a run that profiled nothing: the report says no part of a gap, and has no such section
    bare = json.loads((tmp_path / "results.json").read_text())
    for run_record in bare["runs"]:
        run_record["accounting"] = None
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "results.json").write_text(json.dumps(bare))
    assert main(["report", str(tmp_path / "bare" / "results.json")]) == 0
    text = (tmp_path / "bare" / "report.md").read_text()
    assert "## Where each row's time goes" not in text and "so no part of a gap is measured" in text
    assert "not profiled; per total / steps" in text


def test_the_gpu_projection_uses_each_side_s_measured_host_time_and_its_mode_s_overlap():
    from benchmarks.analyse.projection import PCIE_BYTES_PER_S, gpu_projection, significant
    from benchmarks.analyse.verdict import verdict_map

    def side(mode: str, dispatch_ms: list[float]) -> ConfigSummary:
        by_repeat = {str(i): _summary(mode, {"ops": 100.0, "waiting": 5.0, "dispatch": d, "harness": 1.0},
                                      {}).accounting for i, d in enumerate(dispatch_ms)}
        config = BenchConfig(mode=mode, model="resnet50", image_size=64, batch=16, data="numpy")
        return ConfigSummary(config, 3, [], throughput={"median": 1.0}, accounting=by_repeat["0"],
                             accounting_by_repeat=by_repeat, repeat_step_s={"0": 0.1, "1": 0.1, "2": 0.1})

    configs = {e.key: e for e in (side("graph-feed", [2.0, 2.0, 2.0]), side("keras-fit", [40.0, 44.0, 36.0]))}
    rows = [r for r in verdict_map({"configs": configs, "fits": [], "refused": []}) if r["accounting"]]
    projected = {(p["gpu"][:4], p["batch"]): p for p in gpu_projection(rows, configs)}
    v100 = projected[("V100", 32)]
    device, copy = 32 / 412.0 * 1000, 32 * (224 * 224 * 3 * 4 + 4) / PCIE_BYTES_PER_S * 1000
    # host: the Python parts (3 and 37-45 ms), not the ops or the runtime; the feed loop adds its
    # copy and the GPU's time, fit overlaps its host time with the GPU's; one ratio per repeat
    assert (v100["host_fast_ms"], v100["host_slow_ms"]) == (3.0, 41.0) and v100["copy_ms"] == pytest.approx(copy)
    per_repeat = [max(h, device) / (3.0 + copy + device) for h in (41.0, 45.0, 37.0)]
    assert v100["ratio"] == pytest.approx(np.exp(np.mean(np.log(per_repeat))))
    # 78 ms on the V100: fit's step is the GPU's in every repeat, so the repeats agree exactly
    assert v100["lo"] == pytest.approx(v100["ratio"]) == pytest.approx(v100["hi"]) and v100["repeats"] == 3
    assert v100["combine"] == "host + copy + GPU / max(host, GPU)"
    a100 = projected[("A100", 32)]  # 13.5 ms on the GPU: fit's Python is the step, and varies
    per_repeat = [h / (3.0 + copy + 32 / 2375.0 * 1000) for h in (41.0, 45.0, 37.0)]
    assert a100["ratio"] == pytest.approx(np.exp(np.mean(np.log(per_repeat))))
    assert a100["lo"] < min(per_repeat) and a100["hi"] > max(per_repeat)
    assert significant(1.2345) == "1.2" and significant(0.012345) == "0.012" and significant(41.0) == "41"
