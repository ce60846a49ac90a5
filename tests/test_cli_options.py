"""The command-line options the README advertises, each run once in a tiny configuration
through the real command, asserting what the option changes."""
from __future__ import annotations

import json

import h5py
from shard_helpers import feature_shards

from data_pipeline.shards import load_manifest

from conftest import run_cli


def test_build_options_controls_test_split_by_experiment_raw6_and_inspect_no_sha(synth_root, tmp_path):
    out = tmp_path / "shards"
    built = run_cli("data_pipeline", "build", "--root", str(synth_root), "--out", str(out), "--size", "32",
                    "--workers", "1", "--mode", "raw6", "--include-controls", "--include-test",
                    "--val-experiments", "U2OS-02", "--shard-size", "16")
    assert built.returncode == 0, built.stderr
    manifest = load_manifest(out / "manifest.json")
    assert manifest["image_shape"] == [32, 32, 6] and set(manifest["splits"]) == {"train", "val", "test"}
    val_ids = set()
    for record in manifest["shards"]:
        with h5py.File(out / record["file"], "r") as handle:
            ids = {i.decode() for i in handle["id_codes"][:]}
        if record["split"] == "val":
            val_ids |= ids
    assert val_ids and all(i.startswith("U2OS-02_") for i in val_ids)
    treatment_only = run_cli("data_pipeline", "build", "--root", str(synth_root), "--out", str(tmp_path / "t"),
                             "--size", "32", "--workers", "1", "--val-experiments", "U2OS-02")
    assert treatment_only.returncode == 0, treatment_only.stderr
    assert sum(manifest["splits"].values()) > sum(load_manifest(tmp_path / "t" / "manifest.json")["splits"].values())
    inspected = run_cli("data_pipeline", "inspect", str(out / "manifest.json"), "--no-sha")
    assert inspected.returncode == 0 and "shards verified" in inspected.stdout


def test_graph_train_bn_modes_feed_dict_and_bf16_on_resnet50(shard_dir, tmp_path):
    for bn_mode, extra in (("fused", ["--feed", "feed_dict", "--precision", "mixed_bfloat16"]),
                           ("debiased", ["--data-format", "NHWC"])):
        out = tmp_path / bn_mode
        result = run_cli("graph_api", "train", "--model", "resnet50", "--manifest", str(shard_dir / "manifest.json"),
                         "--out", str(out), "--epochs", "1", "--batch-size", "4", "--steps-per-epoch", "1",
                         "--bn-mode", bn_mode, *extra)
        assert result.returncode == 0, result.stderr
        config = json.loads((out / "run_config.json").read_text())["graph_config"]
        assert config["bn_mode"] == bn_mode and len(json.loads((out / "history.json").read_text())["loss"]) == 1
        if extra[0] == "--feed":
            assert config["feed"] == "feed_dict" and config["precision"] == "mixed_bfloat16"


def test_keras_train_categorical_loss_with_xla_and_no_resume(tmp_path):
    (tmp_path / "features").mkdir()
    features = feature_shards(tmp_path / "features", n_train=32, n_val=16)
    out = tmp_path / "run"
    args = ("keras_api", "train", "--model", "vgg16_head", "--manifest", str(features), "--out", str(out),
            "--epochs", "1", "--batch-size", "16", "--loss", "categorical", "--jit-compile")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    config = json.loads((out / "run_config.json").read_text())["keras_config"]
    assert config["loss"] == "categorical" and config["jit_compile"] is True
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
