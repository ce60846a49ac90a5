"""float16's dynamic loss scaling is the same rule in both APIs: the graph's `minimize(...,
loss_scale="dynamic")` and Keras 3's LossScaleOptimizer, step for step (applied or skipped, the
step counter, the scale), on the TF1 runtime (control flow v1) and in a TF2 process (cond v2)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO

# Per step, the gradient of the loss w * x is x: 1e38 x 2**15 overflows float32, 1 does not.
pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

INPUTS = (1.0, 1e38, 1.0, 1.0, 1.0, 2.0)
GROWTH_STEPS = 2
LEARNING_RATE = 0.1


def graph_sequence(inputs=INPUTS) -> list[list[float]]:
    """[w, scale, step] after each SGD step of the graph on loss = w * x."""
    from graph_api.optimizers import loss_scale_variables, minimize
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, ())
        w = v1.get_variable("w", (), tf.float32, v1.constant_initializer(1.0))
        train = minimize(w * x, [w], tf.constant(LEARNING_RATE), "sgd", loss_scale="dynamic",
                         growth_steps=GROWTH_STEPS)
        scale, step = loss_scale_variables()[0], v1.train.get_global_step()
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            out = []
            for value in inputs:
                session.run(train, {x: value})
                out.append([float(v) for v in session.run([w, scale, step])])
            return out


def keras_sequence(inputs=INPUTS) -> list[list[float]]:
    import keras
    w = keras.Variable(1.0)
    opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(LEARNING_RATE), dynamic_growth_steps=GROWTH_STEPS)
    out = []
    for value in inputs:
        with tf.GradientTape() as tape:
            loss = opt.scale_loss(w * value)
        opt.apply(tape.gradient(loss, [w]), [w])
        out.append([float(w.numpy()), float(opt.dynamic_scale.numpy()), float(opt.iterations.numpy())])
    return out


def test_graph_and_keras_scale_skip_and_grow_alike_in_both_runtimes():
    keras_side = keras_sequence()
    # the rule itself: the overflowing step is skipped and halves the scale; 2 finite steps double it
    assert keras_side[1] == [keras_side[0][0], 2.0 ** 14, 1.0]
    assert keras_side[2][1] == 2.0 ** 14 and keras_side[3][1] == 2.0 ** 15 and keras_side[3][2] == 3.0
    assert np.allclose(graph_sequence(), keras_side, rtol=1e-6)
    script = ("import json, sys; sys.path.insert(0, 'tests'); from graph_api.graph import use_tf1_runtime; "
              "use_tf1_runtime(); from test_loss_scale import graph_sequence; print(json.dumps(graph_sequence()))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.allclose(json.loads(proc.stdout.strip().splitlines()[-1]), keras_side, rtol=1e-6)


def test_tf1_optimizers_refuse_dynamic_scaling():
    from graph_api.optimizers import minimize
    from plumbing.errors import UserError
    graph = tf.Graph()
    with graph.as_default():
        w = tf.compat.v1.get_variable("w", (), tf.float32)
        with pytest.raises(UserError, match="dynamic loss scaling"):
            minimize(w * 2.0, [w], tf.constant(0.1), "tf1_momentum", loss_scale="dynamic")
