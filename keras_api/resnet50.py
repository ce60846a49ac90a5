"""ResNet50 (textbook P3.36): `keras.applications.ResNet50(weights=None, classes=...)`."""
from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import keras


def resnet50(input_shape=(224, 224, 3), num_classes: int = 1108, *,
             input_layers: Sequence[keras.layers.Layer] = (), keras_module: ModuleType = keras,
             **_unused) -> keras.Model:
    """(B, S, S, 3), S >= 32 -> (B, num_classes) float32 logits; 25,858,004 parameters at 1108
    classes.

    Under a mixed precision policy the logits are cast to float32 (a parameter-free layer)
    so that the softmax inside the loss runs in float32, the Keras mixed-precision guide's rule.
    ``keras_module`` builds it in another Keras with the same applications: `tf_keras` (Keras 2).
    """
    k = keras_module
    inputs = k.Input(tuple(input_shape))
    x = inputs
    for layer in input_layers:
        x = layer(x)
    model = k.applications.ResNet50(weights=None, input_tensor=x, classes=num_classes,
                                    classifier_activation=None)
    # Re-wrapped so that the model's input is the single Input tensor, not a list of it.
    model = k.Model(inputs, model.output, name=model.name)
    if model.output.dtype == "float32":
        return model
    output = k.layers.Activation("linear", dtype="float32", name="float32_output")(model.output)
    return k.Model(model.input, output, name=model.name)
