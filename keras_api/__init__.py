"""VGG16-Cell-Transfer and ResNet50 in high-level Keras (keras.applications, fit, callbacks).

What other packages call: `build_model` (Keras 3, or Keras 2 given `keras_module=tf_keras`),
`make_optimizer` (the graph's update rules with Keras's defaults), the distribution strategies
(`make_strategy`, `strategy_scope`, `shard_by_batch`, `build_before_fit`) and `save_model_atomic`.
Each is imported on first use, so the command line starts quickly and its log level can be set
before TensorFlow loads.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "build_model": ("model", "build_model"),
    "make_optimizer": ("optimizers", "make_optimizer"),
    "make_strategy": ("distribute", "make_strategy"), "strategy_scope": ("distribute", "scope"),
    "shard_by_batch": ("distribute", "shard_by_batch"), "build_before_fit": ("distribute", "build_before_fit"),
    "save_model_atomic": ("weights", "save_model_atomic"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
