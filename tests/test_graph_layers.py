import numpy as np
import pytest
import tensorflow as tf

from graph_api import build_model
from graph_api.graph import GraphConfig, build_train_graph, model_variables
from graph_api.layers import batch_norm
from model_contract.batch_norm_modes import BN_MODES
from model_contract.constants import (
    RESNET50_PARAMS,
    RESNET50_TRAINABLE_PARAMS,
    VGG16_BASE_PARAMS,
    VGG16_HEAD_TRAINABLE_PARAMS,
)
from plumbing.errors import UserError

v1 = tf.compat.v1


def _count(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


@pytest.mark.parametrize("name, size, total, trainable", [
    ("vgg16_transfer", 224, VGG16_BASE_PARAMS + VGG16_HEAD_TRAINABLE_PARAMS, VGG16_HEAD_TRAINABLE_PARAMS),
    ("resnet50", 224, RESNET50_PARAMS, RESNET50_TRAINABLE_PARAMS),
])
def test_parameter_counts_and_frozen_base(name, size, total, trainable):
    with tf.Graph().as_default():
        logits = build_model(name, v1.placeholder(tf.float32, (None, size, size, 3)), True)
        assert logits.shape.as_list() == [None, 1108] and logits.dtype == tf.float32
        assert _count(model_variables()) == total
        assert _count(v1.trainable_variables()) == trainable
        if name == "vgg16_transfer":
            assert not [v for v in v1.trainable_variables() if v.op.name.startswith("block")]
            assert "block5_conv3/kernel" in {v.op.name for v in v1.global_variables()}
        else:
            names = {v.op.name for v in v1.global_variables()}
            assert {"conv1_conv/kernel", "conv2_block1_0_conv/bias", "conv5_block3_3_bn/moving_variance",
                    "predictions/kernel"} <= names


@pytest.mark.slow
def test_two_towers_share_one_set_of_variables():
    g = build_train_graph(GraphConfig(model="resnet50", image_shape=(32, 32, 3), num_classes=5, feed="feed_dict"))
    with g.graph.as_default():
        names = [v.op.name for v in model_variables()]
        assert len(names) == len(set(names))
        assert not [n for n in names if n.split("/")[0].endswith("_1")]
        assert _count(model_variables()) == RESNET50_PARAMS - 2048 * (1108 - 5) - (1108 - 5)
        # only the training tower registers moving-average updates: 53 BN layers x 2
        assert len(v1.get_collection(v1.GraphKeys.UPDATE_OPS)) == 106


def _bn_graph(mode, training=True):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, (None, 3, 3, 4))
        y = batch_norm(x, "bn", training, mode=mode)
        updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
        return graph, x, y, updates


@pytest.mark.parametrize("mode", ["keras", "debiased", "fused"])
def test_bn_moving_statistics_follow_numpy_ema(mode):
    rng = np.random.default_rng(0)
    batches = [rng.normal(i, 1 + i, (5, 3, 3, 4)).astype(np.float32) for i in range(4)]
    mean, var = np.zeros(4), np.ones(4)
    biased_m, biased_v = np.zeros(4), np.zeros(4)
    for t, b in enumerate(batches, start=1):
        bm, bv = b.mean(axis=(0, 1, 2)), b.var(axis=(0, 1, 2))
        if mode == "debiased":
            biased_m, biased_v = biased_m * 0.99 + bm * 0.01, biased_v * 0.99 + bv * 0.01
            mean, var = biased_m / (1 - 0.99 ** t), biased_v / (1 - 0.99 ** t)
        else:
            mean, var = mean * 0.99 + bm * 0.01, var * 0.99 + bv * 0.01
    graph, x, y, updates = _bn_graph(mode)
    with graph.as_default(), v1.Session() as session:
        session.run(v1.global_variables_initializer())
        for b in batches:
            out, _ = session.run([y, updates], {x: b})
        by_name = {v.op.name: v for v in v1.global_variables()}
        got_mean, got_var = session.run([by_name["bn/moving_mean"], by_name["bn/moving_variance"]])
    np.testing.assert_allclose(got_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_var, var, rtol=1e-5, atol=1e-6)
    last = batches[-1]
    expected = (last - last.mean((0, 1, 2))) / np.sqrt(last.var((0, 1, 2)) + 1e-3)
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("mode", list(BN_MODES))
def test_a_bn_mode_builds_what_its_record_says(mode):
    """Fused kernels or the arithmetic written out, and the zero-debiased accumulator's
    variables, as `model_contract.batch_norm_modes` records them."""
    spec = BN_MODES[mode]
    assert (spec.fused, spec.zero_debias) == {"keras": (False, False), "debiased": (False, True),
                                              "fused": (True, False)}[mode]
    graph, _, _, _ = _bn_graph(mode)
    ops = {op.type for op in graph.get_operations()}
    assert ("FusedBatchNormV3" in ops) == spec.fused and ("Rsqrt" in ops) != spec.fused, ops
    with graph.as_default():
        names = {v.op.name for v in v1.global_variables()}
    debias = {"bn/moving_mean/biased", "bn/moving_mean/local_step", "bn/moving_variance/biased"}
    assert (debias <= names) == spec.zero_debias and (debias & names == set()) != spec.zero_debias, names


def test_an_unknown_bn_mode_is_one_error_naming_the_choices():
    with pytest.raises(UserError) as err:
        _bn_graph("batch")
    assert err.value.message == "unknown batch-norm mode 'batch': expected one of keras, debiased, fused"
    with pytest.raises(UserError), tf.Graph().as_default():
        build_model("resnet50", v1.placeholder(tf.float32, (None, 32, 32, 3)), True, bn_mode="batch")


def test_bn_inference_uses_moving_statistics_and_tensor_switch_gates_updates():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, (None, 2, 2, 3))
        training = v1.placeholder_with_default(False, ())
        y = batch_norm(x, "bn", training)
        updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            moving_mean = [v for v in v1.global_variables() if v.op.name == "bn/moving_mean"][0]
            moving_mean.load(np.array([1.0, 2.0, 3.0], np.float32), session)
            batch = np.random.default_rng(1).normal(size=(4, 2, 2, 3)).astype(np.float32)
            out, _ = session.run([y, updates], {x: batch})
            np.testing.assert_allclose(out, (batch - [1, 2, 3]) / np.sqrt(1 + 1e-3), atol=1e-5)
            np.testing.assert_array_equal(session.run(moving_mean), [1, 2, 3])  # update gated off
            session.run(updates, {x: batch, training: True})
            assert not np.allclose(session.run(moving_mean), [1, 2, 3])


@pytest.mark.parametrize("shape, dtype, message", [
    ((None, 32, 32, 6), tf.float32, "3 channels"),
    ((None, 16, 16, 3), tf.float32, "at least 32"),
    ((None, 32, 32, 3), tf.int32, "floating point"),
    ((None, 32, 3), tf.float32, "batch, height, width"),
])
def test_wrong_input_shape_or_dtype_is_refused(shape, dtype, message):
    with tf.Graph().as_default():
        with pytest.raises(UserError, match=message):
            build_model("resnet50", v1.placeholder(dtype, shape), False)


def test_mixed_precision_keeps_float32_variables_and_logits():
    with tf.Graph().as_default():
        logits = build_model("resnet50", v1.placeholder(tf.float32, (None, 32, 32, 3)), True,
                             num_classes=3, precision="mixed_bfloat16")
        assert logits.dtype == tf.float32
        assert {v.dtype.base_dtype for v in v1.global_variables()} == {tf.float32}
        convs = [op for op in tf.compat.v1.get_default_graph().get_operations() if op.type == "Conv2D"]
        assert convs and all(op.inputs[0].dtype == tf.bfloat16 for op in convs)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_hand_written_bn_backward_is_the_gradient_of_keras_arithmetic_without_broadcast_passes(data_format):
    """The manual BN's backward (2 per-channel sums as matrix products, no broadcast of a
    reduction's gradient) against float64 autodiff of tf.nn.moments + tf.nn.batch_normalization."""
    rng = np.random.default_rng(1)
    x_nhwc = rng.normal(3.0, 0.5, (6, 5, 5, 8))
    w_nhwc = rng.normal(size=x_nhwc.shape)
    to_layout = (lambda a: a.transpose(0, 3, 1, 2)) if data_format == "NCHW" else (lambda a: a)
    axes = [0, 2, 3] if data_format == "NCHW" else [0, 1, 2]
    channel = [1, -1, 1, 1] if data_format == "NCHW" else [-1]
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, to_layout(x_nhwc).shape)
        y = batch_norm(x, "bn", True, data_format=data_format)
        gamma, beta = (v for v in v1.trainable_variables())
        upstream = tf.constant(to_layout(w_nhwc).astype(np.float32))  # d loss / d y
        before = {op.name for op in graph.get_operations()}
        grads = tf.gradients(y, [x, gamma, beta], grad_ys=upstream)
        backward_ops = [op for op in graph.get_operations() if op.name not in before]
        backward = [op.type for op in backward_ops]
        full_size_reductions = [op.name for op in backward_ops
                                if op.type in ("Sum", "Mean") and op.inputs[0].shape.rank == 4]
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            got = session.run(grads, {x: to_layout(x_nhwc).astype(np.float32)})
    x64 = tf.constant(to_layout(x_nhwc))
    g64, b64 = tf.ones([8], tf.float64), tf.zeros([8], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch([x64, g64, b64])
        mean, var = tf.nn.moments(x64, axes)
        y64 = tf.nn.batch_normalization(x64, *(tf.reshape(t, channel) for t in (mean, var, b64, g64)), 1e-3)
        loss64 = tf.reduce_sum(y64 * to_layout(w_nhwc))
    for g, want in zip(got, tape.gradient(loss64, [x64, g64, b64])):
        np.testing.assert_allclose(g, want.numpy(), rtol=1e-4, atol=1e-4 * np.abs(want.numpy()).max())
    assert "Tile" not in backward and "BroadcastTo" not in backward
    assert not full_size_reductions  # per-channel sums run as matrix products
    assert backward.count("MatMul") + backward.count("BatchMatMulV2") >= 2
