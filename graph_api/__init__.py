"""VGG16-Cell-Transfer and ResNet50 as TensorFlow 1.x static graphs (`tf.compat.v1`).

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
