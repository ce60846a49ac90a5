"""Slow end-to-end: synthetic RxRx1 -> shards -> graph_api train/predict/evaluate via the CLI."""
import csv

import pytest

from conftest import assert_user_error, call_cli, run_cli

pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

def test_cli_pipeline_from_pngs_to_predictions(synth_root, tmp_path):
    shards = tmp_path / "shards"
    build = run_cli("data_pipeline", "build", "--root", str(synth_root), "--out", str(shards), "--size", "32",
                    "--val-experiments", "U2OS-02", "--workers", "1")
    assert build.returncode == 0, build.stderr
    manifest = str(shards / "manifest.json")
    trained = run_cli("graph_api", "train", "--model", "resnet50", "--manifest", manifest, "--out",
                      str(tmp_path / "run"), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "epoch 1/1: loss" in trained.stdout
    predicted = run_cli("graph_api", "predict", "--run", str(tmp_path / "run"), "--manifest", manifest,
                        "--split", "val", "--out", str(tmp_path / "pred.csv"))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "pred.csv")))
    assert len(rows) == 2 * 9 and all(r["predicted_class"].startswith("sirna_") for r in rows)
    evaluated = run_cli("graph_api", "evaluate", "--run", str(tmp_path / "run"), "--manifest", manifest)
    assert evaluated.returncode == 0 and "val: 18 samples, accuracy" in evaluated.stdout
    wrong = call_cli("graph_api", "train", "--model", "vgg16_head", "--manifest", manifest, "--out",
                     str(tmp_path / "run2"))
    assert_user_error(wrong, "feature shards")
    assert not (tmp_path / "run2").exists()
