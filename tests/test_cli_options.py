"""The command-line options the README advertises, each run once in a tiny configuration
through the real command, asserting what the option changes."""
from __future__ import annotations

import json
from collections import Counter

import h5py
import pytest
from shard_helpers import feature_shards

from data_pipeline.constants import NEGATIVE_CONTROL_SIRNA, POSITIVE_CONTROL_SIRNAS
from data_pipeline.shards import load_manifest

from conftest import assert_user_error, keras_file_contents, run_cli, saved_graph_nodes

pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

def test_build_options_controls_test_split_by_experiment_and_raw6(synth_root, tmp_path):
    def build(out, *flags):
        built = run_cli("data_pipeline", "build", "--root", str(synth_root), "--out", str(out), "--size", "32",
                        "--workers", "1", "--val-experiments", "U2OS-02", "--shard-size", "16", *flags)
        assert built.returncode == 0, built.stderr
        return load_manifest(out / "manifest.json")

    plain = build(tmp_path / "plain")
    controls = build(tmp_path / "controls", "--mode", "raw6", "--include-controls")
    test = build(tmp_path / "test", "--include-test")
    assert plain["image_shape"] == [32, 32, 3] and controls["image_shape"] == [32, 32, 6]
    # --include-controls alone: the control wells' classes and samples join; no test split
    control_names = {f"sirna_{s}" for s in (NEGATIVE_CONTROL_SIRNA, *POSITIVE_CONTROL_SIRNAS)}
    assert set(controls["class_names"]) & control_names and not set(plain["class_names"]) & control_names
    assert set(controls["splits"]) == set(plain["splits"]) == {"train", "val"}
    assert controls["splits"]["train"] > plain["splits"]["train"]
    # --include-test alone: a test split, the same classes and training samples
    assert set(test["splits"]) == {"train", "val", "test"} and test["class_names"] == plain["class_names"]
    assert test["splits"]["train"] == plain["splits"]["train"]
    val_ids = set()
    for record in plain["shards"]:
        with h5py.File(tmp_path / "plain" / record["file"], "r") as handle:
            ids = {i.decode() for i in handle["id_codes"][:]}
        if record["split"] == "val":
            val_ids |= ids
    assert val_ids and all(i.startswith("U2OS-02_") for i in val_ids)


def test_graph_train_bn_modes_feed_dict_bf16_and_nchw_on_resnet50(shard_dir, tmp_path):
    """Where this machine cannot pool channels-first data (Eigen's CPU kernels), NCHW is refused
    in one line before anything is written; elsewhere it trains."""
    import tensorflow as tf  # dtypes of the saved graph's attributes

    from graph_api.model import pools_channels_first
    for bn_mode, extra in (("fused", ["--feed", "feed_dict", "--precision", "mixed_bfloat16"]),
                           ("debiased", ["--data-format", "NCHW"])):
        out = tmp_path / bn_mode
        result = run_cli("graph_api", "train", "--model", "resnet50", "--manifest", str(shard_dir / "manifest.json"),
                         "--out", str(out), "--epochs", "1", "--batch-size", "4", "--steps-per-epoch", "1",
                         "--bn-mode", bn_mode, *extra)
        if "NCHW" in extra and not pools_channels_first():
            assert_user_error(result, "--data-format")
            assert not out.exists()
            continue
        assert result.returncode == 0, result.stderr
        assert len(json.loads((out / "history.json").read_text())["loss"]) == 1
        nodes = saved_graph_nodes(out)
        ops = Counter(n.op for n in nodes)
        convs = [n for n in nodes if n.op == "Conv2D"]
        assert len(convs) >= 53  # ResNet50's 53 convolutions, forward
        if bn_mode == "fused":
            # one fused kernel per batch norm; images fed through a placeholder, not an iterator
            assert ops["FusedBatchNormV3"] == 2 * 53, ops  # the train and the eval tower
            assert ops["IteratorGetNext"] == 0 and ops["Placeholder"] >= 2
            assert all(n.attr["T"].type == tf.bfloat16.as_datatype_enum for n in convs)
            assert all(n.attr["data_format"].s == b"NHWC" for n in convs)
        else:
            # the hand-written batch norm: no fused kernel; fp32 convolutions on channels-first data
            assert ops["FusedBatchNormV3"] == ops["FusedBatchNorm"] == 0 and ops["IteratorGetNext"] >= 1
            assert all(n.attr["T"].type == tf.float32.as_datatype_enum for n in convs)
            assert all(n.attr["data_format"].s == b"NCHW" for n in convs)


def test_keras_train_categorical_loss_with_xla_and_no_resume(tmp_path):
    (tmp_path / "features").mkdir()
    features = feature_shards(tmp_path / "features", n_train=32, n_val=16)
    out = tmp_path / "run"
    args = ("keras_api", "train", "--model", "vgg16_head", "--manifest", str(features), "--out", str(out),
            "--epochs", "1", "--batch-size", "16", "--loss", "categorical", "--jit-compile")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    # what ran: the compiled model's XLA flag, and the loss the saved model was compiled with
    assert json.loads((out / "run_config.json").read_text())["placement"]["jit_compile"] is True
    compiled = keras_file_contents(out / "final.keras")[0]["compile_config"]
    assert "CategoricalCrossentropy" in json.dumps(compiled["loss"]) and "Sparse" not in json.dumps(compiled["loss"])
    again = run_cli(*args, "--no-resume")  # starts afresh: neither resumed nor "complete"
    assert again.returncode == 0, again.stderr
    assert "resuming" not in again.stdout and "run complete" not in again.stdout
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 1


def test_pipeline_benchmark_command_reports_both_rates(tmp_path):
    result = run_cli("benchmarks", "pipeline", "--work-dir", str(tmp_path / "work"), "--wells", "5",
                     "--workers", "1", "--repeats", "1", "--json", str(tmp_path / "rates.json"))
    assert result.returncode == 0, result.stderr
    rates = json.loads((tmp_path / "rates.json").read_text())
    assert rates["build_sites_per_s"]["sites"] == 2 * 2 * (5 - 3) and rates["read_images_per_s"]["median"] > 0
    assert "shard build:" in result.stdout and "tf.data read:" in result.stdout
    assert rates["met"] == {k: rates[k]["median"] >= rates["targets"][k] for k in rates["targets"]}
    assert rates["machine"]["cpu_flags_of_note"] is not None and "CPU flags" in result.stdout


def test_pipeline_rates_say_whether_each_target_was_met_and_by_how_much_it_was_missed(capsys):
    from benchmarks.measure.shard_rates import print_rates
    rate = {"n": 3, "iqr": 1.0, "min": 1.0, "max": 20.0}
    print_rates({"build_sites_per_s": {**rate, "median": 12.0, "workers": 2},
                 "read_images_per_s": {**rate, "median": 3000.0, "batch_size": 64},
                 "targets": {"build_sites_per_s": 15.0, "read_images_per_s": 3000.0}})
    build, read = capsys.readouterr().out.splitlines()
    assert build.endswith("[target >= 15: missed by 20%]") and read.endswith("[target >= 3,000: met]")


@pytest.mark.parametrize("api", ["graph_api", "keras_api"])
def test_train_patience_adam_and_mixed_float16_through_the_command(api, tmp_path):
    """--patience 0 with a --min-delta no epoch can reach stops after the second epoch of 3;
    --optimizer adam keeps Adam's two slots per weight; --precision mixed_float16 computes the
    dense layers in float16 under a dynamic loss scale."""
    (tmp_path / "features").mkdir()
    features = feature_shards(tmp_path / "features", n_train=32, n_val=16)
    out = tmp_path / "run"
    # one step of 4 images per epoch: float16 matrix products are slow on a CPU
    result = run_cli(api, "train", "--model", "vgg16_head", "--manifest", str(features), "--out", str(out),
                     "--epochs", "3", "--batch-size", "4", "--steps-per-epoch", "1", "--patience", "0",
                     "--min-delta", "100",
                     "--optimizer", "adam", "--precision", "mixed_float16", "--no-resume")
    assert result.returncode == 0, result.stderr[-2000:]
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 2 and history["early_stopping"]["best_epoch"] == 0
    if api == "graph_api":
        import tensorflow as tf  # the checkpoint's variables
        names = {name for name, _ in tf.train.list_variables(str(out / "checkpoints"))}
        assert {"optimizer/fc1/kernel/momentum", "optimizer/fc1/kernel/velocity", "loss_scale/scale"} <= names
        matmuls = [n for n in saved_graph_nodes(out) if n.op == "MatMul"]
        assert matmuls and all(n.attr["T"].type == tf.float16.as_datatype_enum for n in matmuls)
    else:
        from keras_api.weights import load_model_file  # the saved model; its optimizer's state from the file
        model = load_model_file(out / "final.keras")
        saved, state = keras_file_contents(out / "final.keras")
        assert saved["compile_config"]["optimizer"]["class_name"] == "Adam"
        # under a loss scale, Adam's step, rate and two slots (momentum, velocity) per weight
        inner = [name for name in state if name.startswith("optimizer/inner_optimizer/")]
        assert len(inner) == 2 + 2 * len(model.trainable_weights), inner
        with h5py.File(out / "backup" / "latest.weights.h5", "r") as handle:  # the backup resumes from it
            assert "optimizer/inner_optimizer" in handle
        assert model.get_layer("fc1").compute_dtype == "float16" and model.get_layer("fc1").dtype == "float32"
