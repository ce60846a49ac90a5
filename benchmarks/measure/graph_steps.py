"""The graph_api modes as step functions: `graph` (in-graph tf.data), `graph-feed`
(feed_dict from numpy, the textbook style), `graph-fused-bn` (fused_batch_norm), all on the
TF1 runtime (the worker calls `use_tf1_runtime`), and `graph-v2`: `graph`'s graph and Session
in a process that keeps TF2 semantics. On several devices `graph` builds one tower per device
with the variables on the CPU and `graph-replicated` a copy of them per device; on several
workers `graph` is one worker of a between-graph replicated run (graph_api.cluster_loop).

Each `step()` is one `Session.run`, which returns only when the step's work is done, so
per-step times cannot be flattered by asynchronous dispatch.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from benchmarks.config import BenchConfig
from benchmarks.measure.batches import numpy_batches, train_dataset
from benchmarks.measure.replicas import Placement
from benchmarks.measure.timing import Step, graph_compute_dtypes, graph_op_types, kernel_facts
from benchmarks.modes import Feed
from graph_api import (
    GraphConfig,
    build_model,
    build_train_graph,
    executed_devices,
    loss_and_accuracy,
    placeholders,
    start_updates,
    wait_for_chief,
    worker_session,
)

v1 = tf.compat.v1
XLA_OPS = ("_XlaRun", "_XlaCompile", "XlaLaunch")  # what a compiled cluster runs as
DEVICE = re.compile(r"device:(CPU|GPU):(\d+)")  # e.g. "/job:localhost/replica:0/task:0/device:GPU:0"


def session_config(config: BenchConfig) -> v1.ConfigProto:
    """Default thread pools (as eager Keras uses), XLA auto-clustering when asked, and the
    logical CPU devices the process configured (a Session given a config sees one CPU unless
    told)."""
    proto = v1.ConfigProto(device_count={"CPU": len(tf.config.list_logical_devices("CPU"))})
    if config.xla:
        proto.graph_options.optimizer_options.global_jit_level = v1.OptimizerOptions.ON_1
    return proto


def _graph_config(config: BenchConfig, devices: tuple = ()) -> GraphConfig:
    return GraphConfig(model=config.model, image_shape=config.input_shape(), num_classes=config.classes(),
                       precision=config.precision, data_format=config.data_format,
                       bn_mode=config.spec.bn.name, optimizer=config.optimizer,
                       feed=config.spec.feed.value, seed=config.seed,
                       devices=devices,
                       variable_update=config.spec.variable_update.name)


@dataclass(frozen=True)
class StepParts:
    """What one `Session.run` of a graph mode needs."""
    graph: tf.Graph
    fetches: list
    feed: Callable[[], dict]              # the next step's feed_dict ({} for in-graph input)
    init: tf.Operation | None = None      # the input iterator's initializer
    global_step: tf.Variable | None = None  # counts applied updates (training only)
    sync: object | None = None            # a cluster worker's synchronisation (graph_api.distribute)


def _train_step(config: BenchConfig, placement: Placement) -> StepParts:
    """The parts of one training step, or for a task that applies no update (gradients) of
    forward + backward without it."""
    g = build_train_graph(_graph_config(config, placement.devices), batch_size=config.batch,
                          train_dataset=lambda: train_dataset(config), cluster=placement.cluster,
                          evaluation=False)  # fit is timed without validation data
    with g.graph.as_default():
        if not config.task_spec.updates:
            gradients = [x for x in tf.gradients(g.loss, v1.trainable_variables()) if x is not None]
            with tf.control_dependencies(gradients):  # every gradient computed, none applied
                fetches = [tf.identity(g.loss), g.accuracy]
        else:
            fetches = [g.train_op, g.loss, g.accuracy]  # what Keras fit computes each step
        global_step = v1.train.get_global_step()
    if config.spec.feed is Feed.FEED_DICT:
        batches = numpy_batches(config)
        return StepParts(g.graph, fetches, lambda: dict(zip((g.images, g.labels), next(batches))),
                         global_step=global_step)
    return StepParts(g.graph, fetches, lambda: {}, g.train_init, global_step, g.cluster_sync)


def _inference_step(config: BenchConfig) -> StepParts:
    """As `_train_step`, for the inference tower alone: float32 logits (as the Keras model
    returns them), or for a scored task (evaluate) the batch's loss and accuracy (what `model.evaluate`
    computes per batch)."""
    graph = tf.Graph()
    with graph.as_default():
        init = None
        if config.spec.feed is Feed.FEED_DICT:
            images, labels = placeholders(_graph_config(config))
        else:
            iterator = v1.data.make_initializable_iterator(train_dataset(config))
            images, labels = iterator.get_next()
            init = iterator.initializer
        logits = build_model(config.model, images, False, config.classes(), **_graph_config(config).model_options())
        fetches = list(loss_and_accuracy(logits, labels)) if config.task_spec.scored else [logits]
    if config.spec.feed is Feed.FEED_DICT:
        batches = numpy_batches(config)
        if config.task_spec.scored:
            return StepParts(graph, fetches, lambda: dict(zip((images, labels), next(batches))), init)
        return StepParts(graph, fetches, lambda: {images: next(batches)[0]}, init)
    return StepParts(graph, fetches, lambda: {}, init)


def _traced_step(session: v1.Session, fetches, feed) -> tuple[int, int]:
    """One traced step -> (ops of XLA clusters it really ran (0: XLA compiled nothing), the
    CPU or GPU devices that ran part of it)."""
    options = v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE, output_partition_graphs=True)
    metadata = v1.RunMetadata()
    session.run(fetches, feed(), options=options, run_metadata=metadata)
    ran = {m.groups() for m in map(DEVICE.search, executed_devices(metadata)) if m}
    gpus = {index for kind, index in ran if kind == "GPU"}  # the CPU then only feeds them and holds variables
    devices = gpus or {index for kind, index in ran if kind == "CPU"}
    clusters = sum(any(op in node.node_name or op in node.timeline_label for op in XLA_OPS)
                   for device in metadata.step_stats.dev_stats for node in device.node_stats)
    return clusters, len(devices)


def _session(graph: tf.Graph, config: BenchConfig, placement: Placement, init, sync, total: int) -> v1.Session:
    """A Session with the graph's variables ready; in a cluster, the chief initialises them on
    the ps and applies the `total` synchronous updates, the other workers wait for it."""
    cluster = placement.cluster
    with graph.as_default():
        session = worker_session(graph, cluster) if cluster else v1.Session(graph=graph, config=session_config(config))
        if cluster is None or cluster.is_chief:
            session.run(v1.global_variables_initializer())
        if sync is not None and cluster.is_chief:
            start_updates(session, sync, total)
        elif sync is not None:
            wait_for_chief(session, sync, cluster)
        if init is not None:
            session.run(init)
    return session


def make_graph_step(config: BenchConfig, placement: Placement = Placement()) -> Step:
    """A graph mode's synchronous step; its facts (read after the timed steps): updates applied,
    XLA clusters run and devices used in one traced step (the configured workers in a cluster,
    whose steps cannot run alone), the Session's thread pools."""
    parts = _inference_step(config) if config.task_spec.forward_only else _train_step(config, placement)
    graph, fetches, feed, global_step, sync = parts.graph, parts.fetches, parts.feed, parts.global_step, parts.sync
    proto = session_config(config)
    session = _session(graph, config, placement, parts.init, sync, config.warmup + config.steps)

    def facts() -> dict:
        updates = int(session.run(global_step)) if global_step is not None else 0
        clusters, devices = _traced_step(session, fetches, feed) if sync is None \
            else (0, len(placement.cluster.workers))
        return {"updates_applied": updates if config.task_spec.updates else 0, "xla_effective": clusters > 0,
                **kernel_facts(graph_op_types(graph)), "replicas": devices,
                "compute_dtypes": graph_compute_dtypes(graph),
                "xla_cluster_ops": clusters, "intra_op_threads": proto.intra_op_parallelism_threads,
                "inter_op_threads": proto.inter_op_parallelism_threads}

    def close() -> None:
        for done in sync.done_ops if sync is not None else ():
            session.run(done)  # the ps tasks stop once every worker has said so
        session.close()
    return Step(lambda: session.run(fetches, feed()), close, facts)
