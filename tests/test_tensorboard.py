"""Both APIs write TensorBoard logs a user can overlay: the same folders (train, validation),
the same per-epoch tags, and per-epoch means equal to the run's history."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import tensorflow as tf
from shard_helpers import feature_shards

from conftest import run_cli

pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

def _scalars(folder) -> dict[str, dict[int, float]]:
    """tag -> {step: value} over every event file in `folder` (v1 simple values or v2 tensors)."""
    found: dict[str, dict[int, float]] = defaultdict(dict)
    for path in sorted(folder.glob("events.out.tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found[value.tag][event.step] = value.simple_value
                elif value.HasField("tensor") and value.tensor.dtype == tf.float32.as_datatype_enum:
                    found[value.tag][event.step] = float(tf.make_ndarray(value.tensor))
    return found


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("tensorboard")
    (base / "features").mkdir()
    features = feature_shards(base / "features", n_train=48, n_val=16)
    out = {}
    for api in ("graph_api", "keras_api"):
        out[api] = base / api
        result = run_cli(api, "train", "--model", "vgg16_head", "--manifest", str(features), "--out", str(out[api]),
                         "--epochs", "2", "--batch-size", "16")
        assert result.returncode == 0, result.stderr
    return out


def test_both_apis_log_the_same_epoch_tags_and_history_values(runs):
    for api, run in runs.items():
        history = json.loads((run / "history.json").read_text())
        for part, prefix in (("train", ""), ("validation", "val_")):
            scalars = _scalars(run / "tensorboard" / part)
            for metric in ("loss", "accuracy"):
                logged = scalars[f"epoch_{metric}"]
                assert sorted(logged) == [0, 1], (api, part, metric, sorted(logged))
                np.testing.assert_allclose([logged[0], logged[1]], history[prefix + metric], rtol=1e-5,
                                           err_msg=f"{api} {part} {metric}")
    graph_tags = {part: {t for t in _scalars(runs["graph_api"] / "tensorboard" / part) if t.startswith("epoch_")}
                  for part in ("train", "validation")}
    keras_tags = {part: {t for t in _scalars(runs["keras_api"] / "tensorboard" / part) if t.startswith("epoch_")}
                  for part in ("train", "validation")}
    assert graph_tags["train"] >= {"epoch_loss", "epoch_accuracy"} and graph_tags["validation"] == keras_tags["validation"]
