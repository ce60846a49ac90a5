"""ResNet50 (textbook P3.36): `keras.applications.ResNet50(weights=None, classes=...)`."""
from __future__ import annotations

import keras


def resnet50(input_shape=(224, 224, 3), num_classes: int = 1108, *, logits: bool = False,
             **_unused) -> keras.Model:
    """(B, S, S, 3), S >= 32 -> (B, num_classes); 25,858,004 parameters at 1108 classes.

    Under a mixed precision policy the output is cast to float32 (a parameter-free layer),
    as Keras's mixed-precision guide recommends for the softmax.
    """
    model = keras.applications.ResNet50(weights=None, input_shape=tuple(input_shape), classes=num_classes,
                                        classifier_activation=None if logits else "softmax")
    if model.output.dtype == "float32":
        return model
    output = keras.layers.Activation("linear", dtype="float32", name="float32_output")(model.output)
    return keras.Model(model.input, output, name=model.name)
