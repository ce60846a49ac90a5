"""`python -m benchmarks parity`: the same start gives the same curves in both APIs, the seeds'
results are compared by TOST, and the TOST keeps its promise."""
import json
import math

import numpy as np
import pytest
import scipy.stats
from shard_helpers import feature_shards

from benchmarks.analyse.stats import tost
from benchmarks.present.markdown import machine_text

from conftest import assert_user_error, call_cli, run_cli


@pytest.mark.parametrize("sd_a, sd_b", [(1.0, 1.0), (0.5, 2.0)])
def test_tost_declares_equivalence_at_the_margin_at_most_alpha_of_the_time(sd_a, sd_b):
    """The promise: when the true difference is exactly the margin (not equivalent), TOST at
    alpha 0.05 says "equivalent" in at most 5% of experiments (5 seeds per side, equal and
    unequal spreads); 4000 simulated experiments, so 5% + 3 standard errors (1.0%) bounds it."""
    rng = np.random.default_rng(0)
    margin, trials = 1.0, 4000
    for true_difference in (margin, -margin):
        wrong = sum(tost(rng.normal(0, sd_a, 5), rng.normal(true_difference, sd_b, 5), margin)["equivalent"]
                    for _ in range(trials))
        assert wrong / trials <= 0.05 + 0.01, (true_difference, wrong / trials)
    # and it is not vacuous: with no true difference and spreads well inside the margin it finds equivalence
    found = sum(tost(rng.normal(0, 0.2 * sd_a, 5), rng.normal(0, 0.2 * sd_b, 5), margin)["equivalent"]
                for _ in range(500))
    assert found / 500 > 0.8


def test_tost_interval_is_the_90_percent_welch_interval_and_handles_no_spread():
    a, b = [0.50, 0.52, 0.49, 0.51, 0.50], [0.53, 0.55, 0.50, 0.54, 0.52]
    result = tost(a, b, margin=0.05)
    assert result["difference"] == pytest.approx(np.mean(b) - np.mean(a))
    # TOST at alpha 0.05 is the 90% Welch interval of mean(b) - mean(a), computed here by scipy
    welch = scipy.stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.90)
    assert (result["lo"], result["hi"]) == pytest.approx((welch.low, welch.high), rel=1e-9)
    # inside the margin <=> equivalent
    assert result["equivalent"] == (-0.05 < result["lo"] and result["hi"] < 0.05)
    same = tost([0.5, 0.5], [0.5, 0.5], margin=0.01)
    assert same["equivalent"] and same["lo"] == same["hi"] == 0.0
    with pytest.raises(ValueError):
        tost([0.5], [0.5, 0.6], margin=0.1)


@pytest.fixture(scope="session")
def parity_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("parity")
    manifest = feature_shards(work, n_train=32, n_val=16)
    out = work / "out"
    # margins that decide the test either way: no interval is 100 in loss wide, none fits in +-0
    result = run_cli("benchmarks", "parity", "--model", "vgg16_head", "--manifest", str(manifest), "--out", str(out),
                     "--seeds", "2", "--epochs", "2", "--batch-size", "8", "--tolerance", "0.5", "--jobs", "2",
                     "--margin-loss", "100", "--margin-accuracy", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.mark.slow
def test_parity_same_start_curves_are_identical_and_seeds_are_tested(parity_run):
    out, result = parity_run
    record = json.loads((out / "parity.json").read_text())
    gaps = record["same_start"]["gaps"]
    assert set(gaps) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    # same weights, same batches, dropout off: both APIs take the same steps (measured: identical)
    assert all(gap["max_gap"] <= 1e-6 and gap["holds"] for gap in gaps.values()), gaps
    curves = record["same_start"]["curves"]
    assert len(curves["graph"]["loss"]) == len(curves["keras"]["loss"]) == 2
    # the runs really started from the shared file with dropout off, and graph_api ran on TF1
    for api in ("graph", "keras"):
        config = json.loads((out / "parity-runs" / f"same-start-{api}" / "run_config.json").read_text())[f"{api}_config"]
        assert config["init_weights"].endswith("initial.weights.h5") and config["dropout"] == 0.0
    seed_config = json.loads((out / "parity-runs" / "seed1-graph" / "run_config.json").read_text())["graph_config"]
    assert seed_config["runtime"]["tf1_runtime"] is True and seed_config["dropout"] == 0.5
    assert seed_config["init_weights"] is None and seed_config["seed"] == 1
    finals = record["seeds"]["final"]
    assert len(finals["graph"]["val_accuracy"]) == len(finals["keras"]["val_loss"]) == 2
    for metric in ("val_accuracy", "val_loss"):
        t = record["seeds"]["tost"][metric]
        assert t["lo"] <= t["difference"] <= t["hi"] and t["equivalent"] == (-t["margin"] < t["lo"] and t["hi"] < t["margin"])
    assert record["seeds"]["tost"]["val_loss"]["equivalent"] and not record["seeds"]["tost"]["val_accuracy"]["equivalent"]
    # --tolerance 0.5: losses are held to 0.5 x ln(4 classes), accuracies to max(0.5, 2 / samples)
    assert gaps["loss"]["tolerance"] == pytest.approx(0.5 * math.log(4)) and gaps["val_accuracy"]["tolerance"] == 0.5
    assert record["machine"]["cpu_count"] and "cpu_flags_of_note" in record["machine"]
    assert (out / "parity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "parity.md").read_text()
    assert "Same start" in text and "TOST p =" in text and "parity.png" in text
    assert f"Machine: {machine_text(record['machine'])}." in text  # its CPU flags included
    assert "same start: val_loss gap" in result.stdout


@pytest.mark.slow
def test_parity_and_train_flags_refuse_bad_input(tmp_path):
    manifest = feature_shards(tmp_path, n_train=16, n_val=8)
    cases = [(("benchmarks", "parity", "--manifest", str(manifest), "--seeds", "1", "--out", str(tmp_path / "o")),
              "error: --seeds: the equivalence test needs at least 2"),
             (("benchmarks", "parity", "--manifest", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")),
              f"error: {tmp_path / 'none.json'}"),
             (("benchmarks", "parity", "--model", "resnet50", "--manifest", str(manifest), "--out", str(tmp_path / "o")),
              f"error: {manifest}"),
             (("graph_api", "train", "--model", "vgg16_head", "--manifest", str(manifest), "--out", str(tmp_path / "r"),
               "--dropout", "1"), "error: --dropout: must be at least 0 and below 1"),
             (("keras_api", "train", "--model", "vgg16_head", "--manifest", str(manifest), "--out", str(tmp_path / "k"),
               "--batch-size", "8", "--init-weights", str(tmp_path / "missing.weights.h5")), f"error: {tmp_path / 'missing.weights.h5'}"),
             (("graph_api", "train", "--model", "vgg16_head", "--manifest", str(manifest), "--out", str(tmp_path / "g"),
               "--batch-size", "8", "--init-weights", str(tmp_path / "missing.weights.h5")), f"error: {tmp_path / 'missing.weights.h5'}")]
    for args, message in cases:
        assert assert_user_error(call_cli(*args), "").startswith(message), args
    assert not (tmp_path / "k").exists() and not (tmp_path / "g").exists()  # refused before anything is written
