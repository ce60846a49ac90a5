"""VGG16-Cell-Transfer (textbook P3.31) as a TF1 graph.

(B, 224, 224, 3) -> frozen VGG16 convolutional base (`block1_conv1` ... `block5_pool`,
14,714,688 parameters, not trainable) -> (B, 7, 7, 512) -> head: `conv1x1` (64 filters,
relu) -> flatten -> `fc1` 2048 relu -> dropout 0.5 -> `fc2` 2048 relu -> dropout 0.5 ->
`prediction` logits (the softmax is applied by the loss / `tf.nn.softmax`).
"""
from __future__ import annotations

import tensorflow as tf

from graph_api.layers import Training, conv2d, dense, flatten, max_pool
from graph_api.layers import dropout as dropout_layer
from model_contract.constants import HEAD_CONV_FILTERS, HEAD_DENSE_UNITS, HEAD_DROPOUT

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (filters, convolutions)


def vgg16_base(images: tf.Tensor, *, data_format: str = "NHWC", trainable: bool = False) -> tf.Tensor:
    """VGG16 without its top, layer names as keras.applications.VGG16. (B,H,W,3) -> (B,H/32,W/32,512)."""
    x = images
    for block, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        for j in range(1, convs + 1):
            x = conv2d(x, filters, 3, f"block{block}_conv{j}", activation="relu",
                       data_format=data_format, trainable=trainable)
        x = max_pool(x, 2, 2, f"block{block}_pool", data_format=data_format)
    return x


def transfer_head(features: tf.Tensor, training: Training, num_classes: int, *,
                  data_format: str = "NHWC", dropout: float = HEAD_DROPOUT) -> tf.Tensor:
    """(B, 7, 7, 512) base features -> (B, num_classes) logits; 12,924,052 parameters at 1108 classes.
    ``dropout``: the rate of both dropout layers (the textbook's 0.5; 0 turns them off)."""
    x = conv2d(features, HEAD_CONV_FILTERS, 1, "conv1x1", activation="relu", data_format=data_format)
    x = flatten(x, "flatten", data_format=data_format)
    x = dense(x, HEAD_DENSE_UNITS, "fc1", activation="relu")
    x = dropout_layer(x, dropout, "dropout1", training)
    x = dense(x, HEAD_DENSE_UNITS, "fc2", activation="relu")
    x = dropout_layer(x, dropout, "dropout2", training)
    return dense(x, num_classes, "prediction")


def vgg16_transfer(images: tf.Tensor, training: Training, num_classes: int, *,
                   data_format: str = "NHWC", dropout: float = HEAD_DROPOUT, **_unused) -> tf.Tensor:
    """(B, 224, 224, 3) -> (B, num_classes) logits, base frozen."""
    return transfer_head(vgg16_base(images, data_format=data_format), training, num_classes,
                         data_format=data_format, dropout=dropout)


def vgg16_head(features: tf.Tensor, training: Training, num_classes: int, *,
               data_format: str = "NHWC", dropout: float = HEAD_DROPOUT, **_unused) -> tf.Tensor:
    """The head alone, on cached (B, 7, 7, 512) features (textbook P3.27-P3.30)."""
    return transfer_head(features, training, num_classes, data_format=data_format, dropout=dropout)
