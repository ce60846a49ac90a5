"""`build_model`: the entry point that builds either model as a Keras model."""
from __future__ import annotations

import keras

from data_pipeline.constants import NUM_CLASSES
from data_pipeline.errors import DataError
from common.model_inputs import check_input_shape

from .resnet50 import resnet50
from .vgg16_transfer import vgg16_head, vgg16_transfer

MODELS = {"vgg16_transfer": vgg16_transfer, "resnet50": resnet50, "vgg16_head": vgg16_head}
PRECISIONS = {"fp32": "float32", "mixed_bfloat16": "mixed_bfloat16", "mixed_float16": "mixed_float16"}


def build_model(name: str, input_shape=(224, 224, 3), num_classes: int = NUM_CLASSES, *,
                precision: str = "fp32", weights: str | None = "imagenet",
                preprocessing: str | None = None) -> keras.Model:
    """Model `name` for (H, W, C) inputs -> (B, num_classes) float32 logits, as the graph's
    `build_model`: both APIs train with cross-entropy from logits and apply the softmax in
    `predict`.

    ``precision`` sets the Keras dtype policy for the layers built here only (the global
    policy is restored afterwards); the logits are float32 under every policy. ``weights`` is the
    VGG16 base's source: "imagenet" (Keras's cache file), a path, or "none".
    ``preprocessing="caffe"`` transforms the [0, 1] RGB input as a pretrained VGG16 expects
    (`vgg16_transfer.CaffePreprocessing`), as the graph's `build_model` does.
    """
    if name not in MODELS:
        raise DataError(f"unknown model {name!r}: expected one of {sorted(MODELS)}")
    if precision not in PRECISIONS:
        raise DataError(f"unknown precision {precision!r}: expected one of {sorted(PRECISIONS)}")
    check_input_shape(name, input_shape)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(PRECISIONS[precision])
    try:
        return MODELS[name](tuple(input_shape), num_classes, weights=weights, preprocessing=preprocessing)
    finally:
        keras.mixed_precision.set_global_policy(previous)
