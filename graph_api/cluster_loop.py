"""The processes of a between-graph replicated run on TensorFlow's gRPC runtime, the TF1 way:
every task starts a `tf.distribute.Server` from the cluster's `ClusterSpec`; ps tasks hold the
variables until every worker reports it has finished; each worker builds its own copy of the
graph (`replica_device_setter`) and runs synchronous steps (`graph_api.distribute.sync_replicas`).

The chief initialises (or restores from its checkpoints), then runs the update thread; the
other workers wait until it is ready. Only the chief evaluates, checkpoints, writes summaries
and the run files. Every step takes one gradient of each worker, so while a worker is away the
step waits for it: restarted with the same command, it waits until an update has taken any
gradient it sent before it died, reads the global step from the ps, skips to its batch of the
current epoch and continues. A worker away longer than `worker_wait_s()` ends the run: the
chief names it in one line and stops the other workers (its last checkpoint is kept).
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import tensorflow as tf

from api_runs import run_files
from api_runs.devices import Cluster, split_batch
from data_pipeline.dataset import epoch_seed
from graph_api.distribute import done_queue
from plumbing.errors import UserError
from plumbing.progress import Progress

v1 = tf.compat.v1
CHIEF_WAIT_SECONDS = 600
WORKER_WAIT_ENV = "GRAPH_API_WORKER_WAIT_S"  # how long a step waits for an absent worker (s)
WORKER_WAIT_SECONDS = 600.0


def worker_wait_s() -> float:
    """How long a step waits for a worker's gradient before the run ends (`GRAPH_API_WORKER_WAIT_S`)."""
    text = os.environ.get(WORKER_WAIT_ENV, "")
    try:
        value = float(text) if text else WORKER_WAIT_SECONDS
    except ValueError:
        raise UserError(f"{WORKER_WAIT_ENV}: not a number of seconds: {text!r}") from None
    if not value > 0:
        raise UserError(f"{WORKER_WAIT_ENV}: must be above 0 seconds, got {text}")
    return value


def check_cluster_options(config, options, cluster: Cluster) -> None:
    """What a cluster run does not support, refused before anything is written."""
    if "ps" not in cluster.jobs:
        raise UserError(f"{cluster.source}: graph_api's between-graph replication keeps the variables on "
                        "'ps' tasks; the cluster has none")
    if config.feed_spec.placeholders:
        raise UserError("--feed: a cluster run reads its batches with the in-graph iterator (dataset)")
    if options.patience is not None:
        raise UserError("--patience: early stopping is not available in a cluster run")
    split_batch(options.batch_size, len(cluster.workers), "workers")


def _server(cluster: Cluster) -> tf.distribute.Server:
    return tf.distribute.Server(v1.train.ClusterSpec(cluster.jobs), job_name=cluster.task_type,
                                task_index=cluster.task_index, start=True)


def worker_session(graph: tf.Graph, cluster: Cluster) -> v1.Session:
    """A session on this worker's server that sees the ps tasks and this worker only."""
    server = _server(cluster)
    config = v1.ConfigProto(device_filters=["/job:ps", cluster.task])
    return v1.Session(server.target, graph=graph, config=config)


def serve_parameters(cluster: Cluster) -> None:
    """A ps task: serve the variables until each worker has reported that it finished."""
    server = _server(cluster)
    workers = len(cluster.workers)
    graph = tf.Graph()
    with graph.as_default():
        finished = done_queue(cluster.task_index, workers).dequeue()
    print(f"{cluster.task} serving at {cluster.jobs['ps'][cluster.task_index]}; "
          f"stops when the {workers} workers finish", flush=True)
    config = v1.ConfigProto(device_filters=[cluster.task])
    with v1.Session(server.target, graph=graph, config=config) as session:
        for _ in range(workers):
            session.run(finished)
    print(f"{cluster.task}: every worker finished", flush=True)


class _Updater(threading.Thread):
    """The chief's update loop: each run takes one gradient of every worker and applies their
    mean. A worker whose gradient does not come within `wait_s` ends the run: the error names
    it, and every worker's token queue is closed so their steps end too."""

    def __init__(self, session: v1.Session, sync, cluster: Cluster, last_step: int, wait_s: float) -> None:
        super().__init__(daemon=True)  # blocked on workers that will never come: not worth waiting for
        self.session, self.sync, self.cluster, self.last_step = session, sync, cluster, last_step
        self.wait_s, self.error, self.absent = wait_s, None, []

    def run(self) -> None:
        options = v1.RunOptions(timeout_in_ms=int(self.wait_s * 1000))
        try:
            while self.session.run(self.sync.update_op, options=options) < self.last_step:
                pass
        except tf.errors.DeadlineExceededError:
            self.error = self._absent_workers()
            self.session.run(self.sync.stop)
        except Exception as err:  # reported by the training thread
            self.error = err

    def _absent_workers(self) -> UserError:
        seen = self.session.run(self.sync.last_seen)
        behind = [i for i, s in enumerate(seen) if s < seen.max()] or list(range(len(seen)))
        self.absent = behind
        names = ", ".join(self.cluster.workers[i] if self.cluster else f"worker {i}" for i in behind)
        return UserError(f"{names}: sent no gradient for global step {int(seen.max()) + 1} within "
                         f"{self.wait_s:g} s ({WORKER_WAIT_ENV}); the run stops, its last checkpoint is kept")


def start_updates(session: v1.Session, sync, last_step: int, cluster: Cluster | None = None,
                  wait_s: float | None = None) -> _Updater:
    """The chief, once the variables are initialised or restored: let the workers in and apply
    their synchronous updates, in a thread, until the global step reaches `last_step`."""
    session.run(sync.set_steps)
    session.run(sync.mark_ready)
    updater = _Updater(session, sync, cluster, last_step, worker_wait_s() if wait_s is None else wait_s)
    updater.start()
    return updater


def settle(session: v1.Session, sync) -> None:
    """A (re)starting worker: until an update has taken every gradient it sent before (a worker
    killed after sending its gradient but before its token), so the global step it reads next
    is the step of its next gradient."""
    while session.run(sync.pending) > 0:
        time.sleep(0.2)


def wait_for_chief(session: v1.Session, sync, cluster: Cluster) -> None:
    """A worker other than the chief: until the chief has initialised the variables on the ps."""
    deadline = time.monotonic() + CHIEF_WAIT_SECONDS
    print(f"{cluster.task}: waiting for the chief {cluster.workers[0]}", flush=True)
    while time.monotonic() < deadline:
        try:
            if session.run(sync.ready):
                return
        except (tf.errors.FailedPreconditionError, tf.errors.UnavailableError):
            pass  # not initialised yet, or the ps not up yet
        time.sleep(0.5)
    raise UserError(f"{cluster.source}: the chief {cluster.workers[0]} was not ready within {CHIEF_WAIT_SECONDS} s")


class ClusterLoop:
    """A worker's training loop, driven by the global step on the ps tasks."""

    def __init__(self, trainer) -> None:
        self.t, self.g, self.sync = trainer, trainer.g, trainer.g.cluster_sync
        self.steps, self.total = trainer.steps, trainer.steps * trainer.options.epochs
        self.step_var = v1.train.get_global_step(self.g.graph)

    def fit(self) -> dict:
        t, session = self.t, self.t.session
        history, updater, writers = run_files.new_history(), None, {}
        if t.is_chief:
            writers = t.open_writers()
            _, history = t.start()
            updater = start_updates(session, self.sync, self.total, t.cluster)
        else:
            wait_for_chief(session, self.sync, t.cluster)
        settle(session, self.sync)
        step = int(session.run(self.step_var))
        if not t.is_chief:
            print(f"{t.cluster.task}: joined at global step {step}", flush=True)
        note = run_files.completion_note(history, len(history["loss"]), t.options.epochs, t.out)
        if step >= self.total and t.is_chief and note:
            print(note)
        try:
            while step < self.total:
                epoch = step // self.steps
                step, loss, acc, rate = self._epoch(epoch, step, updater)
                if t.is_chief:
                    self._end_epoch(epoch, history, loss, acc, rate, writers)
            if t.is_chief:
                t.save(t.final_saver, t.out / "final" / "ckpt")
        finally:
            for writer in writers.values():
                writer.close()
            # this worker has finished (so have the absent ones, when the chief ends the run)
            for _ in range(1 + len(updater.absent if updater is not None else ())):
                for done in self.sync.done_ops:
                    try:
                        session.run(done)
                    except tf.errors.OpError:  # the ps has stopped already: nothing to tell it
                        pass
        return history

    def _epoch(self, epoch: int, step: int, updater: _Updater | None) -> tuple[int, float, float, float]:
        """Steps until the global step ends `epoch` -> (global step, mean loss and accuracy of this
        worker's slices, images/s of the global batch)."""
        t, session, g = self.t, self.t.session, self.g
        session.run(g.train_init, {g.epoch_seed: epoch_seed(t.config.seed, epoch)})
        for _ in range(step - epoch * self.steps):  # a restarted worker: to the batch of the current step
            session.run(g.labels.op)
        end, losses, accs = (epoch + 1) * self.steps, [], []
        start, first = time.perf_counter(), step
        with Progress(end - step, f"{t.cluster.task} epoch {epoch + 1}/{t.options.epochs}") as bar:
            while step < end:
                try:
                    new_step, loss, acc = t.run_step([g.train_op, g.loss, g.accuracy], {})
                    while new_step <= step:  # a token left from before a restart: the next is this step's
                        new_step = session.run(self.sync.next_token)
                except (tf.errors.OutOfRangeError, tf.errors.CancelledError):  # the chief closed the queues
                    if updater is not None and updater.error is not None:
                        raise updater.error from None
                    raise UserError(f"{t.cluster.task}: the chief ended the run (a worker was away too long)") from None
                if updater is not None and updater.error is not None:
                    raise updater.error
                if not np.isfinite(loss):
                    raise UserError(f"loss became {loss} at global step {step + 1}; training stopped")
                losses.append(loss)
                accs.append(acc)
                bar(int(new_step) - step)
                step = int(new_step)
                if t.step_done:
                    t.step_done()
        rate = (step - first) * t.options.batch_size / (time.perf_counter() - start)
        return step, float(np.mean(losses)), float(np.mean(accs)), rate

    def _end_epoch(self, epoch: int, history: dict, loss: float, acc: float, rate: float, writers: dict) -> None:
        """The chief's epoch end: validation, history and a checkpoint. No update can run
        meanwhile (it waits for the chief's next gradients), so the checkpoint is one step's state."""
        t = self.t
        val_loss, val_acc = t.evaluate()
        for key, value in zip(run_files.HISTORY_KEYS, (loss, acc, val_loss, val_acc, rate)):
            history[key].append(value)
        history["early_stopping"]["best_epoch"] = epoch  # no early stopping: the last epoch is kept
        print(f"epoch {epoch + 1}/{t.options.epochs}: loss {loss:.4f} accuracy {acc:.4f} (chief's slice) "
              f"val_loss {val_loss:.4f} val_accuracy {val_acc:.4f} ({rate:.1f} images/s)", flush=True)
        t.write_epoch(writers, epoch, (loss, acc), (val_loss, val_acc))
        t.session.run(t.assign_epoch, {t.set_epoch: epoch + 1})
        t.save(t.saver, t.out / "checkpoints" / "ckpt", global_step=epoch + 1)
        run_files.save_history(t.out, history, f"{t.config.model} (graph_api, {len(t.cluster.workers)} workers)")
