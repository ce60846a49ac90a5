"""Data-parallel towers in one TF1 graph, as tf_cnn_benchmarks builds them: one tower per
device on a slice of the global batch, the same variables (`variable_scope` reuse), gradients
averaged over the towers, one update per step.

Two variable placements (``variable_update``):

- ``parameter_server``: one copy of the variables on the CPU; each tower reads them and
  sends its gradients back, where they are averaged and applied.
- ``replicated``: a copy of every variable on every device (tower i > 0 under ``replica_<i>/``);
  the gradients are all-reduced with TensorFlow's collective ops (`CollectiveReduceV2`, mean),
  and each device applies the same update to its own copy. Copies are kept in step, so
  checkpoints hold tower 0's state only and `sync_op` copies it to the others after any
  initialisation, restore or weight load: a run can resume on another number of devices.

Batch normalisation: each tower normalises with its own slice's statistics (as Keras's
`BatchNormalization` under `MirroredStrategy`, ``synchronized=False``), and the moving averages
are updated from tower 0's slice only, as tf_cnn_benchmarks does. Averaging the towers'
statistics would add a cross-device exchange per layer for estimates that differ only by
sampling noise; with one tower's update, the moving statistics of an N-tower run at global
batch B are those of a one-device run at batch B/N.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from api_runs.devices import device_kind
from graph_api.layers import replica
from graph_api.model import build_model
from graph_api.optimizers import gradients

v1 = tf.compat.v1
_VARIABLE_OPS = ("Variable", "VariableV2", "VarHandleOp")
_COPY = re.compile(r"(^|/)replica_\d+/")
SYNC_SCOPE = "sync/"  # a cluster's coordination state: never checkpointed


@dataclass
class Towers:
    loss: tf.Tensor            # mean of the towers' losses (= the global batch's mean loss)
    accuracy: tf.Tensor
    replicas: list             # [(gradients, variables)] for `apply_gradients`
    update_ops: list           # tower 0's batch-norm updates


def parameter_server_device(compute: str, variables: str = "/cpu:0"):
    """A device function: variables on `variables`, every other op on `compute`."""
    def place(op):
        return variables if op.type in _VARIABLE_OPS else compute
    return place


def tower_device(config, index: int):
    """Where tower `index`'s ops go (a device name or a device function)."""
    device = config.devices[index]
    return device if config.variable_update_spec.copy_per_device else parameter_server_device(device)


def is_replica_copy(variable: tf.Variable) -> bool:
    """A replicated run's per-device copy (of a weight, a statistic or an optimizer slot)."""
    return bool(_COPY.search(variable.op.name))


def build_towers(config, images: tf.Tensor, labels: tf.Tensor, loss_scale: float | str,
                 loss_fn: Callable[[tf.Tensor, tf.Tensor], tuple]) -> Towers:
    """Towers of `config.model` on `config.devices`, each on its slice of (B, ...) `images` and
    (B, ...) `labels` (B divisible by the device count), with each tower's gradients of
    `loss_fn(logits, labels)` -> (mean loss, accuracy)."""
    n = len(config.devices)
    replicated = config.variable_update_spec.copy_per_device
    image_parts, label_parts = tf.split(images, n), tf.split(labels, n)
    losses, accuracies, per_tower = [], [], []
    for i in range(n):
        if replicated and i > 0:
            scope = v1.variable_scope(f"replica_{i}")
        else:
            scope = v1.variable_scope(v1.get_variable_scope(), reuse=i > 0)
        known = set(v1.trainable_variables())
        with v1.device(tower_device(config, i)), scope, v1.name_scope(f"tower_{i}"), replica(i):
            tower_logits = build_model(config.model, image_parts[i], True, config.num_classes,
                                       **config.model_options())
            loss, accuracy = loss_fn(tower_logits, label_parts[i])
            variables = ([v for v in v1.trainable_variables() if v not in known] if replicated or i == 0
                         else per_tower[0][1])
            per_tower.append((gradients(loss, variables, loss_scale), variables))
        losses.append(loss)
        accuracies.append(accuracy)
    replicas = _all_reduce(per_tower, config.devices) if replicated else _average_on_cpu(per_tower)
    with tf.device("/cpu:0"):
        loss, accuracy = tf.add_n(losses) / n, tf.add_n(accuracies) / n
    return Towers(loss, accuracy, replicas,
                  v1.get_collection(v1.GraphKeys.UPDATE_OPS, scope="tower_0/"))


def _dense(g):
    # The towers' sparse gradients (embedding rows) are summed densely: the averaging needs one
    # shape, and the textbook models have none.
    return tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g


def _average_on_cpu(per_tower: list) -> list:
    """Parameter server: the towers' gradients averaged where the variables live."""
    n, variables = len(per_tower), per_tower[0][1]
    with tf.device("/cpu:0"):
        mean = [None if grads[0] is None else tf.add_n([_dense(g) for g in grads]) / n
                for grads in zip(*(g for g, _ in per_tower))]
    return [(mean, variables)]


def _all_reduce(per_tower: list, devices: list[str]) -> list:
    """Replicated: each gradient all-reduced (mean) across the devices by collective ops;
    each device gets the mean for its own copy of the variables."""
    n = len(devices)
    reduced = [[] for _ in range(n)]
    for key, grads in enumerate(zip(*(g for g, _ in per_tower)), start=1):
        for i, g in enumerate(grads):
            if g is None:
                reduced[i].append(None)
                continue
            with tf.device(devices[i]):
                reduced[i].append(tf.raw_ops.CollectiveReduceV2(
                    input=_dense(g), group_size=n, group_key=1, instance_key=key, ordering_token=[],
                    merge_op="Add", final_op="Div"))
    return [(reduced[i], per_tower[i][1]) for i in range(n)]


def sync_op(graph: tf.Graph) -> tf.Operation | None:
    """Copies every variable of tower 0 (weights, statistics, optimizer slots) to its per-device
    copies; None when the graph has none."""
    variables = graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)
    by_name = {v.op.name: v for v in variables}
    copies = [v for v in variables if is_replica_copy(v)]
    if not copies:
        return None
    return tf.group(*[v1.assign(copy, by_name[_COPY.sub(r"\1", copy.op.name)]) for copy in copies],
                    name="sync_replicas")


def executed_devices(metadata: v1.RunMetadata) -> list[str]:
    """The devices that ran part of a step, as the runtime partitioned its graph (a run with
    ``RunOptions(output_partition_graphs=True)``), not as requested."""
    return sorted({node.device for partition in metadata.partition_graphs for node in partition.node
                   if node.device})


def run_and_place(session: v1.Session, fetches, feed: dict | None = None) -> tuple[list, list[str]]:
    """Runs `fetches` once -> (their values, `executed_devices`)."""
    metadata = v1.RunMetadata()
    out = session.run(fetches, feed, options=v1.RunOptions(output_partition_graphs=True), run_metadata=metadata)
    return out, executed_devices(metadata)


def placement_record(config, devices_used: list[str], cluster=None) -> dict:
    """What run_config.json's "placement" says about a graph run."""
    towers = len(config.devices) > 1
    statistics = ("per tower; moving averages from tower 0" if towers
                  else "per worker; moving averages from the chief's slice" if cluster is not None
                  else "one device")
    return {"api": "graph", "task": cluster.task if cluster is not None else None,
            "cluster": cluster.jobs if cluster is not None else None,
            "towers": len(config.devices) if towers else 1, "devices": list(config.devices),
            "device_kind": device_kind(list(config.devices) or ["/cpu:0"]),
            "variable_update": config.variable_update if towers else None,
            "batch_norm_statistics": statistics, "executed_devices": devices_used}


# --- between-graph replication: one graph per worker process, variables on the ps tasks ----

@dataclass
class ClusterSync:
    """The synchronous-update machinery of one worker's graph: each worker adds its gradients to
    its own accumulator per variable, tagged with the global step they were computed at (a
    straggler's stale gradients are dropped), then waits for a token in its own queue; the
    chief's `update_op` takes one gradient from every worker's accumulators, applies their mean,
    advances the global step and puts a token carrying the new step in every worker's queue. A
    step therefore has exactly one gradient of each worker: while a worker is away, it waits."""

    update_op: tf.Tensor        # chief only, run in its own thread: -> the new global step
    set_steps: tf.Operation     # the accumulators' global step := the global step (after a restore)
    ready: tf.Variable          # on ps: True once the chief has initialised or restored
    mark_ready: tf.Operation
    done_ops: list              # one per ps task: this worker has finished
    next_token: tf.Tensor       # the next token of this worker's queue (skipping a stale one)
    pending: tf.Tensor          # gradients of this worker not yet taken by an update
    last_seen: tf.Tensor        # per worker: the global step of its latest gradient (-1: none yet)
    stop: tf.Operation          # closes every worker's token queue: their steps end


def cluster_device(cluster):
    """The device function of a worker's graph: variables round-robin on the ps tasks, the
    rest on this worker; None outside a cluster."""
    if cluster is None:
        return None
    return v1.train.replica_device_setter(cluster=v1.train.ClusterSpec(cluster.jobs), worker_device=cluster.task)


def worker_slice(cluster, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """This worker's part of the global batch: every worker reads the same stream of global
    batches and keeps slice i, so N workers at global batch B compute the one-process step at
    B (each worker reads B samples per step: exact, at N times the input work)."""
    n, i = len(cluster.workers), cluster.worker_index
    return tf.split(images, n)[i], tf.split(labels, n)[i]


def done_queue(ps_index: int, workers: int) -> v1.FIFOQueue:
    """The queue on ps task `ps_index` where each of the `workers` reports it has finished."""
    with tf.device(f"/job:ps/task:{ps_index}"):
        return v1.FIFOQueue(workers, [tf.int32], [()], shared_name=f"done_queue_{ps_index}",
                            name=f"done_queue_{ps_index}")


def sync_replicas(cluster, grads: list, var_list: list, apply: Callable[[list], tf.Operation]) -> tuple:
    """-> (the worker's train step: a tensor holding the global step after the update,
    ClusterSync). `apply(mean_gradients)` builds the update (`apply_gradients`)."""
    workers, me = len(cluster.workers), cluster.worker_index
    step = v1.train.get_or_create_global_step()
    with tf.device(step.device):
        tokens = [v1.FIFOQueue(-1, [tf.int64], [()], shared_name=f"sync_tokens_{i}", name=f"sync_tokens_{i}")
                  for i in range(workers)]
        with v1.variable_scope(v1.VariableScope(v1.AUTO_REUSE, name="sync")):
            ready = v1.get_variable("ready", (), tf.bool, v1.zeros_initializer(), trainable=False)
            last_seen = v1.get_variable("last_seen", (workers,), tf.int64, v1.constant_initializer(-1),
                                        trainable=False)
    # In step: the chief cannot update before this worker's gradients arrive, so any read of the
    # global step within the worker's step is the step its gradients belong to.
    local_step = tf.identity(step)
    accumulators, applied = [], []
    for g, var in zip(grads, var_list):
        if g is None:
            continue
        with tf.device(var.device):
            per_worker = [v1.ConditionalAccumulator(tf.float32, var.shape, shared_name=f"{var.op.name}/grad_accum_{i}",
                                                    name=f"{var.op.name}/grad_accum_{i}") for i in range(workers)]
        accumulators.append((per_worker, var))
        applied.append(per_worker[me].apply_grad(_dense(tf.cast(g, tf.float32)), local_step=local_step))
    with tf.control_dependencies(applied):
        seen = v1.scatter_update(last_seen, [me], [local_step])
    with tf.control_dependencies([seen]):
        worker_step = tokens[me].dequeue()
    every = [acc for per_worker, _ in accumulators for acc in per_worker]
    with tf.device(step.device):
        means = {var: tf.add_n([acc.take_grad(1) for acc in per_worker]) / workers
                 for per_worker, var in accumulators}
        update = apply([means.get(var) for var in var_list])
        with tf.control_dependencies([update]):
            new_step = tf.identity(step)
            set_after = [acc.set_global_step(new_step) for acc in every]
            with tf.control_dependencies(set_after):
                handed_out = tf.group(*[queue.enqueue(new_step) for queue in tokens])
        with tf.control_dependencies([handed_out]):
            update_step = tf.identity(new_step)
        set_steps = tf.group(*[acc.set_global_step(step) for acc in every])
        stop = tf.group(*[queue.close(cancel_pending_enqueues=True) for queue in tokens])
    pending = tf.add_n([per_worker[me].num_accumulated() for per_worker, _ in accumulators])
    done = [done_queue(i, workers).enqueue([1]) for i in range(len(cluster.jobs.get("ps", ())))]
    return worker_step, ClusterSync(update_step, set_steps, ready, v1.assign(ready, True), done,
                                    tokens[me].dequeue(), pending, last_seen.read_value(), stop)
