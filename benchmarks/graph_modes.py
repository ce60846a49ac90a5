"""The graph_api modes as step functions: `graph` (in-graph tf.data), `graph-feed`
(feed_dict from numpy, the textbook style), `graph-fused-bn` (fused_batch_norm), all on the
TF1 runtime (the worker calls `use_tf1_runtime`), and `graph-v2`: `graph`'s graph and Session
in a process that keeps TF2 semantics.

Each `step()` is one `Session.run`, which returns only when the step's work is done, so
per-step times cannot be flattered by asynchronous dispatch.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from graph_api import build_model
from graph_api.graph import GraphConfig, build_train_graph

from .config import BenchConfig
from .inputs import numpy_batches, train_dataset

v1 = tf.compat.v1


def session_config(config: BenchConfig) -> v1.ConfigProto:
    """Default thread pools (as eager Keras uses), XLA auto-clustering when asked."""
    proto = v1.ConfigProto()
    if config.xla:
        proto.graph_options.optimizer_options.global_jit_level = v1.OptimizerOptions.ON_1
    return proto


def _graph_config(config: BenchConfig, num_classes: int) -> GraphConfig:
    return GraphConfig(model=config.model, image_shape=config.input_shape(), num_classes=num_classes,
                       precision=config.precision, data_format=config.data_format,
                       bn_mode="fused" if config.mode == "graph-fused-bn" else "keras",
                       feed="feed_dict" if config.mode == "graph-feed" else "dataset", seed=config.seed)


def _train_step(config: BenchConfig, num_classes: int):
    """(graph, fetches, feed function, iterator initializer or None) of one training step."""
    g = build_train_graph(_graph_config(config, num_classes), batch_size=config.batch,
                          train_dataset=lambda: train_dataset(config))
    fetches = [g.train_op, g.loss, g.accuracy]  # what Keras fit computes each step
    if config.mode == "graph-feed":
        batches = numpy_batches(config)
        return g.graph, fetches, lambda: dict(zip((g.images, g.labels), next(batches))), None
    return g.graph, fetches, lambda: {}, g.train_init


def _inference_step(config: BenchConfig, num_classes: int):
    """As `_train_step`, for the inference tower alone (float32 logits, as the Keras model
    returns them)."""
    graph = tf.Graph()
    with graph.as_default():
        init = None
        if config.mode == "graph-feed":
            images = v1.placeholder(tf.float32, (None,) + config.input_shape(), name="images")
        else:
            iterator = v1.data.make_initializable_iterator(train_dataset(config))
            images, _ = iterator.get_next()
            init = iterator.initializer
        gc = _graph_config(config, num_classes)
        logits = build_model(config.model, images, False, num_classes, **gc.model_options())
    if config.mode == "graph-feed":
        batches = numpy_batches(config)
        return graph, [logits], lambda: {images: next(batches)[0]}, init
    return graph, [logits], lambda: {}, init


def make_graph_step(config: BenchConfig, num_classes: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """(step, close) for a graph mode: each call of `step` runs one synchronous training
    (or inference) step."""
    graph, fetches, feed, init = (_train_step if config.task == "train" else _inference_step)(config, num_classes)
    with graph.as_default():
        session = v1.Session(graph=graph, config=session_config(config))
        session.run(v1.global_variables_initializer())
        if init is not None:
            session.run(init)
    return (lambda: session.run(fetches, feed())), session.close
