"""VGG16-Cell-Transfer (textbook P3.31) in high-level Keras.

`keras.applications.VGG16(include_top=False)` frozen, then a Sequential head: `conv1x1`
(64 filters, relu) -> `flatten` -> `fc1` 2048 relu -> `dropout1` 0.5 -> `fc2` 2048 relu ->
`dropout2` 0.5 -> `prediction` logits. Under a mixed policy `prediction` computes in the
policy's dtype and a parameter-free layer casts its logits to float32, as in the ResNet50 and
the graph's models (the softmax, applied by the loss and by `predict`, runs in float32).
"""
from __future__ import annotations

import keras

from common.constants import (HEAD_CONV_FILTERS, HEAD_DENSE_UNITS, HEAD_DROPOUT, IMAGENET_BGR_MEAN,
                              PIXEL_RANGE)
from data_pipeline.errors import DataError
from common.weights_source import resolve_vgg16_weights

@keras.saving.register_keras_serializable(package="rxrx1")
class CaffePreprocessing(keras.layers.Layer):
    """(B, H, W, 3) [0, 1] RGB -> `keras.applications.vgg16.preprocess_input` of the same pixels
    in [0, 255] (BGR, ImageNet means subtracted); float32 under every policy, as the graph's
    `preprocess`. A registered layer, not a Lambda, so a `.keras` file loads in safe mode."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, images):
        x = keras.ops.cast(images, "float32")
        return keras.ops.flip(x, axis=-1) * PIXEL_RANGE - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, "float32")


def input_layers(preprocessing: str | None) -> list[keras.layers.Layer]:
    """The layers between the [0, 1] input and a model: none, or the caffe transform."""
    if preprocessing not in (None, "caffe"):
        raise DataError(f"unknown preprocessing {preprocessing!r}: expected None or 'caffe'")
    return [CaffePreprocessing(name="caffe_preprocessing")] if preprocessing == "caffe" else []


def vgg16_base(input_shape=(224, 224, 3), weights: str | None = "imagenet") -> keras.Model:
    """The frozen convolutional base; (H, W, 3) -> (H/32, W/32, 512)."""
    path = resolve_vgg16_weights(weights)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=tuple(input_shape))
    if path is not None:
        try:
            base.load_weights(path)
        except (ValueError, OSError, KeyError) as err:
            raise DataError(f"{path}: not VGG16 base weights ({str(err).splitlines()[0][:200]})") from None
        print(f"VGG16 base weights: {path}")
    base.trainable = False
    return base


def head_layers(num_classes: int) -> list[keras.layers.Layer]:
    mixed = keras.mixed_precision.global_policy().compute_dtype != "float32"
    return [
        keras.layers.Conv2D(HEAD_CONV_FILTERS, 1, activation="relu", name="conv1x1"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(HEAD_DENSE_UNITS, activation="relu", name="fc1"),
        keras.layers.Dropout(HEAD_DROPOUT, name="dropout1"),
        keras.layers.Dense(HEAD_DENSE_UNITS, activation="relu", name="fc2"),
        keras.layers.Dropout(HEAD_DROPOUT, name="dropout2"),
        keras.layers.Dense(num_classes, name="prediction"),
    ] + ([keras.layers.Activation("linear", dtype="float32", name="float32_output")] if mixed else [])


def vgg16_transfer(input_shape=(224, 224, 3), num_classes: int = 1108, *, weights: str | None = "imagenet",
                   preprocessing: str | None = None, **_unused) -> keras.Model:
    """(B, 224, 224, 3) [0, 1] RGB -> (B, num_classes); 12,924,052 trainable parameters at 1108
    classes. ``preprocessing="caffe"`` puts `CaffePreprocessing` before the base."""
    return keras.Sequential([keras.Input(tuple(input_shape)), *input_layers(preprocessing),
                             vgg16_base(input_shape, weights),
                             *head_layers(num_classes)], name="vgg16_transfer")


def vgg16_head(input_shape=(7, 7, 512), num_classes: int = 1108, *, preprocessing: str | None = None,
               **_unused) -> keras.Model:
    """The head alone, on cached VGG16 features (textbook P3.27-P3.30)."""
    if preprocessing is not None:
        raise DataError("vgg16_head takes features: their preprocessing happened at extraction")
    return keras.Sequential([keras.Input(tuple(input_shape)), *head_layers(num_classes)],
                            name="vgg16_head")
