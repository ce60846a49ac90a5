"""One loss and one input in both APIs: logits out of every model, the training loss in
`evaluate`, the softmax in `predict`, and caffe input for a pretrained VGG16 base, recorded."""
from __future__ import annotations

import csv
import importlib
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from api_runs.predict import cross_entropy, read_samples, softmax
from data_pipeline.shards import load_manifest

from conftest import assert_user_error, call_cli, run_cli


def test_evaluate_loss_and_predict_softmax_are_the_training_formulas():
    rng = np.random.default_rng(0)
    logits = (rng.normal(0, 30, (64, 7))).astype(np.float32)  # large logits: no overflow allowed
    labels = rng.integers(0, 7, 64).astype(np.int32)
    want = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits).numpy()
    np.testing.assert_allclose(cross_entropy(logits, labels), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(softmax(logits), tf.nn.softmax(logits).numpy(), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("api", ["graph_api", "keras_api"])
def test_pretrained_base_gets_caffe_input_recorded_and_a_random_one_keeps_unit_pixels(api, shard_dir, synth_root,
                                                                                     tmp_path):
    manifest = str(shard_dir / "manifest.json")
    for weights, want in (("hed", "caffe"), ("none", None)):
        out = tmp_path / weights
        result = run_cli(api, "train", "--model", "vgg16_transfer", "--manifest", manifest, "--out", str(out),
                         "--epochs", "1", "--batch-size", "8", "--weights", weights)
        assert result.returncode == 0, result.stderr[-2000:]
        config = json.loads((out / "run_config.json").read_text())
        assert config["outputs"] == "logits"
        assert config[f"{api.split('_')[0]}_config"]["preprocessing"] == want
    # the run reloads (a Keras .keras holding the caffe layer loads in safe mode); its CSV holds
    # the softmax of the reloaded model's logits, evaluate their cross-entropy and accuracy
    predictor = importlib.import_module(f"{api}.inference").Predictor(tmp_path / "hed")
    images, labels, ids = read_samples(load_manifest(manifest), "val")
    logits = predictor.logits_of(images)
    result = run_cli(api, "predict", "--run", str(tmp_path / "hed"), "--manifest", manifest, "--split", "val",
                     "--out", str(tmp_path / "p.csv"))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["sample_id"] for r in rows] == ids
    names = json.loads((tmp_path / "hed" / "run_config.json").read_text())["class_names"]
    for row, p in zip(rows, softmax(logits)):
        assert row["predicted_class"] == names[int(p.argmax())]
        assert float(row["probability"]) == pytest.approx(float(p.max()), abs=2e-6)
    result = run_cli(api, "evaluate", "--run", str(tmp_path / "hed"), "--manifest", manifest, "--split", "val")
    assert result.returncode == 0, result.stderr[-2000:]
    accuracy = float((logits.argmax(1) == labels).mean())
    loss = float(cross_entropy(logits, labels).mean())
    assert f"val: {len(labels)} samples, accuracy {accuracy:.4f}, loss {loss:.4f}" in result.stdout
    # one site from its PNGs (--root --id-code --site) gets the top-k its shard sample got
    row = next(r for r in rows if r["sample_id"].endswith("_s2"))  # the default is site 1
    id_code, site = row["sample_id"].rsplit("_s", 1)
    result = run_cli(api, "predict", "--run", str(tmp_path / "hed"), "--root", str(synth_root), "--id-code", id_code,
                     "--site", site, "--dataset", "train", "--top-k", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    printed = [line.split("\t") for line in result.stdout.strip().splitlines()]
    want = [item.split(":") for item in row["top_k"].split(";")[:3]]
    assert [name for name, _ in printed] == [name for name, _ in want]
    np.testing.assert_allclose([float(p) for _, p in printed], [float(p) for _, p in want], atol=2e-4)
    # the synthetic sites of a well predict alike: that --site chooses the PNGs read shows where
    # one of them is missing (a copy of the data root without site 2's first channel)
    root = tmp_path / "root"
    shutil.copytree(synth_root, root)
    missing = next(root.rglob(f"*/{id_code.split('_')[0]}/Plate{id_code.split('_')[1]}/{id_code.split('_')[2]}_s2_w1.png"))
    missing.unlink()
    assert_user_error(call_cli(api, "predict", "--run", str(tmp_path / "hed"), "--root", str(root), "--id-code", id_code,
                               "--site", "2", "--dataset", "train"), missing.name)

