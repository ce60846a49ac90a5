"""Keras 2 (tf-keras), the Keras of the 2017-2019 speed reports, builds the textbook's models as
Keras 3 does (same weights: same logits and the same first update), and in TF1 graph mode
(`disable_eager_execution`, the `tfkeras-v1` benchmark mode) it takes the TF1 graph's step."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_api import build_model
from keras_api.optimizers import make_optimizer

from conftest import REPO
from equivalence_helpers import grappler_options

# Keras 2 in TF1 graph mode, in its own process: the mlp from the given weights, its loss and the
# weights after one SGD step (of the legacy optimizers, the only ones that mode runs), into an .npz.
# SGD, because legacy RMSprop without momentum is another rule: epsilon outside the square root.
V1_STEP = """
import sys
import numpy as np
import tensorflow as tf
tf.compat.v1.disable_eager_execution()
import tf_keras
from keras_api.optimizers import make_optimizer
from keras_api.small_models import build_small_model
data = np.load(sys.argv[1])
model = build_small_model("mlp", keras_module=tf_keras)
model.set_weights([data[f"w{i}"] for i in range(len(model.get_weights()))])
model.compile(optimizer=make_optimizer("sgd", 0.05, optimizers=tf_keras.optimizers.legacy),
              loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
loss = model.evaluate(data["x"], data["y"], batch_size=len(data["x"]), verbose=0)
model.train_on_batch(data["x"], data["y"])
np.savez(sys.argv[2], loss=loss, executing_eagerly=tf.executing_eagerly(), *model.get_weights())
"""


def _one_step(model, k, x, y):
    """(logits in inference, weights after one SGD train_on_batch) of a Keras model. Grappler's
    arithmetic rewrite is off: it reorders sums differently in the two Kerases' functions, which
    alone moves a ResNet50 update by ~1e-3 (tests/test_equivalence_updates.py)."""
    logits = model.predict(x, verbose=0)
    model.compile(optimizer=make_optimizer("sgd", 1e-3, optimizers=k.optimizers),
                  loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))
    with grappler_options(arithmetic_optimization=False):
        model.train_on_batch(x, y)
    return logits, model.get_weights()


def _pair(name: str, shape: tuple):
    """(Keras 3 model, Keras 2 model with the same weights, those weights, x, y)."""
    import keras
    import tf_keras
    rng = np.random.default_rng(0)
    x, y = rng.random((8,) + shape, dtype=np.float32), rng.integers(0, 10, 8).astype(np.int32)
    keras.utils.set_random_seed(0)
    new = build_model(name, shape, 10, weights="none", dropout=0.0)
    old = build_model(name, shape, 10, weights="none", dropout=0.0, keras_module=tf_keras)
    start = new.get_weights()
    assert [w.shape for w in old.get_weights()] == [w.shape for w in start]
    old.set_weights(start)
    return new, old, start, x, y


def _gap(got, want, was) -> float:
    """max |update difference| / max |update| of one tensor."""
    return float(np.abs(got - want).max() / np.abs(want - was).max())


def test_keras2_refuses_the_vgg16_base_in_one_line():
    import tf_keras

    from plumbing.errors import UserError
    with pytest.raises(UserError, match="vgg16_transfer: the VGG16 base and its preprocessing build in Keras 3 only"):
        build_model("vgg16_transfer", (32, 32, 3), 10, weights="none", keras_module=tf_keras)


def test_keras2_head_is_keras3s_head():
    import keras
    import tf_keras
    new, old, start, x, y = _pair("vgg16_head", (7, 7, 512))
    new_logits, new_after = _one_step(new, keras, x, y)
    old_logits, old_after = _one_step(old, tf_keras, x, y)
    assert np.abs(old_logits - new_logits).max() <= 1e-5 * np.abs(new_logits).max()
    for weight, got, want, was in zip(new.weights, old_after, new_after, start):
        assert _gap(got, want, was) <= 1e-4, weight.path


@pytest.mark.slow
def test_keras2_resnet50_is_keras3s_but_for_bessels_correction():
    """Inference logits agree to 1e-5. In training, Keras 2's fused batch norm averages the
    Bessel-corrected batch variance (n / (n - 1)) into its moving variance, Keras 3 the biased
    one: with that correction both moving statistics agree to 1e-3 of their update. Weight
    updates of a ResNet50 step at batch 8 are ill-conditioned (BN over 8 values at 32 px), so
    their median gap must stay within 3x that of Keras 3 itself with its input nudged by 2^-23."""
    import keras
    import tf_keras
    new, old, start, x, y = _pair("resnet50", (32, 32, 3))
    new_logits, new_after = _one_step(new, keras, x, y)
    old_logits, old_after = _one_step(old, tf_keras, x, y)
    assert np.abs(old_logits - new_logits).max() <= 1e-5 * np.abs(new_logits).max()
    rng = np.random.default_rng(1)
    nudged_x = (x * (1 + rng.choice([-1.0, 1.0], x.shape) * 2.0 ** -23)).astype(np.float32)
    new.set_weights(start)  # plain SGD has no state: the same step again, from the nudged input
    with grappler_options(arithmetic_optimization=False):
        new.train_on_batch(nudged_x, y)
    nudged_after = new.get_weights()
    paths = [w.path for w in new.weights]
    index = {p: i for i, p in enumerate(paths)}
    bessel = {}
    for layer in new.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = len(x) * layer.input.shape[1] * layer.input.shape[2]
            bessel[f"{layer.name}/moving_variance"] = n / (n - 1)
    momentum, weights_gap, nudge_gap = 0.99, [], []
    for path, i in index.items():
        got, want, was = old_after[i], new_after[i], start[i]
        if path in bessel:  # Keras 3's batch variance, recovered from its moving average, corrected
            batch_variance = (want - momentum * was) / (1 - momentum)
            want = momentum * was + (1 - momentum) * batch_variance * bessel[path]
        if path.endswith(("moving_mean", "moving_variance")):
            assert _gap(got, want, was) <= 1e-3, path
        elif not path.endswith("_conv/bias"):  # before a BN: exact gradient 0, rounding noise
            weights_gap.append(_gap(got, want, was))
            nudge_gap.append(_gap(nudged_after[i], want, was))
    assert len(bessel) == 53 and len(weights_gap) == 53 * 3 + 2
    print(f"ResNet50 update gap Keras 2 / Keras 3: {np.median(weights_gap):.3g}, "
          f"input nudged by 2^-23: {np.median(nudge_gap):.3g} (median over tensors)")
    assert 0 < np.median(nudge_gap) and np.median(weights_gap) <= 3 * np.median(nudge_gap)


@pytest.mark.slow
def test_keras2_in_tf1_graph_mode_takes_the_graphs_step(tmp_path):
    from test_small_models import _data, _graph_step
    x, y = _data("mlp")
    before, graph_loss, after = _graph_step("mlp", "sgd", x, y)
    start = [before[k] for k in before]  # layer order: dense kernel, bias, prediction kernel, bias
    np.savez(tmp_path / "in.npz", x=x, y=y, **{f"w{i}": w for i, w in enumerate(start)})
    proc = subprocess.run([sys.executable, "-c", V1_STEP, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    assert not out["executing_eagerly"]
    assert float(out["loss"]) == pytest.approx(float(graph_loss), rel=1e-5)
    for i, (key, was) in enumerate(zip(before, start)):
        step = np.abs(after[key] - was).max()
        assert step > 0 and np.abs(out[f"arr_{i}"] - after[key]).max() <= 1e-5 * step + 1e-7, key
