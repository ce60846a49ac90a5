"""VGG16-Cell-Transfer (textbook P3.31) in high-level Keras.

`keras.applications.VGG16(include_top=False)` frozen, then a Sequential head: `conv1x1`
(64 filters, relu) -> `flatten` -> `fc1` 2048 relu -> `dropout1` 0.5 -> `fc2` 2048 relu ->
`dropout2` 0.5 -> `prediction` logits. Under a mixed policy `prediction` computes in the
policy's dtype and a parameter-free layer casts its logits to float32, as in the ResNet50 and
the graph's models (the softmax, applied by the loss and by `predict`, runs in float32).
"""
from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import keras

from model_contract.constants import HEAD_CONV_FILTERS, HEAD_DENSE_UNITS, HEAD_DROPOUT
from model_contract.weights_source import resolve_vgg16_weights
from plumbing.errors import UserError


def vgg16_base(input_shape=(224, 224, 3), weights: str | None = "imagenet") -> keras.Model:
    """The frozen convolutional base; (H, W, 3) -> (H/32, W/32, 512)."""
    path = resolve_vgg16_weights(weights)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=tuple(input_shape))
    if path is not None:
        try:
            base.load_weights(path)
        except (ValueError, OSError, KeyError) as err:
            raise UserError(f"{path}: not VGG16 base weights ({str(err).splitlines()[0][:200]})") from None
        print(f"VGG16 base weights: {path}")
    base.trainable = False
    return base


def head_layers(num_classes: int, dropout: float = HEAD_DROPOUT,
                keras_module: ModuleType = keras) -> list[keras.layers.Layer]:
    """The head after the base; ``dropout`` is the rate of both dropout layers (0 turns them off).
    ``keras_module``: the Keras they are made in (Keras 3, or `tf_keras`)."""
    k = keras_module
    mixed = k.mixed_precision.global_policy().compute_dtype != "float32"
    return [
        k.layers.Conv2D(HEAD_CONV_FILTERS, 1, activation="relu", name="conv1x1"),
        k.layers.Flatten(name="flatten"),
        k.layers.Dense(HEAD_DENSE_UNITS, activation="relu", name="fc1"),
        k.layers.Dropout(dropout, name="dropout1"),
        k.layers.Dense(HEAD_DENSE_UNITS, activation="relu", name="fc2"),
        k.layers.Dropout(dropout, name="dropout2"),
        k.layers.Dense(num_classes, name="prediction"),
    ] + ([k.layers.Activation("linear", dtype="float32", name="float32_output")] if mixed else [])


def vgg16_transfer(input_shape=(224, 224, 3), num_classes: int = 1108, *, weights: str | None = "imagenet",
                   input_layers: Sequence[keras.layers.Layer] = (), dropout: float = HEAD_DROPOUT,
                   **_unused) -> keras.Model:
    """(B, 224, 224, 3) [0, 1] RGB -> (B, num_classes); 12,924,052 trainable parameters at 1108
    classes. `input_layers` (e.g. `model.CaffePreprocessing`) come before the base."""
    return keras.Sequential([keras.Input(tuple(input_shape)), *input_layers,
                             vgg16_base(input_shape, weights),
                             *head_layers(num_classes, dropout)], name="vgg16_transfer")


def vgg16_head(input_shape=(7, 7, 512), num_classes: int = 1108, *,
               input_layers: Sequence[keras.layers.Layer] = (), dropout: float = HEAD_DROPOUT,
               keras_module: ModuleType = keras, **_unused) -> keras.Model:
    """The head alone, on cached VGG16 features (textbook P3.27-P3.30), in Keras 3 or
    ``keras_module`` (`tf_keras`)."""
    if input_layers:
        raise UserError("vgg16_head takes features: their preprocessing happened at extraction")
    k = keras_module
    return k.Sequential([k.Input(tuple(input_shape)), *head_layers(num_classes, dropout, k)], name="vgg16_head")
