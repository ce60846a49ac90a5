"""graph_api on the TF1 runtime: `python -m graph_api` and a process that calls
`use_tf1_runtime` run graph mode with reference variables and control flow v1, while the same
library still builds its graphs inside this (eager) test process; feed_dict batches are read
from the shards in the dataset mode's order."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from shard_helpers import feature_shards

from data_pipeline import make_dataset
from data_pipeline.dataset import epoch_seed, read_batches
from data_pipeline.shards import load_manifest
from graph_api.graph import GraphConfig, build_train_graph, runtime_facts

from conftest import REPO, run_cli

pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

v1 = tf.compat.v1

# Builds one BN layer whose `training` is a tensor (so a cond is built) and reports what it got.
PROBE = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    from graph_api.graph import runtime_facts, use_tf1_runtime
    from graph_api.layers import batch_norm
    if sys.argv[1] == "tf1":
        use_tf1_runtime()
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, (None, 4, 4, 8))
        training = v1.placeholder_with_default(True, ())
        y = batch_norm(x, "bn", training)
        print(json.dumps({"facts": runtime_facts(), "ops": sorted({op.type for op in graph.get_operations()}),
                          "variables": sorted({type(v).__name__ for v in v1.global_variables()})}))
""")


def _probe(runtime: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, runtime], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_tf1_runtime_has_graph_mode_reference_variables_and_control_flow_v1():
    tf1, tf2 = _probe("tf1"), _probe("tf2")
    assert tf1["facts"] == {"executing_eagerly": False, "resource_variables": False, "control_flow_v2": False,
                            "tf1_runtime": True}
    assert tf1["variables"] == ["RefVariable"]
    assert {"Switch", "Merge"} <= set(tf1["ops"]) and not {"If", "StatelessIf"} & set(tf1["ops"])
    # the same code in a TF2 process builds what the TF1 runtime replaces
    assert tf2["facts"]["tf1_runtime"] is False and tf2["variables"] == ["ResourceVariable"]
    assert {"If", "StatelessIf"} & set(tf2["ops"])


def test_graph_cli_trains_on_the_tf1_runtime_and_records_it(tmp_path):
    manifest = feature_shards(tmp_path, n_train=32, n_val=16)
    out = tmp_path / "run"
    for feed in ("dataset", "feed_dict"):
        result = run_cli("graph_api", "train", "--model", "vgg16_head", "--manifest", str(manifest), "--out",
                         str(out / feed), "--epochs", "1", "--batch-size", "8", "--feed", feed)
        assert result.returncode == 0, result.stderr[-2000:]
        config = json.loads((out / feed / "run_config.json").read_text())["graph_config"]
        assert config["runtime"]["tf1_runtime"] is True and config["feed"] == feed
    assert runtime_facts()["tf1_runtime"] is False  # this test process stays eager


@pytest.mark.parametrize("stored", ["float32 features", "uint8 images"])
def test_feed_dict_batches_are_read_from_the_shards_in_the_dataset_order(tmp_path, shard_dir, stored):
    if stored == "uint8 images":  # scaled to [0, 1] as make_dataset scales them
        manifest, model, shape, classes = shard_dir / "manifest.json", "resnet50", (32, 32, 3), 4
    else:
        manifest, model, shape, classes = feature_shards(tmp_path, n_train=40, n_val=8), "vgg16_head", (2, 2, 512), 4
    n_train = load_manifest(manifest)["splits"]["train"]
    batch, seed = 6, epoch_seed(3, 2)
    steps = 2 * n_train // batch + 1  # into a third pass
    g = build_train_graph(GraphConfig(model=model, image_shape=shape, num_classes=classes, feed="feed_dict"),
                          str(manifest), batch)
    with g.graph.as_default(), v1.Session(graph=g.graph) as session:
        orders = (session.run(g.train_order, {g.epoch_seed: seed, g.pass_index: k}) for k in range(100))
        fed = [b for b, _ in zip(read_batches(str(manifest), "train", orders, batch, drop_remainder=True),
                                 range(steps))]
    streamed = list(make_dataset(str(manifest), "train", batch, seed=seed, repeat=True, drop_remainder=True,
                                 device=None).take(steps))
    assert len(fed) == len(streamed) == steps
    for (images, labels), (want_images, want_labels) in zip(fed, streamed):
        assert images.dtype == np.float32 and labels.dtype == np.int32
        np.testing.assert_array_equal(images, want_images.numpy())
        np.testing.assert_array_equal(labels, want_labels.numpy())


# One SGD step of the VGG16 head on the TF1 runtime, and the gradients fetched on their own.
STEP = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from graph_api.graph import GraphConfig, build_train_graph, use_tf1_runtime
    use_tf1_runtime()
    v1 = tf.compat.v1
    g = build_train_graph(GraphConfig(model="vgg16_head", image_shape=(2, 2, 512), num_classes=4, feed="feed_dict",
                                      optimizer=sys.argv[1], learning_rate=0.01, dropout=0.0))
    with g.graph.as_default():
        trainable = v1.trainable_variables()
        grads = tf.gradients(g.loss, trainable)
        session = v1.Session()
        session.run(v1.global_variables_initializer())
    rng = np.random.default_rng(0)
    feed = {g.images: rng.random((8, 2, 2, 512), dtype=np.float32) * 2, g.labels: rng.integers(0, 4, 8)}
    before, gradients = session.run([trainable, grads], feed)
    session.run(g.train_op, feed)
    after = session.run(trainable)
    print(json.dumps({v.op.name: [float(np.abs((a - b) + 0.01 * d).max()), float(np.abs(0.01 * d).max()),
                                  float(np.spacing(np.abs(b).max()))]
                      for v, b, a, d in zip(trainable, before, after, gradients)}))
""")


def test_train_op_updates_with_the_gradients_of_the_weights_before_the_step():
    """On the TF1 runtime a reference variable's read aliases its buffer: the train op must finish
    every gradient before it updates any weight, or lower layers' gradients see upper layers'
    new weights (measured before the gate: 2-6% of the VGG16 head's first update)."""
    result = subprocess.run([sys.executable, "-c", STEP, "sgd"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    gaps = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(gaps) == 8
    for name, (gap, update, spacing) in gaps.items():  # w - lr g rounds to the weights' float32 spacing
        assert update > 0 and gap <= 1e-5 * update + 2 * spacing, (name, gap, update)


# The VGG16 head's training graph on the TF1 runtime: which backward ops the update of
# fc2/kernel waits for (its inputs and control inputs, transitively).
UPDATE_WAITS = textwrap.dedent("""
    import json
    import tensorflow as tf
    from graph_api.graph import GraphConfig, build_train_graph, use_tf1_runtime
    use_tf1_runtime()
    g = build_train_graph(GraphConfig(model="vgg16_head", image_shape=(2, 2, 512), num_classes=4, feed="feed_dict",
                                      optimizer="sgd", learning_rate=0.01, dropout=0.0))
    kernel = next(v for v in g.graph.get_collection("trainable_variables") if v.op.name == "fc2/kernel")
    (update,) = [op for op in g.graph.get_operations() if op.type == "AssignSub" and op.inputs[0].op is kernel.op]
    seen, frontier = set(), [update]
    while frontier:
        op = frontier.pop()
        if op not in seen:
            seen.add(op)
            frontier += [t.op for t in op.inputs] + list(op.control_inputs)
    (read,) = [op for op in kernel.op.outputs[0].consumers() if op.type == "Identity"]
    readers = [op.name for op in read.outputs[0].consumers()]
    print(json.dumps({"waits_for": sorted(op.name for op in seen if op.name.startswith("gradients/")),
                      "kernel_readers": sorted(readers)}))
""")


def test_an_update_waits_for_the_readers_of_its_variable_and_no_other_layer_s_backward_pass():
    """Per-variable gate on the TF1 runtime: the update of fc2/kernel waits for the backward op
    that multiplies by fc2/kernel (it reads the aliased buffer), not for fc1's weight gradient,
    which can therefore overlap that update."""
    result = subprocess.run([sys.executable, "-c", UPDATE_WAITS], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    backward_readers = [name for name in found["kernel_readers"] if name.startswith("gradients/")]
    assert backward_readers and set(backward_readers) <= set(found["waits_for"])
    assert not [name for name in found["waits_for"] if name.startswith("gradients/fc1/")], found["waits_for"]
    assert not [name for name in found["waits_for"] if name.startswith("gradients/conv1x1/")]


# One RMSprop step of the VGG16 head on the TF1 runtime: what its assign ops write into, and the
# velocity slot and weights after the step.
RMSPROP_STEP = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    from graph_api.graph import GraphConfig, build_train_graph, use_tf1_runtime
    use_tf1_runtime()
    v1 = tf.compat.v1
    g = build_train_graph(GraphConfig(model="vgg16_head", image_shape=(2, 2, 512), num_classes=4, feed="feed_dict",
                                      optimizer="rmsprop", learning_rate=0.01, dropout=0.0))
    with g.graph.as_default():
        kernel = next(v for v in v1.trainable_variables() if v.op.name == "fc1/kernel")
        velocity = next(v for v in v1.global_variables() if v.op.name == "optimizer/fc1/kernel/velocity")
        (grad,) = tf.gradients(g.loss, [kernel])
        session = v1.Session()
        session.run(v1.global_variables_initializer())
    step, frontier = set(), [g.train_op]
    while frontier:
        op = frontier.pop()
        if op not in step:
            step.add(op)
            frontier += [t.op for t in op.inputs] + list(op.control_inputs)
    copies = [op.inputs[0].op.name for op in step if op.type == "Assign" and op.inputs[0].shape.num_elements() != 1]
    rng = np.random.default_rng(0)
    feed = {g.images: rng.random((8, 2, 2, 512), dtype=np.float32) * 2, g.labels: rng.integers(0, 4, 8)}
    before, d = session.run([kernel, grad], feed)
    session.run(g.train_op, feed)
    after, v = session.run([kernel, velocity])
    want_v = 0.1 * np.square(d)
    print(json.dumps({"copies": copies, "kernel": kernel.op.type, "velocity": velocity.op.type,
                      "velocity_error": float(np.abs(v - want_v).max() / np.abs(want_v).max()),
                      "update_error": float(np.abs((before - after) - 0.01 * d / np.sqrt(want_v + 1e-7)).max()),
                      "update": float(np.abs(before - after).max())}))
""")


def test_rmsprop_slots_are_rewritten_without_a_copy_on_the_tf1_runtime():
    """A reference variable's `Assign` copies the new value into its buffer; the slots are resource
    variables, whose assign adopts it. The weights stay reference variables, the step Keras's."""
    result = subprocess.run([sys.executable, "-c", RMSPROP_STEP], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["copies"] == [] and (found["kernel"], found["velocity"]) == ("VariableV2", "VarHandleOp")
    assert found["velocity_error"] < 1e-6 and found["update_error"] < 1e-5 * found["update"], found
