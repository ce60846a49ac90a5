"""Optimizers as explicit assign ops, applying Keras 3's update rules in a TF1 graph.

`tf.compat.v1.train.RMSPropOptimizer` is not Keras's RMSprop (its mean-square accumulator
starts at 1, Keras's at 0; epsilon 1e-10 vs 1e-7), so the defaults here write Keras's
rules out: gradients from `tf.gradients`, slots as non-trainable variables under
``optimizer/<variable>/<slot>``, updates as assign ops. The TF1 optimizers remain
available by name (``tf1_rmsprop``, ``tf1_momentum``, ``tf1_adam``).
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from common.constants import (RMSPROP_EPSILON, RMSPROP_LEARNING_RATE, RMSPROP_MOMENTUM,
                                     RMSPROP_RHO)
from data_pipeline.errors import DataError

v1 = tf.compat.v1
OPTIMIZERS = ("rmsprop", "sgd", "adam", "tf1_rmsprop", "tf1_momentum", "tf1_adam")
DEFAULT_LEARNING_RATE = {"rmsprop": RMSPROP_LEARNING_RATE, "sgd": 0.01, "adam": 1e-3,
                         "tf1_rmsprop": RMSPROP_LEARNING_RATE, "tf1_momentum": 0.01, "tf1_adam": 1e-3}


def _slot(var: tf.Variable, name: str) -> tf.Variable:
    with v1.variable_scope("optimizer", reuse=v1.AUTO_REUSE):
        return v1.get_variable(f"{var.op.name}/{name}", var.shape, tf.float32, v1.zeros_initializer(),
                               trainable=False)


def _rmsprop(g, var, lr, step, rho=RMSPROP_RHO, momentum=RMSPROP_MOMENTUM, epsilon=RMSPROP_EPSILON):
    g = tf.convert_to_tensor(g)  # Keras's rule decays every row's velocity: dense by definition
    velocity = _slot(var, "velocity")
    new_velocity = v1.assign(velocity, rho * velocity + (1 - rho) * tf.square(g))
    increment = lr * g / tf.sqrt(new_velocity + epsilon)
    if momentum > 0:
        m = _slot(var, "momentum")
        return v1.assign_sub(var, v1.assign(m, momentum * m + increment))
    return v1.assign_sub(var, increment)


def _sgd(g, var, lr, step, momentum=0.0, nesterov=False):
    if momentum == 0:
        if isinstance(g, tf.IndexedSlices):  # an embedding's rows: only they change, as in Keras
            return v1.scatter_sub(var, g.indices, g.values * lr)
        return v1.assign_sub(var, g * lr)
    g = tf.convert_to_tensor(g)
    m = _slot(var, "momentum")
    new_m = v1.assign(m, m * momentum - g * lr)
    return v1.assign_add(var, new_m * momentum - g * lr if nesterov else new_m)


def _adam(g, var, lr, step, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    g = tf.convert_to_tensor(g)
    local_step = tf.cast(step + 1, tf.float32)
    alpha = lr * tf.sqrt(1 - tf.pow(beta_2, local_step)) / (1 - tf.pow(beta_1, local_step))
    m, v = _slot(var, "momentum"), _slot(var, "velocity")
    new_m = v1.assign_add(m, (g - m) * (1 - beta_1))
    new_v = v1.assign_add(v, (tf.square(g) - v) * (1 - beta_2))
    return v1.assign_sub(var, new_m * alpha / (tf.sqrt(new_v) + epsilon))


_KERAS_RULES = {"rmsprop": _rmsprop, "sgd": _sgd, "adam": _adam}


def _tf1_optimizer(name: str, lr, hyper: dict):
    if name == "tf1_rmsprop":
        return v1.train.RMSPropOptimizer(lr, decay=hyper.get("rho", 0.9), momentum=hyper.get("momentum", 0.0),
                                         epsilon=hyper.get("epsilon", 1e-10))
    if name == "tf1_momentum":
        return v1.train.MomentumOptimizer(lr, hyper.get("momentum", 0.9))
    return v1.train.AdamOptimizer(lr, epsilon=hyper.get("epsilon", 1e-8))


def _all_before_any(grads: list, var_list: Sequence[tf.Variable]) -> list:
    """On the TF1 runtime: the gradients, each available only once all are computed (TF1's
    GATE_GRAPH). A read of a reference variable aliases its buffer, and an update op runs as soon
    as its own gradient exists: without the gate the assign to `prediction/kernel` can run before
    the backward pass of the layers below has read that kernel, and their gradients then use the
    updated weights (measured: 2-42% of the first SGD update of the VGG16 head's lower layers).
    Resource variables (the TF2 runtime) need no gate: a read never sees an update that depends
    on it, and the gate would only keep updates from overlapping the backward pass."""
    if not any(var.op.type in ("VariableV2", "Variable") for var in var_list):
        return grads
    present = [g for g in grads if g is not None]
    gated = iter(tf.tuple(present)) if present else iter(())
    return [next(gated) if g is not None else None for g in grads]


def minimize(loss: tf.Tensor, var_list: Sequence[tf.Variable], learning_rate: tf.Tensor,
             optimizer: str = "rmsprop", loss_scale: float = 1.0, **hyper) -> tf.Operation:
    """Train op: one update of `var_list` on `loss`, run after every op in ``UPDATE_OPS``
    (the batch-norm moving averages), incrementing the global step.

    ``loss_scale`` multiplies the loss before differentiation and divides the gradients
    after (static loss scaling for float16).
    """
    if optimizer not in OPTIMIZERS:
        raise DataError(f"unknown optimizer {optimizer!r}: expected one of {OPTIMIZERS}")
    step = v1.train.get_or_create_global_step()
    update_ops = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        grads = tf.gradients(loss * loss_scale if loss_scale != 1.0 else loss, list(var_list))
        if loss_scale != 1.0:
            grads = [g / loss_scale if g is not None else None for g in grads]
        grads = _all_before_any(grads, var_list)
        if optimizer.startswith("tf1_"):
            return _tf1_optimizer(optimizer, learning_rate, hyper).apply_gradients(
                list(zip(grads, var_list)), global_step=step)
        rule = _KERAS_RULES[optimizer]
        updates = [rule(tf.cast(g, tf.float32), var, learning_rate, step, **hyper)
                   for g, var in zip(grads, var_list) if g is not None]
        with tf.control_dependencies(updates):
            return v1.assign_add(step, 1).op
