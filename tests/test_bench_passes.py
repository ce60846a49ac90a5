"""Costs that come once per pass (fit's epoch over arrays, an evaluated split): the timed and the
profiled samples stand to the passes alike, as the configuration declares (`epoch_samples`), so a
pass's set-up weighs in a step as often in both, and the row says how."""
from __future__ import annotations

import time
from dataclasses import replace

import keras
import numpy as np
import pytest
from bench_helpers import run_record

from benchmarks.analyse.gap import kernel_sentence, kernels
from benchmarks.analyse.summary import summarize_results
from benchmarks.analyse.verdict import ROWS, row_pairs, scenario_label
from benchmarks.config import BenchConfig
from benchmarks.measure.batches import array_batches, numpy_arrays
from benchmarks.present.report import ladder_lines, precision_rows
from benchmarks.presets import quick_configs
from plumbing.errors import UserError

EPOCH_SLEEP_S = 0.04  # the injected cost of each epoch's start, however loaded the machine


def _mlp(**fields) -> BenchConfig:
    return BenchConfig(**{"mode": "keras-fit", "model": "mlp", "batch": 8, "data": "numpy", **fields})


def test_a_declared_epoch_sets_the_arrays_the_windows_and_their_label():
    whole = _mlp(epoch_samples=32, steps=3, warmup=1).in_whole_passes()  # 4 batches an epoch
    assert (whole.warmup, whole.steps, whole.pass_samples()) == (4, 4, 4) and whole.whole_passes()
    assert array_batches(whole) == array_batches(replace(whole, account=40)) == 4  # profiling changes no pass
    assert whole.profiled_samples(5) == 8 and replace(whole, account=8).profile_lead() == 1
    assert whole.pass_note() == "epochs of 4 batches, timed whole" and "epoch32" in whole.key()
    long = _mlp(epoch_samples=8 * 1000, steps=3, warmup=1)  # 1,000 batches: timed within an epoch
    assert not long.whole_passes() and long.in_whole_passes() == long
    profiled = replace(long, account=12)
    assert array_batches(profiled) >= max(long.warmup + long.steps, 1 + 12)  # no window reaches an epoch's end
    assert profiled.profile_lead() == 1 and long.pass_note() == "epochs of 1,000 batches, timed within one"
    assert _mlp().pass_note() == "timed within one epoch" and BenchConfig(mode="graph").pass_note() is None
    spe = replace(whole, mode="keras-fit-spe")  # an epoch of 4 steps is no whole number of 32-step executions
    assert not spe.whole_passes() and spe.pass_note().endswith("timed within one")
    assert len(numpy_arrays(whole)[0]) == 32


def test_a_declared_epoch_needs_arrays_and_whole_passes():
    with pytest.raises(UserError, match="numpy data"):
        BenchConfig(mode="graph", model="mlp", epoch_samples=64).validate()
    with pytest.raises(UserError, match=r"whole passes of 4 samples"):
        _mlp(epoch_samples=32, steps=3, warmup=4).validate()
    with pytest.raises(UserError, match="in-memory arrays of"):
        numpy_arrays(_mlp(model="vgg16_head", batch=256, steps=20_000))


def _epoch_starts(monkeypatch, sleep_s: float) -> list[int]:
    """Patch fit so that every epoch's start sleeps `sleep_s`, and record, per epoch, how many
    batches of its fit call had ended when it started."""
    starts: list[int] = []

    class EpochCost(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.batches = 0

        def on_epoch_begin(self, epoch, logs=None):
            starts.append(self.batches)
            time.sleep(sleep_s)

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

    fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, callbacks=(), **k:
                        fit(self, *a, callbacks=[EpochCost(), *callbacks], **k))
    return starts


def test_each_timed_and_profiled_epoch_carries_its_start_once(monkeypatch):
    """Epochs of 4 batches, timed whole: the epoch's start (a 40 ms sleep here) is in the timed
    statistic as 10 ms per step, and in the profile's callbacks part as the same 10 ms."""
    from benchmarks.measure import keras_fit
    starts = _epoch_starts(monkeypatch, EPOCH_SLEEP_S)
    config = replace(_mlp(epoch_samples=32, steps=8, warmup=4), account=8)
    times, _, facts, acc = keras_fit.run_fit(config)
    # timed call: epochs start at batches 0, 4, 8 (the timed ones 4 and 8); profiled call: its first
    # epoch starts before its lead sample, 2 more in the window
    assert starts == [0, 4, 8, 0, 4, 8] and facts["updates_applied"] == 4 + 8 + 1 + 8
    per_epoch = EPOCH_SLEEP_S / 4 * 1000  # ms per step
    timed = config.repeat_step(times[config.warmup:]) * 1000
    assert timed >= 0.95 * per_epoch
    assert acc["samples"] == 8 and acc["parts_ms"]["callbacks"] >= 0.95 * per_epoch


def test_within_an_epoch_no_window_meets_an_epoch_s_start(monkeypatch):
    """A pass longer than the run: the timed call's only epoch starts in its warm-up, the profiled
    call's in its lead sample: a 1 s start in a window of 4-8 samples would add 125-250 ms to each of
    its steps, 50x what a step of this MLP takes on a loaded machine."""
    from benchmarks.measure import keras_fit
    starts = _epoch_starts(monkeypatch, 1.0)
    config = replace(_mlp(steps=8, warmup=2), account=4)
    times, _, _, acc = keras_fit.run_fit(config)
    assert starts == [0, 0]
    assert config.repeat_step(times[config.warmup:]) < 0.1 and acc["parts_ms"]["callbacks"] < 100


def test_quick_rows_state_how_their_samples_stand_to_the_epochs():
    """The MNIST-style rows walk epochs of 65,536 samples: timed whole at batch 1,024 (64 batches),
    within one at batch 32; the head's arrays of 10 batches are walked whole."""
    configs = quick_configs()
    labels = {}
    for row in ROWS:
        for _, slow in row_pairs(row, configs):
            labels[(row.model, row.task, row.data, slow.batch, row.slow.name)] = scenario_label(row, slow)
    assert labels[("mlp", "train", "numpy", 1024, "keras-fit")].endswith("; epochs of 64 batches, timed whole")
    assert labels[("mlp", "train", "numpy", 32, "keras-fit")].endswith("; epochs of 2,048 batches, timed within one")
    assert labels[("vgg16_head", "evaluate", "numpy", 32, "keras-fit")].endswith("; a split of 10 batches, timed whole")
    assert labels[("resnet50", "train", "numpy", 16, "keras-fit")].endswith("; timed within one epoch")
    assert labels[("resnet50", "train", "synthetic", 16, "keras-fit")].endswith("64 px, batch 16")  # no epochs
    whole = [c for c in configs if c.whole_passes()]
    assert whole and all(c.warmup % c.pass_samples() == 0 and c.steps % c.pass_samples() == 0 for c in whole)
    # every mode of a comparison stands to the passes alike
    by_group: dict[str, set] = {}
    for c in configs:
        by_group.setdefault(c.group(), set()).add(c.pass_note())
    assert all(len(notes) == 1 for notes in by_group.values())


def test_precision_rows_show_the_per_repeat_ratio_the_interval_is_over():
    """Per-pass samples (one 10x sample per epoch of 4): the per-repeat ratio is of total / steps,
    as the interval's, not of medians, which drop the epoch's start."""
    fast, slow = _mlp(mode="graph-feed", epoch_samples=32, steps=4, warmup=4), _mlp(epoch_samples=32, steps=4,
                                                                                   warmup=4)
    runs = []
    for repeat in range(2):
        for config, times in ((fast, [1.0] * 4), (slow, [20.0, 2.0, 2.0, 2.0])):
            runs.append(run_record(config, [t * (1 + 0.01 * repeat) for t in times], repeat))
    summary = summarize_results({"schema": 1, "repeats": 2, "runs": runs})
    (ratio,) = summary["ratios"]
    (row,) = precision_rows(summary["ratios"], summary["configs"])
    assert ratio["ratio"] == pytest.approx(6.5) and row["per_repeat"] == pytest.approx([6.5, 6.5])
    # the median of the four repeats' IQR / median: 0 (the loop's), 2.25 (fit's, one sample 10x)
    assert row["within_process"] == pytest.approx(1.125)


def test_top_op_types_that_differ_are_named_by_the_side_whose_top_they_are_in():
    """Both sides run Conv2D, MatMul and Sum; MatMul is among the TF1 side's top types (90% of its op
    time) only, Sum among the Keras side's only."""
    fast = {"Conv2D": {"ms": 80.0, "count": 1}, "MatMul": {"ms": 15.0, "count": 1}, "Sum": {"ms": 5.0, "count": 1}}
    slow = {"Conv2D": {"ms": 60.0, "count": 1}, "MatMul": {"ms": 1.0, "count": 1}, "Sum": {"ms": 39.0, "count": 1}}
    k = kernels(fast, slow)
    assert not k["same"] and not k["only_fast"] and not k["only_slow"]
    sentence = kernel_sentence(k)
    assert sentence.startswith("the top op types differ: MatMul among the TF1 side's only; Sum among the Keras "
                               "side's only")
    assert "(Conv2D" not in sentence and np.isclose(k["largest_difference"]["ms"], 34.0)


def test_the_ladder_shows_the_step_measured_on_most_of_its_rungs():
    """Five modes of the embedding model, three of them rungs (custom loop, feed_dict, fit); four
    rungs of the head (eager, custom loop, Session, fit): the head's ladder, eager on it."""
    runs = []
    for model, modes in (("embedding", ("graph-feed", "keras-fit", "keras-ctl", "tfkeras-fit", "tfkeras-v1")),
                         ("vgg16_head", ("eager", "keras-ctl", "graph", "keras-fit"))):
        for mode in modes:
            runs.append(run_record(BenchConfig(mode=mode, model=model, batch=32, steps=2, warmup=0), [0.1, 0.1]))
    lines = ladder_lines(summarize_results({"schema": 1, "repeats": 1, "runs": runs})["configs"])
    assert lines[0].startswith("Model and settings: vgg16_head/train")
    assert any(line.startswith("| eager (GradientTape") for line in lines)
