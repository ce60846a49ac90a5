"""Keras optimizers under the names graph_api uses, with the same default learning rates."""
from __future__ import annotations

import keras

from model_contract.constants import (
    RMSPROP_EPSILON,
    RMSPROP_LEARNING_RATE,
    RMSPROP_MOMENTUM,
    RMSPROP_RHO,
)
from plumbing.errors import UserError

OPTIMIZERS = ("rmsprop", "sgd", "adam")
DEFAULT_LEARNING_RATE = {"rmsprop": RMSPROP_LEARNING_RATE, "sgd": 0.01, "adam": 1e-3}


def make_optimizer(name: str, learning_rate: float | None = None, optimizers=None, **options):
    """A fresh Keras optimizer; `options` are passed through (e.g. momentum for sgd).
    ``optimizers``: the namespace to build from (default `keras.optimizers`; e.g.
    `tf_keras.optimizers.legacy` for Keras 2), so every Keras gets the same rule and defaults."""
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r} for keras_api: expected one of {OPTIMIZERS} "
                        "(the tf1_* optimizers exist only in graph_api)")
    lr = learning_rate if learning_rate is not None else DEFAULT_LEARNING_RATE[name]
    optimizers = optimizers or keras.optimizers
    if name == "rmsprop":
        options = {"rho": RMSPROP_RHO, "momentum": RMSPROP_MOMENTUM, "epsilon": RMSPROP_EPSILON, **options}
        return optimizers.RMSprop(learning_rate=lr, **options)
    if name == "sgd":
        return optimizers.SGD(learning_rate=lr, **options)
    return optimizers.Adam(learning_rate=lr, **options)
