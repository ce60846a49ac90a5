"""One loss and one input in both APIs: logits out of every model, the training loss in
`evaluate`, the softmax in `predict`, and caffe input for a pretrained VGG16 base, recorded."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from api_runs.predict import cross_entropy, softmax

from conftest import run_cli


def test_evaluate_loss_and_predict_softmax_are_the_training_formulas():
    rng = np.random.default_rng(0)
    logits = (rng.normal(0, 30, (64, 7))).astype(np.float32)  # large logits: no overflow allowed
    labels = rng.integers(0, 7, 64).astype(np.int32)
    want = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits).numpy()
    np.testing.assert_allclose(cross_entropy(logits, labels), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(softmax(logits), tf.nn.softmax(logits).numpy(), atol=1e-6)


@pytest.mark.parametrize("api", ["graph_api", "keras_api"])
def test_pretrained_base_gets_caffe_input_recorded_and_a_random_one_keeps_unit_pixels(api, shard_dir, tmp_path):
    manifest = str(shard_dir / "manifest.json")
    for weights, want in (("hed", "caffe"), ("none", None)):
        out = tmp_path / weights
        result = run_cli(api, "train", "--model", "vgg16_transfer", "--manifest", manifest, "--out", str(out),
                         "--epochs", "1", "--batch-size", "8", "--weights", weights)
        assert result.returncode == 0, result.stderr[-2000:]
        config = json.loads((out / "run_config.json").read_text())
        assert config["outputs"] == "logits"
        assert config[f"{api.split('_')[0]}_config"]["preprocessing"] == want
    # the run reloads (a Keras .keras holding the caffe layer loads in safe mode) and its
    # predictions are a softmax of the logits
    result = run_cli(api, "predict", "--run", str(tmp_path / "hed"), "--manifest", manifest, "--split", "val",
                     "--out", str(tmp_path / "p.csv"))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    for row in rows:
        top = [float(item.split(":")[1]) for item in row.split(",")[-1].split(";")]
        assert 0 < top[0] <= 1 and top == sorted(top, reverse=True)
    result = run_cli(api, "evaluate", "--run", str(tmp_path / "hed"), "--manifest", manifest, "--split", "val")
    assert result.returncode == 0 and "loss" in result.stdout, result.stderr[-2000:]
