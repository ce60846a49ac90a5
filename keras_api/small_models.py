"""The overhead study's small models (`model_contract.small_models`) in Keras, layer names as the
graph's. ``keras_module`` builds them in another Keras of the same API: `tf_keras` (Keras 2),
the Keras that 2017-2019 speed reports measured."""
from __future__ import annotations

from types import ModuleType

import keras

from model_contract.small_models import small_model


def build_small_model(name: str, num_classes: int | None = None, keras_module: ModuleType = keras):
    """Small model `name` -> a Sequential of float32 logits ((B, classes) or (B, tokens,
    classes)); uninitialised Keras defaults (glorot-uniform kernels, zero biases, uniform +-0.05
    embeddings)."""
    spec, k = small_model(name), keras_module
    classes = num_classes or spec.num_classes
    layers = [k.Input(spec.input_shape, dtype=spec.input_dtype)]
    if spec.embeds:
        layers += [k.layers.Embedding(spec.vocabulary, spec.embedding_dim, name="embedding")]
    else:
        layers += [k.layers.Flatten(name="flatten")]
    layers.append(k.layers.Dense(spec.hidden, activation=spec.activation, name="dense"))
    layers.append(k.layers.Dense(classes, name="prediction"))
    if k.mixed_precision.global_policy().compute_dtype != "float32":
        layers.append(k.layers.Activation("linear", dtype="float32", name="float32_output"))
    return k.Sequential(layers, name=name)
