"""Keras's data parallelism from the flags graph_api's towers take: `MirroredStrategy` over
the local devices of ``--devices`` and `MultiWorkerMirroredStrategy` over the processes of
``--cluster FILE`` / ``TF_CONFIG``.

Under either strategy `fit` splits each global batch over the replicas, sums the per-replica
losses divided by the global batch size and all-reduces the gradients, so a step at global
batch B is the one-device step at B (batch normalisation excepted: per-replica statistics,
``synchronized=False``, as graph_api's towers). The trainer turns XLA off under a
`tf.distribute` strategy whatever ``jit_compile`` asks (XLA compiles a replica's step on one
device, away from the other replicas' variables); the run records what was asked and what ran. In a multi-process run
only the chief writes files (backups, best and final models, TensorBoard, CSV, history);
the other workers read the chief's backup when the cluster restarts, so ``--out`` must be the
same shared directory for every worker."""
from __future__ import annotations

import contextlib
import os

import keras
import tensorflow as tf

from api_runs.devices import Cluster, device_kind
from keras_api.callbacks import CommandLearningRate
from plumbing.errors import UserError


def make_strategy(devices: tuple, cluster: Cluster | None) -> tf.distribute.Strategy | None:
    """The strategy of a run: MultiWorkerMirroredStrategy for a cluster, MirroredStrategy for
    several devices, None for one device. Create it before any other TensorFlow work."""
    if cluster is not None:
        if "ps" in cluster.jobs:
            raise UserError(f"{cluster.source}: keras_api trains a cluster of worker (and chief) tasks with "
                            "MultiWorkerMirroredStrategy; 'ps' tasks are for graph_api")
        os.environ["TF_CONFIG"] = cluster.tf_config()  # what the strategy reads
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(list(devices))
    return None


def scope(strategy: tf.distribute.Strategy | None):
    """Where the model, its optimizer and its metrics must be created."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def shard_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Each worker takes its slice of every global batch (auto-sharding by data), so an
    N-worker step sees the batch a one-worker step sees."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def build_before_fit(model: keras.Model, strategy: tf.distribute.Strategy | None,
                     dataset: tf.data.Dataset) -> None:
    """Build the compiled loss, metrics and optimizer state from `dataset`'s element shapes,
    in place of the build `fit` does under a strategy. That build takes the first distributed
    batch and MEAN-reduces it eagerly across replicas only to read its shapes, which under
    MultiWorkerMirroredStrategy fails (a PerReplica value cannot become a tensor) and costs a
    cross-worker exchange of a whole batch."""
    if strategy is None:
        return
    batch = tf.nest.map_structure(
        lambda spec: tf.zeros([d if d is not None else 1 for d in spec.shape], spec.dtype), dataset.element_spec)
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None  # built above
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Keras's step "mean"-reduces each replica's outputs across workers along axis 0, which
        # scalar metrics lack: give them that axis (one entry per replica, averaged by the reduce).
        for name in ("train_step", "test_step"):
            step = getattr(model, name)
            setattr(model, name, lambda data, step=step: tf.nest.map_structure(
                lambda value: tf.reshape(value, [1]), step(data)))


def placement_record(strategy: tf.distribute.Strategy | None, model: keras.Model, requested_jit: bool,
                     cluster: Cluster | None) -> dict:
    """What run_config.json's "placement" says about a Keras run."""
    devices = list(strategy.extended.worker_devices) if strategy is not None else []
    short = ["/" + d.split("device:")[-1].lower() for d in devices]  # "/cpu:1"
    return {"api": "keras", "strategy": type(strategy).__name__ if strategy is not None else None,
            "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
            "devices": devices, "device_kind": device_kind(short or ["/cpu:0"]),
            "batch_norm_statistics": "per replica" if strategy is not None else "one device",
            "jit_compile": bool(model.jit_compile), "jit_compile_requested": requested_jit,
            "task": cluster.task if cluster is not None else None,
            "cluster": cluster.jobs if cluster is not None else None}


def lost_worker(cluster: Cluster, backup, err: Exception) -> UserError:
    """The one-line error of a worker whose peer died: MultiWorkerMirroredStrategy cannot go on
    with fewer workers; the whole cluster restarts and resumes from the chief's backup."""
    reason = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
    return UserError(f"{cluster.source}: {cluster.task} lost contact with the cluster ({reason[:160]}); restart "
                     f"every worker with the same command to resume from the backup in {backup}")


class ReadOnlyBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore for a worker that is not the chief: it resumes from the chief's backup
    and never writes one."""

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass


def chief_callbacks(callbacks: list, is_chief: bool) -> list:
    """The callbacks a worker runs: all for the chief; for the others those that write nothing
    (their backups become read-only)."""
    if is_chief:
        return callbacks
    kept = []
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.BackupAndRestore):
            kept.append(ReadOnlyBackup(callback.backup_dir, delete_checkpoint=False))
        elif isinstance(callback, (keras.callbacks.TerminateOnNaN, keras.callbacks.EarlyStopping, CommandLearningRate)):
            kept.append(callback)
    return kept
