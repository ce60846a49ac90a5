"""`build_model`: the entry point that builds either model as a Keras model."""
from __future__ import annotations

from types import ModuleType

import keras

from data_pipeline.constants import NUM_CLASSES
from keras_api.resnet50 import resnet50
from keras_api.small_models import build_small_model
from keras_api.vgg16_transfer import vgg16_head, vgg16_transfer
from model_contract.constants import (
    HEAD_DROPOUT,
    IMAGENET_BGR_MEAN,
    PIXEL_RANGE,
    PREPROCESSINGS,
)
from model_contract.image_models import has_pretrained_base
from model_contract.model_inputs import check_input_shape
from model_contract.precisions import precision_named
from model_contract.small_models import SMALL_MODELS
from plumbing.errors import UserError


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
    if preprocessing not in PREPROCESSINGS:
        raise UserError(f"unknown preprocessing {preprocessing!r}: expected one of {PREPROCESSINGS}")
    return [CaffePreprocessing(name="caffe_preprocessing")] if preprocessing == "caffe" else []


MODELS = {"vgg16_transfer": vgg16_transfer, "resnet50": resnet50, "vgg16_head": vgg16_head}


def build_model(name: str, input_shape=(224, 224, 3), num_classes: int = NUM_CLASSES, *,
                precision: str = "fp32", weights: str | None = "imagenet",
                preprocessing: str | None = None, dropout: float = HEAD_DROPOUT,
                keras_module: ModuleType = keras) -> keras.Model:
    """Model `name` for (H, W, C) inputs -> (B, num_classes) float32 logits, as the graph's
    `build_model`: both APIs train with cross-entropy from logits and apply the softmax in
    `predict`.

    ``precision`` sets the Keras dtype policy for the layers built here only (the global
    policy is restored afterwards); the logits are float32 under every policy. ``weights`` is the
    VGG16 base's source: "imagenet" (Keras's cache file), a path, or "none".
    ``preprocessing="caffe"`` transforms the [0, 1] RGB input as a pretrained VGG16 expects
    (`CaffePreprocessing`), as the graph's `build_model` does. ``dropout`` is the VGG16 head's
    rate (ResNet50 has no dropout). The overhead study's small models (`model_contract.small_models`:
    mlp, trivial, embedding) build here too; they take their own input shape. ``keras_module``
    builds the models in `tf_keras` (Keras 2) instead, except the VGG16 base, whose weight
    files and preprocessing layer are Keras 3's.
    """
    if name not in MODELS and name not in SMALL_MODELS:
        raise UserError(f"unknown model {name!r}: expected one of {sorted(MODELS)}")
    policy = precision_named(precision).keras_policy
    if name not in SMALL_MODELS:
        check_input_shape(name, input_shape)
    k = keras_module
    if k is not keras and (has_pretrained_base(name) or preprocessing):
        raise UserError(f"{name}: the VGG16 base and its preprocessing build in Keras 3 only")
    previous = k.mixed_precision.global_policy()
    k.mixed_precision.set_global_policy(policy)
    try:
        if name in SMALL_MODELS:
            return build_small_model(name, num_classes, keras_module=k)
        return MODELS[name](tuple(input_shape), num_classes, weights=weights,
                            input_layers=input_layers(preprocessing), dropout=dropout, keras_module=k)
    finally:
        k.mixed_precision.set_global_policy(previous)
