"""Shared by the equivalence tests and docs/probes: one model, one batch, and one or more
training steps run by each API from the same weights."""
from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

import graph_api
import keras_api
from graph_api.graph import GraphConfig, build_train_graph
from keras_api.weights import (
    graph_model_variables,
    graph_to_keras,
    keras_to_graph,
    keras_variables,
)

v1 = tf.compat.v1
CLASSES = 5


def keras_model(name: str, size: int) -> keras.Model:
    """The model `name` at (size, size, 3), CLASSES classes, seeded: every call gives the same weights."""
    keras.utils.set_random_seed(0)
    return keras_api.build_model(name, (size, size, 3), CLASSES, weights="none")


def batch(size: int, n: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size, 3) float32 in [0, 1) and (n,) int32 labels."""
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size, 3), dtype=np.float32), rng.integers(0, CLASSES, n).astype(np.int32)


def snapshot(model: keras.Model) -> dict[str, np.ndarray]:
    return {k: np.array(v.numpy()) for k, v in keras_variables(model).items()}


def trainable_model_variables(model_variables) -> dict:
    """{contract name: variable} of the trainable ones among the graph's model variables; matched
    by reference (`in` on a list of variables compares them one by one, slowly)."""
    trainable = {v.ref() for v in v1.trainable_variables()}
    return {k: v for k, v in graph_model_variables(model_variables).items() if v.ref() in trainable}


def graph_logits(name: str, size: int, model: keras.Model, x: np.ndarray, training: bool = False,
                 **options) -> np.ndarray:
    """graph_api's float32 logits (B, CLASSES) for `x` with `model`'s weights; `options` go to
    `graph_api.build_model` (precision, preprocessing, data_format, ...)."""
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, (None, size, size, 3))
        logits = graph_api.build_model(name, images, training, CLASSES, **options)
        variables, init = v1.global_variables(), v1.global_variables_initializer()
    assert logits.dtype == tf.float32
    session = v1.Session(graph=graph)  # not as a context manager: that would make the graph default
    session.run(init)
    keras_to_graph(model, session, variables)
    got = session.run(logits, {images: x})
    session.close()
    return got


def _train_graph(name: str, size: int, optimizer: str, learning_rate: float, data_format: str, hyper: dict):
    """graph_api's training graph for one step from fed batches, with the gradients of its loss
    -> (TrainGraph, dropout-off feeds, {contract name: trainable variable}, {contract name:
    gradient}). No initialiser yet: a caller may add variables first."""
    config = GraphConfig(model=name, image_shape=(size, size, 3), num_classes=CLASSES, feed="feed_dict",
                         optimizer=optimizer, optimizer_options=hyper, learning_rate=learning_rate,
                         data_format=data_format)
    g = build_train_graph(config)
    with g.graph.as_default():
        no_dropout = {op.outputs[0]: 0.0 for op in g.graph.get_operations() if op.name.endswith("/rate")}
        trainable = trainable_model_variables(g.model_variables)
        grad_ops = dict(zip(trainable, tf.gradients(g.loss, list(trainable.values()))))
    return g, no_dropout, trainable, grad_ops


def graph_steps(name: str, size: int, model: keras.Model, optimizer: str, batches, learning_rate: float = 1e-3,
                gradients: bool = False, data_format: str = "NHWC", independent: bool = False, **hyper):
    """Train steps of graph_api from `model`'s weights (dropout off) -> the variables after them as
    {contract name: array}; with ``gradients``, also the gradients of the first batch's loss
    at the starting weights, fetched on their own before any step. ``independent``: one step
    per batch, each from the starting weights (a slot-free optimizer) -> one such dict each."""
    g, no_dropout, _, grad_ops = _train_graph(name, size, optimizer, learning_rate, data_format, hyper)
    with g.graph.as_default():
        init = v1.global_variables_initializer()
    result = keras.models.clone_model(model)
    session = v1.Session(graph=g.graph)
    session.run(init)
    keras_to_graph(model, session, g.model_variables)
    feeds = [{g.images: x, g.labels: y, **no_dropout} for x, y in batches]
    grads = session.run(grad_ops, feeds[0]) if gradients else None
    each = []
    for feed in feeds:
        if independent:
            keras_to_graph(model, session, g.model_variables)
        session.run(g.train_op, feed)
        if independent:
            graph_to_keras(session, g.model_variables, result)
            each.append(snapshot(result))
    if not independent:
        graph_to_keras(session, g.model_variables, result)
    session.close()
    if independent:
        return each
    return (snapshot(result), grads) if gradients else snapshot(result)


def graph_rule_steps(name: str, size: int, model: keras.Model, rules: dict, x_y, learning_rate: float = 1e-3):
    """One update per optimizer rule in `rules` ({label: (graph optimizer, options)}) from
    `model`'s weights on batch `x_y`, in one graph -> ({label: variables after its update},
    the gradients at the starting weights). The first rule's update is the training graph's own
    step (forward, backward, update); the others apply graph_api's rule to those gradients, fed,
    each with its own slots and the global step restarted, from the same weights."""
    from graph_api.optimizers import apply_gradients
    (first, (optimizer, hyper)), *others = rules.items()
    g, no_dropout, trainable, grad_ops = _train_graph(name, size, optimizer, learning_rate, "NHWC", hyper)
    with g.graph.as_default():
        fed = {k: v1.placeholder(tf.float32, v.shape) for k, v in trainable.items()}
        updates = {}
        for label, (rule, options) in others:
            with v1.variable_scope(label):  # slots of its own
                updates[label] = apply_gradients([(list(fed.values()), list(trainable.values()))],
                                                 tf.constant(learning_rate), rule, **options)
        restart = v1.assign(v1.train.get_global_step(), 0)
        init = v1.global_variables_initializer()
    result = keras.models.clone_model(model)  # each rule's weights pass through it to a snapshot
    session = v1.Session(graph=g.graph)
    session.run(init)
    keras_to_graph(model, session, g.model_variables)
    feed = {g.images: x_y[0], g.labels: x_y[1], **no_dropout}
    grads = session.run(grad_ops, feed)
    session.run(g.train_op, feed)
    graph_to_keras(session, g.model_variables, result)
    out = {first: snapshot(result)}
    for label, update in updates.items():
        keras_to_graph(model, session, g.model_variables)
        session.run(restart)
        session.run(update, {fed[k]: grads[k] for k in fed})
        graph_to_keras(session, g.model_variables, result)
        out[label] = snapshot(result)
    session.close()
    return out, grads


def keras_steps(model: keras.Model, optimizer: keras.optimizers.Optimizer, batches, eager: bool = True,
                fit: bool = False) -> dict[str, np.ndarray]:
    """Keras train steps on `model` (changed in place) -> its variables after them. ``eager``:
    ``run_eagerly``; else the compiled `tf.function` step, through `fit` when ``fit``."""
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=eager)
    for x, y in batches:
        if fit:
            model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
        else:
            model.train_on_batch(x, y)
    return snapshot(model)


@contextlib.contextmanager
def grappler_options(**options: bool):
    """Grappler's graph rewrites set as given for `tf.function`s traced inside, restored after."""
    before = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options(options)
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({k: before.get(k, True) for k in options})
