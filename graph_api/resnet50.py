"""ResNet50 v1 as a TF1 graph, layer for layer as keras.applications.ResNet50.

Stride in the first 1x1 convolution of a stage, biased convolutions, batch norm with
epsilon 1.001e-5, zero padding before the 7x7 convolution and the first max-pool.
(B, S, S, 3) -> (B, num_classes) logits; 25,858,004 parameters at 1108 classes.
"""
from __future__ import annotations

import tensorflow as tf

from graph_api.layers import (
    Training,
    batch_norm,
    conv2d,
    dense,
    global_avg_pool,
    max_pool,
    zero_pad,
)
from model_contract.batch_norm_modes import KERAS_BN
from model_contract.constants import BN_EPSILON_RESNET

STAGES = (("conv2", 64, 3, 1), ("conv3", 128, 4, 2), ("conv4", 256, 6, 2), ("conv5", 512, 3, 2))


def _bn(x, name, training, options):
    return batch_norm(x, name, training, epsilon=BN_EPSILON_RESNET, mode=options["bn_mode"],
                      data_format=options["data_format"])


def _block(x, filters, stride, conv_shortcut, name, training, options):
    fmt = options["data_format"]
    if conv_shortcut:
        shortcut = conv2d(x, 4 * filters, 1, f"{name}_0_conv", strides=stride, padding="valid", data_format=fmt)
        shortcut = _bn(shortcut, f"{name}_0_bn", training, options)
    else:
        shortcut = x
    x = conv2d(x, filters, 1, f"{name}_1_conv", strides=stride, padding="valid", data_format=fmt)
    x = tf.nn.relu(_bn(x, f"{name}_1_bn", training, options), name=f"{name}_1_relu")
    x = conv2d(x, filters, 3, f"{name}_2_conv", padding="same", data_format=fmt)
    x = tf.nn.relu(_bn(x, f"{name}_2_bn", training, options), name=f"{name}_2_relu")
    x = conv2d(x, 4 * filters, 1, f"{name}_3_conv", padding="valid", data_format=fmt)
    x = _bn(x, f"{name}_3_bn", training, options)
    return tf.nn.relu(tf.add(shortcut, x, name=f"{name}_add"), name=f"{name}_out")


def resnet50(images: tf.Tensor, training: Training, num_classes: int, *, bn_mode: str = KERAS_BN.name,
             data_format: str = "NHWC", **_unused) -> tf.Tensor:
    """(B, S, S, 3), S >= 32 -> (B, num_classes) logits."""
    options = {"bn_mode": bn_mode, "data_format": data_format}
    x = zero_pad(images, 3, "conv1_pad", data_format)
    x = conv2d(x, 64, 7, "conv1_conv", strides=2, padding="valid", data_format=data_format)
    x = tf.nn.relu(_bn(x, "conv1_bn", training, options), name="conv1_relu")
    x = zero_pad(x, 1, "pool1_pad", data_format)
    x = max_pool(x, 3, 2, "pool1_pool", data_format=data_format)
    for stage, filters, blocks, stride in STAGES:
        x = _block(x, filters, stride, True, f"{stage}_block1", training, options)
        for i in range(2, blocks + 1):
            x = _block(x, filters, 1, False, f"{stage}_block{i}", training, options)
    x = global_avg_pool(x, "avg_pool", data_format)
    return dense(x, num_classes, "predictions")
