"""VGG16-Cell-Transfer and ResNet50 in high-level Keras (keras.applications, fit, callbacks).

`build_model` imports TensorFlow on first use, so the command line starts quickly and its
log level can be set first.
"""
from __future__ import annotations

__all__ = ["build_model"]


def __getattr__(name: str):
    if name == "build_model":
        from .model import build_model
        return build_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
