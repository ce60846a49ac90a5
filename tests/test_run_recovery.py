"""Run directories that survive: moved or copied graph runs, damaged checkpoints and backups
(named, the previous good one used, history consistent), finished runs left alone."""
from __future__ import annotations

import json
import shutil
import signal

import numpy as np
import pytest
from shard_helpers import feature_shards

from api_runs.train_options import KILL_AT_STEP_ENV

from conftest import (
    assert_user_error,
    checkpoint_tensors,
    file_tree,
    h5_arrays,
    keras_file_contents,
    run_cli,
    truncate,
)

pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return feature_shards(tmp_path_factory.mktemp("recovery-features"), n_train=48, n_val=16)


def _train(api, features, out, epochs, *extra, env=None):
    return run_cli(api, "train", "--model", "vgg16_head", "--manifest", str(features), "--out", str(out),
                   "--epochs", str(epochs), "--batch-size", "16", "--steps-per-epoch", "2", *extra, env=env)


def _final_weights(api, run) -> dict[str, np.ndarray]:
    """The trained weights a run saved at its end, by name."""
    if api == "graph_api":
        return checkpoint_tensors(run / "final")
    return h5_arrays(run / "final.weights.h5")


def _epochs_in_history(out):
    return len(json.loads((out / "history.json").read_text())["loss"])


def test_graph_run_directory_can_be_moved_and_copied(features, tmp_path):
    first = tmp_path / "first"
    assert _train("graph_api", features, first, 1).returncode == 0
    moved = tmp_path / "moved"
    shutil.move(first, moved)
    evaluated = run_cli("graph_api", "evaluate", "--run", str(moved), "--manifest", str(features))
    assert evaluated.returncode == 0, evaluated.stderr
    resumed = _train("graph_api", features, moved, 2)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {moved / 'checkpoints'}" in resumed.stdout and _epochs_in_history(moved) == 2
    copy = tmp_path / "copy"
    shutil.copytree(moved, copy)
    shutil.rmtree(moved)  # the copy must not lean on the original's files
    again = _train("graph_api", features, copy, 3)
    assert again.returncode == 0, again.stderr
    assert "after epoch 2" in again.stdout and _epochs_in_history(copy) == 3
    predicted = run_cli("graph_api", "predict", "--run", str(copy), "--manifest", str(features),
                        "--split", "val", "--out", str(tmp_path / "p.csv"))
    assert predicted.returncode == 0, predicted.stderr


def test_graph_resume_skips_a_truncated_checkpoint_and_says_so(features, tmp_path):
    run = tmp_path / "run"
    assert _train("graph_api", features, run, 2).returncode == 0
    newest = sorted((run / "checkpoints").glob("ckpt-2.data-*"))[0]
    truncate(newest)
    resumed = _train("graph_api", features, run, 3)
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "ckpt-2" in warnings[0] and "unreadable checkpoint" in warnings[0]
    assert "after epoch 1" in resumed.stdout
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 3 and len(history["images_per_sec"]) == 3


def test_graph_run_without_readable_checkpoint_is_not_restarted_over(features, tmp_path):
    run = tmp_path / "run"
    assert _train("graph_api", features, run, 1).returncode == 0
    history_before = (run / "history.json").read_bytes()
    for data in (run / "checkpoints").glob("ckpt-*.data-*"):
        truncate(data)
    # named by the damaged file itself, in one line with no warning before it
    line = assert_user_error(_train("graph_api", features, run, 2), "ckpt-1: unreadable checkpoint")
    assert "--no-resume" in line
    assert (run / "history.json").read_bytes() == history_before


@pytest.mark.parametrize("api", ["graph_api", "keras_api"])
def test_rerun_of_a_finished_run_says_it_is_complete(api, features, tmp_path):
    """... and a resume under another optimizer, whose saved state it cannot continue, is
    refused in one line, the same in both APIs, with nothing changed."""
    run = tmp_path / "run"
    assert _train(api, features, run, 1).returncode == 0
    history_before = (run / "history.json").read_bytes()
    again = _train(api, features, run, 1)
    assert again.returncode == 0, again.stderr
    assert "run complete (all 1 epochs done)" in again.stdout
    assert (run / "history.json").read_bytes() == history_before
    tree = file_tree(run)
    assert_user_error(_train(api, features, run, 2, "--optimizer", "adam"),
                      "run_config.json: the run was trained with --optimizer rmsprop, not adam", unchanged={run: tree})


def test_a_resume_keeps_the_settings_its_state_needs_and_a_fresh_start_is_recorded_anew(tmp_path):
    from api_runs.run_files import save_run_config
    from plumbing.errors import UserError
    run = {"api": "keras", "model": "vgg16_head", "class_names": ["a", "b"], "image_shape": [2, 2, 512],
           "outputs": "logits"}
    trained = {"optimizer": "rmsprop", "precision": "fp32", "learning_rate": 1e-3}
    save_run_config(tmp_path, {**run, "keras_config": trained})
    with pytest.raises(UserError, match="trained with --precision fp32, not mixed_float16; resume it with "
                                        "--precision fp32, or start afresh with --no-resume"):
        save_run_config(tmp_path, {**run, "keras_config": {**trained, "precision": "mixed_float16"}})
    save_run_config(tmp_path, {**run, "keras_config": {**trained, "learning_rate": 1e-4}})  # resumable
    afresh = {**trained, "optimizer": "adam"}
    save_run_config(tmp_path, {**run, "keras_config": afresh}, resume=False)
    assert json.loads((tmp_path / "run_config.json").read_text())["keras_config"] == afresh


def test_keras_resume_from_a_damaged_backup_uses_the_previous_one(features, tmp_path):
    run = tmp_path / "run"
    assert _train("keras_api", features, run, 2).returncode == 0
    truncate(run / "backup" / "latest.weights.h5")
    resumed = _train("keras_api", features, run, 3)
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "latest.weights.h5" in warnings[0]
    assert "after epoch 1" in resumed.stdout
    rows = (run / "epochs.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"]
    assert _epochs_in_history(run) == 3


def test_keras_damaged_backup_without_a_previous_one_is_one_line(features, tmp_path):
    run = tmp_path / "run"
    assert _train("keras_api", features, run, 1).returncode == 0
    truncate(run / "backup" / "latest.weights.h5")
    (run / "backup" / "latest.weights.h5.bkp").unlink(missing_ok=True)
    assert_user_error(_train("keras_api", features, run, 2), "unreadable backup")


def _assert_same_layers(a: dict, b: dict) -> None:
    """The model's weights equal (the optimizer's state aside)."""
    a, b = ({k: v for k, v in w.items() if k.startswith("layers/")} for w in (a, b))
    assert a and a.keys() == b.keys(), (sorted(a), sorted(b))
    assert [k for k in a if not np.array_equal(a[k], b[k])] == []


@pytest.mark.parametrize("done", [1, 2])
def test_keras_resume_with_a_damaged_best_checkpoint_keeps_the_early_stopping_state(done, features, tmp_path):
    """--min-delta 100: no epoch after the first improves, so epoch 1 stays the best, as in an
    uninterrupted run. Resumed after epoch 1, its weights are the backup's and best.keras is
    rewritten from them; resumed later, they are lost and said so; the score survives both."""
    run = tmp_path / "run"
    assert _train("keras_api", features, run, done, "--min-delta", "100").returncode == 0
    best = keras_file_contents(run / "best.keras")[1]
    truncate(run / "best.keras")
    damaged = (run / "best.keras").read_bytes()
    resumed = _train("keras_api", features, run, 3, "--min-delta", "100")
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "best.keras" in warnings[0], resumed.stderr
    stopping = json.loads((run / "history.json").read_text())["early_stopping"]
    assert stopping["best_epoch"] == 0 and stopping["wait"] == 2, stopping
    if done == 1:
        assert "rewritten" in warnings[0]
        _assert_same_layers(keras_file_contents(run / "best.keras")[1], best)
        _assert_same_layers(_final_weights("keras_api", run), best)  # restore-best restored them
    else:
        assert "lost" in warnings[0] and (run / "best.keras").read_bytes() == damaged
        assert not np.array_equal(*[w["layers/dense/vars/0"] for w in (_final_weights("keras_api", run), best)])


@pytest.mark.parametrize("api", ["graph_api", "keras_api"])
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(api, features, tmp_path):
    """SIGKILL after step 5 (epoch 3 of 4 half done, 2 steps per epoch), then the same command:
    the run resumes from the end of epoch 2 and ends as an uninterrupted run does: the same
    losses, the same last epoch's weights and optimizer state. With --min-delta 100 epoch 1
    stays the best, so the resume also reads a best checkpoint older than the backup, whose
    optimizer state must not replace the backup's (Adam's moments and step count)."""
    flags = ("--optimizer", "adam", "--min-delta", "100")
    assert _train(api, features, tmp_path / "full", 4, *flags).returncode == 0
    killed = _train(api, features, tmp_path / "cut", 4, *flags, env={KILL_AT_STEP_ENV: "5"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _epochs_in_history(tmp_path / "cut") == 2
    resumed = _train(api, features, tmp_path / "cut", 4, *flags)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "after epoch 2" in resumed.stdout and _epochs_in_history(tmp_path / "cut") == 4
    histories = [json.loads((tmp_path / run / "history.json").read_text()) for run in ("full", "cut")]
    for name in ("loss", "val_loss"):
        assert histories[0][name] == histories[1][name], name
    states = {saved: [saved(api, tmp_path / run) for run in ("full", "cut")]
              for saved in (_last_epoch_state, _final_weights)}  # the last epoch's, the best epoch's restored
    for full, cut in states.values():
        assert full.keys() == cut.keys() and len(full) >= 4
        for name in full:
            np.testing.assert_array_equal(full[name], cut[name], err_msg=name)
    assert any("optimizer" in name for name in states[_last_epoch_state][1])


def _last_epoch_state(api, run) -> dict[str, np.ndarray]:
    """The weights and optimizer state a run saved after its last epoch (its final weights
    are the best epoch's), by name."""
    if api == "graph_api":
        return checkpoint_tensors(run / "checkpoints")
    return h5_arrays(run / "backup" / "latest.weights.h5")
