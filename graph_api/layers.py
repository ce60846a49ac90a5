"""TF1-style layers: `tf.compat.v1.get_variable` inside `variable_scope(<keras layer name>)`.

Each layer creates its variables in the order Keras stores them (conv/dense: kernel, bias;
batch norm: gamma, beta, moving_mean, moving_variance), named ``<layer>/<weight>``, so a
Keras weights file maps onto them by layer name. Variables are float32; with mixed
precision the layer computes in the input's dtype and reads a cast copy of each variable.
Shapes: images NHWC (or NCHW with ``data_format="NCHW"``); kernels are always HWIO.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import tensorflow as tf

from model_contract.batch_norm_modes import KERAS_BN, batch_norm_mode_named
from model_contract.constants import BN_EPSILON_KERAS, BN_MOMENTUM

v1 = tf.compat.v1
Training = bool | tf.Tensor
_REPLICA = contextvars.ContextVar("replica", default=0)


@contextlib.contextmanager
def replica(index: int) -> Iterator[None]:
    """Layers built inside draw the random numbers of data-parallel replica `index`: towers
    of one step see different slices of the batch and must not share dropout masks.
    Replica 0 draws what a one-device model draws."""
    token = _REPLICA.set(index)
    try:
        yield
    finally:
        _REPLICA.reset(token)


def _read(variable: tf.Variable, dtype: tf.DType) -> tf.Tensor:
    return variable if variable.dtype.base_dtype == dtype else tf.cast(variable, dtype)


def _variable(name: str, shape, initializer, trainable: bool) -> tf.Variable:
    collections = [v1.GraphKeys.GLOBAL_VARIABLES] + ([v1.GraphKeys.TRAINABLE_VARIABLES] if trainable else [])
    return v1.get_variable(name, shape, tf.float32, initializer, trainable=trainable, collections=collections)


def _channel_axis(data_format: str) -> int:
    return 1 if data_format == "NCHW" else 3


def conv2d(x: tf.Tensor, filters: int, kernel_size: int, name: str, *, strides: int = 1,
           padding: str = "same", activation: str | None = None, use_bias: bool = True,
           data_format: str = "NHWC", trainable: bool = True) -> tf.Tensor:
    """Keras Conv2D: glorot-uniform kernel (k, k, in, filters), zero bias."""
    in_channels = x.shape[_channel_axis(data_format)]
    with v1.variable_scope(name):
        kernel = _variable("kernel", (kernel_size, kernel_size, in_channels, filters),
                           v1.glorot_uniform_initializer(), trainable)
        bias = _variable("bias", (filters,), v1.zeros_initializer(), trainable) if use_bias else None
        stride = [1, 1, strides, strides] if data_format == "NCHW" else [1, strides, strides, 1]
        y = tf.nn.conv2d(x, _read(kernel, x.dtype), stride, padding.upper(), data_format=data_format)
        if bias is not None:
            y = tf.nn.bias_add(y, _read(bias, x.dtype), data_format=data_format)
        return _activate(y, activation)


def dense(x: tf.Tensor, units: int, name: str, *, activation: str | None = None,
          trainable: bool = True) -> tf.Tensor:
    """Keras Dense on (B, features): glorot-uniform kernel (features, units), zero bias."""
    with v1.variable_scope(name):
        kernel = _variable("kernel", (x.shape[-1], units), v1.glorot_uniform_initializer(), trainable)
        bias = _variable("bias", (units,), v1.zeros_initializer(), trainable)
        return _activate(tf.nn.bias_add(tf.matmul(x, _read(kernel, x.dtype)), _read(bias, x.dtype)),
                         activation)


# Keras's activation names -> the op each applies
_ACTIVATIONS = {"relu": tf.nn.relu, "softmax": tf.nn.softmax, "sigmoid": tf.nn.sigmoid}


def _activate(x: tf.Tensor, activation: str | None) -> tf.Tensor:
    if activation is None:
        return x
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    return _ACTIVATIONS[activation](x)


def embedding(ids: tf.Tensor, vocabulary: int, dim: int, name: str) -> tf.Tensor:
    """Keras Embedding: (B, T) int ids -> (B, T, dim) rows of `<name>/embeddings`, uniform in
    +-0.05 as Keras initialises it. Its gradient is `IndexedSlices` (the rows looked up)."""
    with v1.variable_scope(name):
        table = _variable("embeddings", (vocabulary, dim), v1.random_uniform_initializer(-0.05, 0.05), True)
    return tf.nn.embedding_lookup(table, ids)


def zero_pad(x: tf.Tensor, pad: int, name: str, data_format: str = "NHWC") -> tf.Tensor:
    spatial = [[pad, pad], [pad, pad]]
    paddings = [[0, 0], [0, 0]] + spatial if data_format == "NCHW" else [[0, 0]] + spatial + [[0, 0]]
    return tf.pad(x, paddings, name=name)


def max_pool(x: tf.Tensor, size: int, strides: int, name: str, padding: str = "valid",
             data_format: str = "NHWC") -> tf.Tensor:
    window = [1, 1, size, size] if data_format == "NCHW" else [1, size, size, 1]
    step = [1, 1, strides, strides] if data_format == "NCHW" else [1, strides, strides, 1]
    return tf.nn.max_pool2d(x, window, step, padding.upper(), data_format=data_format, name=name)


def global_avg_pool(x: tf.Tensor, name: str, data_format: str = "NHWC") -> tf.Tensor:
    axes = [2, 3] if data_format == "NCHW" else [1, 2]
    return tf.reduce_mean(x, axis=axes, name=name)


def flatten(x: tf.Tensor, name: str, data_format: str = "NHWC") -> tf.Tensor:
    """(B, H, W, C) -> (B, H*W*C) in Keras's (channels-last) order, whatever the layout."""
    if data_format == "NCHW":
        x = tf.transpose(x, [0, 2, 3, 1])
    return tf.reshape(x, [-1, int(x.shape[1]) * int(x.shape[2]) * int(x.shape[3])], name=name)


def dropout(x: tf.Tensor, rate: float, name: str, training: Training) -> tf.Tensor:
    """Dropout whose rate is a placeholder with a default (`<name>/rate`), off at inference.

    The mask is stateless, seeded by (graph seed, global step, layer), so a run resumed
    from a checkpoint draws the same masks as an uninterrupted one.
    """
    with v1.variable_scope(name):
        rate_t = v1.placeholder_with_default(tf.constant(rate, tf.float32), (), name="rate")
        if training is False:
            return x
        step = v1.train.get_or_create_global_step()
        graph_seed = tf.compat.v1.get_default_graph().seed or 0
        seed = tf.stack([tf.cast(step, tf.int64) + graph_seed * 1_000_003,
                         _name_seed(name) + _REPLICA.get() * 1_000_033])
        drop = lambda: tf.nn.experimental.stateless_dropout(x, tf.cast(rate_t, x.dtype), seed)  # noqa: E731
        return drop() if training is True else tf.cond(training, drop, lambda: tf.identity(x))


def _name_seed(name: str) -> tf.Tensor:
    return tf.constant(sum((i + 1) * ord(c) for i, c in enumerate(name)), tf.int64)


def batch_norm(x: tf.Tensor, name: str, training: Training, *, momentum: float = BN_MOMENTUM,
               epsilon: float = BN_EPSILON_KERAS, mode: str = KERAS_BN.name, data_format: str = "NHWC",
               trainable: bool = True) -> tf.Tensor:
    """Batch normalisation written out: batch statistics in training, moving ones in inference.

    The moving statistics follow an exponential moving average (EMA) written by hand; its
    assign ops go into ``UPDATE_OPS`` (run them with the train op, under
    `control_dependencies`). ``mode`` (`model_contract.batch_norm_modes`): "keras" = Keras
    BatchNormalization (moving mean/variance start at 0/1,
    ``m <- m * momentum + batch * (1 - momentum)``, biased batch
    variance, float32 maths for low-precision inputs); "debiased" = the zero-debiased EMA of
    TF1's `assign_moving_average(zero_debias=True)` / `ExponentialMovingAverage` on tensors;
    "fused" = `fused_batch_norm` kernels with the Keras update rule. With a boolean tensor
    for `training`, the update ops leave the statistics unchanged when it is False.
    """
    spec = batch_norm_mode_named(mode)
    axis = _channel_axis(data_format)
    channels = x.shape[axis]
    with v1.variable_scope(name):
        gamma = _variable("gamma", (channels,), v1.ones_initializer(), trainable)
        beta = _variable("beta", (channels,), v1.zeros_initializer(), trainable)
        moving_mean = _variable("moving_mean", (channels,), v1.zeros_initializer(), False)
        moving_var = _variable("moving_variance", (channels,), v1.ones_initializer(), False)
        infer = lambda: (_bn_inference(x, gamma, beta, moving_mean, moving_var, epsilon, spec.fused,  # noqa: E731
                                       data_format), moving_mean.read_value(), moving_var.read_value())
        train = lambda: _bn_training(x, gamma, beta, epsilon, spec.fused, data_format)  # noqa: E731
        if training is False:
            return infer()[0]
        y, mean, variance = train() if training is True else tf.cond(training, train, infer)
        for var, value in ((moving_mean, mean), (moving_var, variance)):
            v1.add_to_collection(v1.GraphKeys.UPDATE_OPS,
                                 _ema_update(var, value, momentum, spec.zero_debias, training))
        return y


def _bn_inference(x, gamma, beta, mean, variance, epsilon, fused, data_format):
    if fused:
        y, _, _ = v1.nn.fused_batch_norm(x, gamma, beta, mean, variance, epsilon,
                                         data_format=data_format, is_training=False)
        return y
    return _normalize(x, mean, variance, gamma, beta, epsilon, data_format)


def _normalize(x, mean, variance, gamma, beta, epsilon, data_format):
    """Keras's arithmetic: float32 maths, result cast back to the input dtype."""
    x32 = tf.cast(x, tf.float32)
    if data_format == "NCHW":
        mean, variance, gamma, beta = (tf.reshape(t, [1, -1, 1, 1]) for t in (mean, variance, gamma, beta))
    y = tf.nn.batch_normalization(x32, mean, variance, beta, gamma, epsilon)
    return tf.cast(y, x.dtype)


def _bn_training(x, gamma, beta, epsilon, fused, data_format):
    """-> (normalised x, batch mean, biased batch variance), statistics in float32."""
    axes = [0, 2, 3] if data_format == "NCHW" else [0, 1, 2]
    if fused:
        y, mean, variance = v1.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon,
                                                   data_format=data_format, is_training=True)
        # The fused kernel returns the Bessel-corrected variance; Keras averages the biased one.
        shape = tf.shape(x)
        n = tf.cast(shape[axes[0]] * shape[axes[1]] * shape[axes[2]], tf.float32)
        return y, mean, variance * ((n - 1.0) / n)
    y, mean, variance = _bn_train_float32(tf.cast(x, tf.float32), gamma, beta, epsilon=epsilon, axes=axes,
                                          channel_axis=_channel_axis(data_format))
    return tf.cast(y, x.dtype), mean, variance


def _channel_sums(t: tf.Tensor, channel_axis: int) -> tf.Tensor:
    """Per-channel sums of NHWC (`channel_axis` 3) or NCHW (1) float32 `t`, shaped to broadcast
    on it, as a product with a vector of ones: oneDNN's matrix product reads the tensor 2-3.5x
    faster than a reduction over three axes does (measured: 4 vs 14 ms at (32, 56, 56, 256) on
    2 cores)."""
    shape = tf.shape(t)
    if channel_axis == 3:
        rows = tf.reshape(t, [-1, shape[3]])                                   # (N*H*W, C)
        return tf.reshape(tf.matmul(tf.ones([1, tf.shape(rows)[0]]), rows), [1, 1, 1, -1])
    planes = tf.reshape(t, [shape[0], shape[1], -1])                          # (N, C, H*W)
    per_image = tf.linalg.matvec(planes, tf.ones([tf.shape(planes)[2]]))     # (N, C)
    return tf.reshape(tf.reduce_sum(per_image, 0), [1, -1, 1, 1])


def _bn_train_float32(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, *, epsilon: float,
                      axes: list[int], channel_axis: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Keras's training-mode arithmetic on float32 `x` (`tf.nn.moments`' two passes, then
    `tf.nn.batch_normalization`'s ``y = x * a + (beta - mean * a)``, ``a = gamma / sqrt(var + eps)``)
    -> (y like x, batch mean (C,), biased batch variance (C,)), with the backward pass written
    out. Differentiating the forward ops instead costs about 10 full-size passes per layer
    (broadcasts of the reductions' gradients, the squared difference's two products); this one
    takes 2 sums (`_channel_sums`) and 6 element-wise passes. The forward keeps Keras's own
    reductions: a from-scratch BN ResNet's gradients amplify a reordered sum in the forward pass
    to percents of some of the first step's updates; one in the backward pass stays within the
    one-step equivalence tests' 1e-5 of each update. Only `y` carries a gradient: the
    statistics feed the moving averages, which the loss does not see."""
    channel = [1 if i in axes else -1 for i in range(x.shape.rank)]  # (C,) -> broadcastable on x

    @tf.custom_gradient
    def normalize(x, gamma, beta):
        n = tf.cast(tf.size(x) // tf.shape(x)[channel_axis], tf.float32)  # values per channel
        mean = tf.reduce_mean(x, axes, keepdims=True)
        variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axes, keepdims=True)
        inv = tf.math.rsqrt(variance + epsilon)
        a = inv * tf.reshape(gamma, channel)
        y = x * a + (tf.reshape(beta, channel) - mean * a)

        def grad(dy, _dmean, _dvariance):
            centred = x - mean  # summing dy * x and subtracting mean * sum(dy) loses digits
            s1 = _channel_sums(dy, channel_axis)                            # = d beta
            da = _channel_sums(dy * centred, channel_axis)                  # = d a
            k = a * inv * inv * da / n
            dx = dy * a - centred * k - a * s1 / n
            return dx, tf.reshape(da * inv, [-1]), tf.reshape(s1, [-1])

        return (y, tf.reshape(mean, [-1]), tf.reshape(variance, [-1])), grad

    return normalize(x, gamma, beta)


def _ema_update(var: tf.Variable, value: tf.Tensor, momentum: float, zero_debias: bool,
                training: Training) -> tf.Operation:
    """One EMA step of `var` towards `value`; a no-op where `training` is a False tensor."""
    gate = (lambda new, old: new) if training is True else (  # noqa: E731
        lambda new, old: tf.where(training, new, old))
    if not zero_debias:
        return v1.assign(var, gate(var * momentum + value * (1.0 - momentum), var))
    # TF1's zero-debiased EMA: a biased accumulator starting at 0 and a step counter, the
    # variable being the accumulator divided by (1 - momentum ** step).
    with v1.variable_scope(var.op.name.split("/")[-1]):
        biased = _variable("biased", var.shape, v1.zeros_initializer(), False)
        step = _variable("local_step", (), v1.zeros_initializer(), False)
    new_biased = v1.assign(biased, gate(biased * momentum + value * (1.0 - momentum), biased))
    new_step = v1.assign(step, gate(step + 1.0, step))
    unbiased = new_biased / (1.0 - tf.pow(tf.constant(momentum, tf.float32), new_step))
    return v1.assign(var, gate(unbiased, var))
