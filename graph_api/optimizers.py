"""Optimizers as explicit assign ops, applying Keras 3's update rules in a TF1 graph.

`tf.compat.v1.train.RMSPropOptimizer` is not Keras's RMSprop (its mean-square accumulator
starts at 1, Keras's at 0; epsilon 1e-10 vs 1e-7), so the defaults here write Keras's
rules out: gradients from `tf.gradients`, slots as non-trainable resource variables under
``optimizer/<variable>/<slot>``, updates as assign ops. The TF1 optimizers remain
available by name (``tf1_rmsprop``, ``tf1_momentum``, ``tf1_adam``).
"""
from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from model_contract.constants import (
    LOSS_SCALE_GROWTH_STEPS,
    LOSS_SCALE_INITIAL,
    RMSPROP_EPSILON,
    RMSPROP_LEARNING_RATE,
    RMSPROP_MOMENTUM,
    RMSPROP_RHO,
)
from plumbing.errors import UserError

v1 = tf.compat.v1
OPTIMIZERS = ("rmsprop", "sgd", "adam", "tf1_rmsprop", "tf1_momentum", "tf1_adam")
DEFAULT_LEARNING_RATE = {"rmsprop": RMSPROP_LEARNING_RATE, "sgd": 0.01, "adam": 1e-3,
                         "tf1_rmsprop": RMSPROP_LEARNING_RATE, "tf1_momentum": 0.01, "tf1_adam": 1e-3}


def _slot(var: tf.Variable, name: str) -> tf.Variable:
    """`var`'s optimizer slot `name`, a resource variable on either runtime: a slot is rewritten
    whole every step, and the TF1 runtime's `Assign` copies the new value into a reference
    variable's buffer where `AssignVariableOp` adopts the value's own (measured on the VGG16 head,
    batch 32: the copies took 8 of a 49 ms step). The model's variables stay as the runtime makes
    them; their updates (`AssignSub`) are in place on both."""
    with v1.variable_scope("optimizer", reuse=v1.AUTO_REUSE):
        return v1.get_variable(f"{var.op.name}/{name}", var.shape, tf.float32, v1.zeros_initializer(),
                               trainable=False, use_resource=True)


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
# The slots each rule reads: made before a dynamic loss scale's `cond`, because a variable cannot
# be created inside a conditional branch.
_SLOT_NAMES = {"rmsprop": lambda h: ("velocity",) + (("momentum",) if h.get("momentum", RMSPROP_MOMENTUM) > 0 else ()),
               "sgd": lambda h: ("momentum",) if h.get("momentum", 0.0) > 0 else (),
               "adam": lambda h: ("momentum", "velocity")}


def _tf1_optimizer(name: str, lr, hyper: dict):
    if name == "tf1_rmsprop":
        return v1.train.RMSPropOptimizer(lr, decay=hyper.get("rho", 0.9), momentum=hyper.get("momentum", 0.0),
                                         epsilon=hyper.get("epsilon", 1e-10))
    if name == "tf1_momentum":
        return v1.train.MomentumOptimizer(lr, hyper.get("momentum", 0.9))
    return v1.train.AdamOptimizer(lr, epsilon=hyper.get("epsilon", 1e-8))


# Ops whose output shares their input's buffer (no copy): a read through them still reads the
# variable's memory, so it counts as a read of the variable.
_FORWARDING = frozenset({"Identity", "RefIdentity", "IdentityN", "Snapshot", "StopGradient", "PreventGradient",
                         "Reshape", "Squeeze", "ExpandDims", "Bitcast", "Switch", "RefSwitch", "Merge", "RefMerge",
                         "Enter", "RefEnter", "Exit", "RefExit"})


def _is_reference(var: tf.Variable) -> bool:
    return var.op.type in ("VariableV2", "Variable")


def _step_ops(tensors: list) -> set:
    """Every op the tensors depend on (inputs and control inputs): what one step runs to make them."""
    frontier = [t.op for g in tensors for t in ((g.values, g.indices) if isinstance(g, tf.IndexedSlices) else (g,))]
    seen = set()
    while frontier:
        op = frontier.pop()
        if op not in seen:
            seen.add(op)
            frontier += [t.op for t in op.inputs] + list(op.control_inputs)
    return seen


def variable_readers(var: tf.Variable, step: set) -> list[tf.Operation]:
    """The ops of `step` that read `var`'s buffer: its consumers, and theirs through ops that hand
    the buffer on (`_FORWARDING`)."""
    frontier, seen, readers = [var.op.outputs[0]], set(), []
    while frontier:
        for op in frontier.pop().consumers():
            if op in seen or op not in step:
                continue
            seen.add(op)
            readers.append(op)
            if op.type in _FORWARDING:
                frontier += op.outputs
    return readers


def _after_its_readers(grads: list, var_list: Sequence[tf.Variable]) -> list:
    """On the TF1 runtime: each variable's gradient, available only once every op of the step that
    reads that variable has run. A read of a reference variable aliases its buffer and an update
    runs as soon as its inputs exist, so without the gate the assign to `prediction/kernel` can run
    before the backward op that multiplies by that kernel, and the layers below then get gradients
    of the updated weights (measured: 2-42% of the first SGD update of the VGG16 head's lower
    layers). Gating per variable, not on all gradients at once (TF1's GATE_GRAPH), lets the
    update of an upper layer overlap the backward pass of the layers below it.
    Resource variables (the TF2 runtime) need no gate: a read never sees an update that depends
    on it."""
    if not any(_is_reference(var) for var in var_list):
        return grads
    step = _step_ops([g for g in grads if g is not None])
    gated = []
    for g, var in zip(grads, var_list):
        readers = variable_readers(var, step) if g is not None and _is_reference(var) else []
        gated.append(tf.tuple([g], control_inputs=readers)[0] if readers else g)
    return gated


def _unscale(g, scale):
    if g is None:
        return None
    if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(g.values / tf.cast(scale, g.values.dtype), g.indices, g.dense_shape)
    return g / tf.cast(scale, g.dtype)


def _all_finite(grads: list) -> tf.Tensor:
    values = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads if g is not None]
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in values])


def loss_scale_variables() -> tuple[tf.Variable, tf.Variable]:
    """(scale float32, finite steps in a row int64) of the dynamic loss scale, under ``loss_scale/``."""
    # An absolute scope: towers built under a replica's scope share the one scale.
    with v1.variable_scope(v1.VariableScope(v1.AUTO_REUSE, name="loss_scale")):
        scale = v1.get_variable("scale", (), tf.float32, v1.constant_initializer(LOSS_SCALE_INITIAL),
                                trainable=False)
        good = v1.get_variable("good_steps", (), tf.int64, v1.zeros_initializer(), trainable=False)
    return scale, good


def _apply(replicas: list, learning_rate, optimizer: str, step, hyper: dict) -> tf.Operation:
    """The update of every replica's variables (one replica unless the variables are copied per
    device) from its gradients, then one step increment."""
    updates = []
    if optimizer.startswith("tf1_"):
        tf1 = _tf1_optimizer(optimizer, learning_rate, hyper)
        for grads, var_list in replicas:
            with tf.device(var_list[0].device):
                updates.append(tf1.apply_gradients([(g, v) for g, v in zip(grads, var_list) if g is not None]))
    else:
        rule = _KERAS_RULES[optimizer]
        for grads, var_list in replicas:
            with tf.device(var_list[0].device):  # each copy's update on its own device
                updates += [rule(tf.cast(g, tf.float32), var, learning_rate, step, **hyper)
                            for g, var in zip(grads, var_list) if g is not None]
    with tf.control_dependencies(updates):
        return v1.assign_add(step, 1).op


def _dynamic_update(replicas: list, learning_rate, optimizer: str, step, hyper: dict,
                    growth_steps: int) -> tf.Operation:
    """Keras's LossScaleOptimizer in the graph: finite gradients are unscaled and applied (the
    step counts) and the scale doubles after `growth_steps` such steps in a row; otherwise
    nothing is applied, the step does not count, and the scale halves."""
    if optimizer.startswith("tf1_"):
        raise UserError(f"optimizer {optimizer!r}: dynamic loss scaling applies Keras's rules; "
                        "use rmsprop, sgd or adam with float16")
    scale, good = loss_scale_variables()
    for grads, var_list in replicas:
        for var, g in zip(var_list, grads):
            if g is not None:
                with tf.device(var.device):
                    for name in _SLOT_NAMES[optimizer](hyper):
                        _slot(var, name)

    def finite_step():
        unscaled = [([_unscale(g, scale) for g in grads], var_list) for grads, var_list in replicas]
        applied = _apply(unscaled, learning_rate, optimizer, step, hyper)
        with tf.control_dependencies([applied]):
            grow = tf.equal(good, growth_steps - 1)
            changed = [v1.assign(scale, tf.where(grow, scale * 2.0, scale)),
                       v1.assign(good, tf.where(grow, tf.constant(0, tf.int64), good + 1))]
        with tf.control_dependencies(changed):
            return tf.constant(True)

    def skipped_step():
        with tf.control_dependencies([v1.assign(scale, scale * 0.5), v1.assign(good, 0)]):
            return tf.constant(False)

    return v1.cond(_all_finite([g for grads, _ in replicas for g in grads]), finite_step, skipped_step).op


def gradients(loss: tf.Tensor, var_list: Sequence[tf.Variable], loss_scale: float | str = 1.0) -> list:
    """d loss / d var for each of `var_list` (None where the loss does not depend on it), for
    `apply_gradients`. A static `loss_scale` multiplies the loss and is divided out here; with
    "dynamic" the gradients stay multiplied by the loss-scale variable until the update has
    checked they are finite."""
    if loss_scale == "dynamic":
        scale = loss_scale_variables()[0]
        return tf.gradients(loss * tf.cast(scale, loss.dtype), list(var_list))
    if loss_scale != 1.0:
        return [_unscale(g, loss_scale) for g in tf.gradients(loss * loss_scale, list(var_list))]
    return tf.gradients(loss, list(var_list))


def apply_gradients(replicas: Sequence[tuple[list, Sequence[tf.Variable]]], learning_rate: tf.Tensor,
                    optimizer: str = "rmsprop", loss_scale: float | str = 1.0,
                    growth_steps: int = LOSS_SCALE_GROWTH_STEPS, **hyper) -> tf.Operation:
    """Train op: one update from `gradients`' output. `replicas` holds (gradients, variables)
    pairs: one pair, or one per device when each device keeps its own copy of the variables
    (each copy then takes the same, already averaged, gradients). The global step counts once."""
    if optimizer not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {optimizer!r}: expected one of {OPTIMIZERS}")
    step = v1.train.get_or_create_global_step()
    flat = _after_its_readers([g for grads, _ in replicas for g in grads],
                              [v for _, var_list in replicas for v in var_list])
    gated, start = [], 0
    for grads, var_list in replicas:
        gated.append((flat[start:start + len(grads)], list(var_list)))
        start += len(grads)
    if loss_scale == "dynamic":
        return _dynamic_update(gated, learning_rate, optimizer, step, hyper, growth_steps)
    return _apply(gated, learning_rate, optimizer, step, hyper)


def minimize(loss: tf.Tensor, var_list: Sequence[tf.Variable], learning_rate: tf.Tensor,
             optimizer: str = "rmsprop", loss_scale: float | str = 1.0,
             growth_steps: int = LOSS_SCALE_GROWTH_STEPS, **hyper) -> tf.Operation:
    """Train op: one update of `var_list` on `loss`, run after every op in ``UPDATE_OPS``
    (the batch-norm moving averages), incrementing the global step.

    ``loss_scale`` multiplies the loss before differentiation and divides the gradients after:
    a number is a static scale; "dynamic" is float16's dynamic scaling as Keras 3 does it
    (`_dynamic_update`, Keras's defaults; `growth_steps` finite steps double the scale).
    """
    with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
        grads = gradients(loss, var_list, loss_scale)
        return apply_gradients([(grads, var_list)], learning_rate, optimizer, loss_scale, growth_steps, **hyper)
