"""The graph_api modes as step functions: `graph` (in-graph tf.data), `graph-feed`
(feed_dict from numpy, the textbook style), `graph-fused-bn` (fused_batch_norm), all on the
TF1 runtime (the worker calls `use_tf1_runtime`), and `graph-v2`: `graph`'s graph and Session
in a process that keeps TF2 semantics.

Each `step()` is one `Session.run`, which returns only when the step's work is done, so
per-step times cannot be flattered by asynchronous dispatch.
"""
from __future__ import annotations

import tensorflow as tf

from graph_api import build_model
from graph_api.graph import GraphConfig, build_train_graph, loss_and_accuracy, placeholders

from .config import BenchConfig
from .inputs import numpy_batches, train_dataset
from .steps import Step, scatter_ops

v1 = tf.compat.v1
XLA_OPS = ("_XlaRun", "_XlaCompile", "XlaLaunch")  # what a compiled cluster runs as


def session_config(config: BenchConfig) -> v1.ConfigProto:
    """Default thread pools (as eager Keras uses), XLA auto-clustering when asked."""
    proto = v1.ConfigProto()
    if config.xla:
        proto.graph_options.optimizer_options.global_jit_level = v1.OptimizerOptions.ON_1
    return proto


def _graph_config(config: BenchConfig) -> GraphConfig:
    return GraphConfig(model=config.model, image_shape=config.input_shape(), num_classes=config.classes(),
                       precision=config.precision, data_format=config.data_format,
                       bn_mode="fused" if config.mode == "graph-fused-bn" else "keras", optimizer=config.optimizer,
                       feed="feed_dict" if config.mode == "graph-feed" else "dataset", seed=config.seed)


def _train_step(config: BenchConfig):
    """(graph, fetches, feed function, iterator initializer or None, global step) of one
    training step, or for task "gradients" of forward + backward without the update."""
    g = build_train_graph(_graph_config(config), batch_size=config.batch,
                          train_dataset=lambda: train_dataset(config))
    with g.graph.as_default():
        if config.task == "gradients":
            gradients = [x for x in tf.gradients(g.loss, v1.trainable_variables()) if x is not None]
            with tf.control_dependencies(gradients):  # every gradient computed, none applied
                fetches = [tf.identity(g.loss), g.accuracy]
        else:
            fetches = [g.train_op, g.loss, g.accuracy]  # what Keras fit computes each step
        global_step = v1.train.get_global_step()
    if config.mode == "graph-feed":
        batches = numpy_batches(config)
        return g.graph, fetches, lambda: dict(zip((g.images, g.labels), next(batches))), None, global_step
    return g.graph, fetches, lambda: {}, g.train_init, global_step


def _inference_step(config: BenchConfig):
    """As `_train_step`, for the inference tower alone: float32 logits (as the Keras model
    returns them), or for task "evaluate" the batch's loss and accuracy (what `model.evaluate`
    computes per batch)."""
    graph = tf.Graph()
    with graph.as_default():
        init = None
        if config.mode == "graph-feed":
            images, labels = placeholders(_graph_config(config))
        else:
            iterator = v1.data.make_initializable_iterator(train_dataset(config))
            images, labels = iterator.get_next()
            init = iterator.initializer
        logits = build_model(config.model, images, False, config.classes(), **_graph_config(config).model_options())
        fetches = list(loss_and_accuracy(logits, labels)) if config.task == "evaluate" else [logits]
    if config.mode == "graph-feed":
        batches = numpy_batches(config)
        if config.task == "evaluate":
            return graph, fetches, lambda: dict(zip((images, labels), next(batches))), init, None
        return graph, fetches, lambda: {images: next(batches)[0]}, init, None
    return graph, fetches, lambda: {}, init, None


def _compiled_clusters(session: v1.Session, fetches, feed) -> int:
    """Ops of XLA clusters that one traced step really ran (0: XLA compiled nothing)."""
    options = v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE)
    metadata = v1.RunMetadata()
    session.run(fetches, feed(), options=options, run_metadata=metadata)
    return sum(any(op in node.node_name or op in node.timeline_label for op in XLA_OPS)
               for device in metadata.step_stats.dev_stats for node in device.node_stats)


def make_graph_step(config: BenchConfig) -> Step:
    """A graph mode's synchronous step; its facts (read after the timed steps): updates applied,
    XLA clusters run in one traced step, the Session's thread pools."""
    graph, fetches, feed, init, global_step = (_inference_step if config.task in ("inference", "evaluate")
                                               else _train_step)(config)
    proto = session_config(config)
    with graph.as_default():
        session = v1.Session(graph=graph, config=proto)
        session.run(v1.global_variables_initializer())
        if init is not None:
            session.run(init)

    def facts() -> dict:
        updates = int(session.run(global_step)) if global_step is not None else 0
        clusters = _compiled_clusters(session, fetches, feed)
        return {"updates_applied": updates if config.task == "train" else 0, "xla_effective": clusters > 0,
                "sparse_update_ops": scatter_ops(graph),
                "xla_cluster_ops": clusters, "intra_op_threads": proto.intra_op_parallelism_threads,
                "inter_op_threads": proto.inter_op_parallelism_threads}
    return Step(lambda: session.run(fetches, feed()), session.close, facts)
