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
                precision: str = "fp32", weights: str | None = "imagenet", logits: bool = False) -> keras.Model:
    """Model `name` for (H, W, C) inputs -> (B, num_classes) softmax probabilities (or logits).

    ``precision`` sets the Keras dtype policy for the layers built here only (the global
    policy is restored afterwards); the output layer stays float32. ``weights`` is the
    VGG16 base's source: "imagenet" (Keras's cache file), a path, or "none".
    """
    if name not in MODELS:
        raise DataError(f"unknown model {name!r}: expected one of {sorted(MODELS)}")
    if precision not in PRECISIONS:
        raise DataError(f"unknown precision {precision!r}: expected one of {sorted(PRECISIONS)}")
    check_input_shape(name, input_shape)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(PRECISIONS[precision])
    try:
        return MODELS[name](tuple(input_shape), num_classes, weights=weights, logits=logits)
    finally:
        keras.mixed_precision.set_global_policy(previous)
