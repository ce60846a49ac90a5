"""`build_model`: the entry point that builds either model as a Keras model."""
from __future__ import annotations

import keras

from data_pipeline.constants import NUM_CLASSES
from data_pipeline.errors import DataError

from .resnet50 import resnet50
from .vgg16_transfer import vgg16_head, vgg16_transfer

MODELS = {"vgg16_transfer": vgg16_transfer, "resnet50": resnet50, "vgg16_head": vgg16_head}
PRECISIONS = {"fp32": "float32", "mixed_bfloat16": "mixed_bfloat16", "mixed_float16": "mixed_float16"}


def check_input_shape(name: str, input_shape) -> None:
    """DataError if `input_shape` (H, W, C) cannot feed model `name` (mirrors graph_api's check)."""
    if len(input_shape) != 3:
        raise DataError(f"{name}: input shape must be (height, width, channels), got {tuple(input_shape)}")
    height, width, channels = (int(v) for v in input_shape)
    if name == "vgg16_head":
        if channels != 512:
            raise DataError(f"{name}: input must be VGG16 features (h, w, 512), got {tuple(input_shape)}")
        return
    if channels != 3:
        raise DataError(f"{name}: input must have 3 channels (RGB), got {channels}")
    if height != width or height < 32 or (name == "vgg16_transfer" and height % 32):
        need = "a multiple of 32" if name == "vgg16_transfer" else "at least 32"
        raise DataError(f"{name}: input must be square and {need} pixels, got {height}x{width}")


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
