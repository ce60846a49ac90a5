"""The TF1 Session trainer: epochs of train steps, validation, checkpoints, early stopping,
TensorBoard, NaN guard, resume with identical continuation."""
from __future__ import annotations

import itertools
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from api_runs import run_files
from api_runs.devices import Cluster, is_chief, split_batch
from api_runs.train_options import TrainOptions, step_done_hook
from data_pipeline.dataset import epoch_seed, read_batches, stored_order
from graph_api import early_stopping
from graph_api.cluster_loop import (
    ClusterLoop,
    check_cluster_options,
    serve_parameters,
    worker_session,
)
from graph_api.distribute import placement_record, run_and_place
from graph_api.graph import (
    GraphConfig,
    TrainGraph,
    build_train_graph,
    checkpoint_variables,
    runtime_facts,
)
from graph_api.model import check_data_format_runs
from graph_api.weights import (
    graph_layers,
    load_keras_weights,
    saved_checkpoints,
    verify_checkpoint,
)
from model_contract.image_models import has_pretrained_base
from model_contract.weights_source import base_preprocessing, resolve_vgg16_weights
from plumbing.errors import UserError
from plumbing.progress import Progress

v1 = tf.compat.v1

class SessionTrainer:
    """Owns one TrainGraph, its Session and Savers for the duration of a training run."""

    def __init__(self, config: GraphConfig, manifest_path: str, out_dir: str | Path, options: TrainOptions,
                 cluster: Cluster | None = None):
        self.options, self.out, self.cluster = options, Path(out_dir), cluster
        self.is_chief = is_chief(cluster)
        self.step_done = step_done_hook()
        if len(config.devices) > 1:
            split_batch(options.batch_size, len(config.devices), "devices")
        if cluster is not None:
            check_cluster_options(config, options, cluster)
        self.manifest = run_files.load_training_manifest(manifest_path, config.model)
        self.weights = resolve_vgg16_weights(options.weights) if has_pretrained_base(config.model) else None
        self.config = config = replace(config, **run_files.input_fields(self.manifest),
                                       preprocessing=base_preprocessing(self.weights))
        # The runtime is recorded as it ran: TF1 under `python -m graph_api`, TF2 in an eager process.
        self.steps = run_files.start_run("graph", config.model, self.manifest, self.out,
                                         dict(asdict(config), runtime=runtime_facts(),
                                              init_weights=self.options.init_weights),
                                         options.batch_size, options.steps_per_epoch, write=self.is_chief,
                                         resume=options.resume)
        self.g: TrainGraph = build_train_graph(config, self.manifest, options.batch_size, cluster=cluster)
        # A cluster's chief saves from its own task: the files are written where it runs.
        with self.g.graph.as_default(), tf.device(cluster.task if cluster else None):
            self.epoch_var = v1.get_variable("epochs_done", (), tf.int64, v1.zeros_initializer(), trainable=False)
            # Relative paths in the `checkpoint` state files: a run directory can be moved or copied.
            self.saver = v1.train.Saver(checkpoint_variables(), max_to_keep=options.max_to_keep,
                                        save_relative_paths=True)
            self.best_saver = v1.train.Saver(self.g.model_variables, max_to_keep=1, save_relative_paths=True)
            # A saver of its own: a Saver deletes its older files, whatever their folder.
            self.final_saver = v1.train.Saver(self.g.model_variables, max_to_keep=1, save_relative_paths=True)
            self.set_epoch = v1.placeholder(tf.int64, ())
            self.assign_epoch = v1.assign(self.epoch_var, self.set_epoch)
            self.init = v1.global_variables_initializer()
            # Per-step values under tags of their own; the per-epoch means (below) use Keras's tags.
            self.summaries = v1.summary.merge([v1.summary.scalar("batch_loss", self.g.loss),
                                               v1.summary.scalar("batch_accuracy", self.g.accuracy)])
        self.session = worker_session(self.g.graph, cluster) if cluster else v1.Session(graph=self.g.graph)
        self.placed = False

    # --- set-up -------------------------------------------------------------------------
    def start(self) -> tuple[int, dict]:
        """Initialise or resume; returns (first epoch to run, history so far)."""
        first, history = self._start()
        if self.g.sync_op is not None:  # replicated towers: every copy starts from tower 0's state
            self.session.run(self.g.sync_op)
        return first, history

    def _start(self) -> tuple[int, dict]:
        self.session.run(self.init)
        if self.options.resume:
            resumed = self._resume()
            if resumed is not None:
                return resumed
        if self.options.init_weights:  # every layer, the VGG16 base included
            load_keras_weights(self.session, self.g.model_variables, self.options.init_weights)
            print(f"initial weights: {self.options.init_weights}")
        elif has_pretrained_base(self.config.model):
            path = self.weights
            if path is not None:
                base = [name for name in graph_layers(self.g.model_variables) if name.startswith("block")]
                load_keras_weights(self.session, self.g.model_variables, path, base)
                print(f"VGG16 base weights: {path}")
        return 0, run_files.new_history()

    def _resume(self) -> tuple[int, dict] | None:
        """Restore the newest readable checkpoint -> (epochs done, history cut to them); None
        for a run directory without training behind it. A corrupt checkpoint is named and the
        one before it used; a run with history but no readable checkpoint is refused, never
        silently restarted over."""
        folder = self.out / "checkpoints"
        candidates = saved_checkpoints(folder)
        damaged = []
        for i, ckpt in enumerate(candidates):
            try:
                verify_checkpoint(ckpt, checkpoint_variables())
            except UserError as err:
                damaged.append(err)
                if i + 1 < len(candidates):
                    print(f"warning: {err.message}; trying the checkpoint before it", file=sys.stderr)
                continue
            self.saver.restore(self.session, ckpt)
            done = int(self.session.run(self.epoch_var))
            history = run_files.load_history(self.out, done) or run_files.new_history()
            print(f"resumed from {ckpt} after epoch {done}" + (" (the newest readable checkpoint)" if i else ""))
            return done, history
        if damaged:  # named by the newest damaged file, not the folder
            earlier = "; no earlier checkpoint is readable" if len(damaged) > 1 else ""
            raise UserError(f"{damaged[0].message}{earlier}; use --no-resume to start afresh")
        run_files.refuse_restart(self.out, folder)
        return None

    # --- one epoch ------------------------------------------------------------------------
    def _batches(self, epoch: int):
        """feed_dict mode: numpy batches read from the shards (the textbook's loop), pass after
        pass in the order the graph's `train_order` gives, the dataset mode's order."""
        seed = epoch_seed(self.config.seed, epoch)
        orders = (self.session.run(self.g.train_order, {self.g.epoch_seed: seed, self.g.pass_index: k})
                  for k in itertools.count())
        return read_batches(self.manifest, "train", orders, self.options.batch_size, drop_remainder=True)

    def train_epoch(self, epoch: int, writer) -> tuple[float, float, float]:
        """Runs the steps of one epoch -> (mean loss, mean accuracy, images/s)."""
        g, feed_mode = self.g, self.config.feed_spec.placeholders
        seed_feed = {g.epoch_seed: epoch_seed(self.config.seed, epoch)}
        batches = self._batches(epoch) if feed_mode else None
        if not feed_mode:
            self.session.run(g.train_init, seed_feed)
        losses, accs = [], []
        start = time.perf_counter()
        with Progress(self.steps, f"epoch {epoch + 1}/{self.options.epochs}") as bar:
            for step in range(self.steps):
                feed = dict(zip((g.images, g.labels), next(batches))) if feed_mode else {}
                fetch = [g.train_op, g.loss, g.accuracy] + ([self.summaries] if writer and step % 10 == 0 else [])
                out = self.run_step(fetch, feed)
                if not math.isfinite(out[1]):
                    raise UserError(f"loss became {out[1]} at epoch {epoch + 1}, step {step + 1}; training "
                                    f"stopped, the last good checkpoint in {self.out / 'checkpoints'} is kept")
                losses.append(out[1])
                accs.append(out[2])
                if len(out) == 4:
                    writer.add_summary(out[3], epoch * self.steps + step)
                if self.step_done:
                    self.step_done()
                bar(1)
        rate = self.steps * self.options.batch_size / (time.perf_counter() - start)
        return float(np.mean(losses)), float(np.mean(accs)), rate

    def run_step(self, fetch: list, feed: dict) -> list:
        """One train step; the run's first also records where it ran."""
        if self.placed:
            return self.session.run(fetch, feed)
        out, devices = run_and_place(self.session, fetch, feed)
        placement = placement_record(self.config, devices, self.cluster)
        if self.is_chief:
            run_files.record_placement(self.out, placement)
        if placement["towers"] > 1:
            print(f"{placement['towers']} towers on {', '.join(self.config.devices)} ({placement['device_kind']}), "
                  f"variables {placement['variable_update']}; ran on {len(devices)} devices")
        self.placed = True
        return out

    def evaluate(self) -> tuple[float, float]:
        """Mean loss and accuracy over the whole val split (weighted by batch size)."""
        g = self.g
        if self.config.feed_spec.placeholders:
            batches = read_batches(self.manifest, "val", [stored_order(self.manifest, "val")], self.options.batch_size)
        else:
            self.session.run(g.eval_init)
            batches = iter(lambda: None, 0)  # endless: the iterator ends by OutOfRange
        total = loss_sum = acc_sum = 0.0
        for batch in batches:
            feed = dict(zip((g.eval_images, g.eval_labels), batch)) if batch is not None else {}
            try:
                loss, acc, n = self.session.run([g.eval_loss, g.eval_accuracy, g.eval_count], feed)
            except tf.errors.OutOfRangeError:
                break
            total, loss_sum, acc_sum = total + n, loss_sum + loss * n, acc_sum + acc * n
        return loss_sum / max(total, 1), acc_sum / max(total, 1)

    # --- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train the remaining epochs -> history. Runs with the training graph as the default
        graph, as a TF1 program's main loop does (so it also runs inside an eager process)."""
        with self.g.graph.as_default():
            return ClusterLoop(self).fit() if self.cluster else self._fit()

    def _fit(self) -> dict:
        first, history = self.start()
        opts = self.options
        writers = self.open_writers()
        mode = "min" if "loss" in opts.monitor else "max"
        stopped = history["early_stopping"].get("stopped_epoch") is not None
        note = run_files.completion_note(history, first, opts.epochs, self.out)
        if note:
            print(note)
        for epoch in range(first, opts.epochs if not stopped else first):
            loss, acc, rate = self.train_epoch(epoch, writers.get("train"))
            val_loss, val_acc = self.evaluate()
            for key, value in zip(run_files.HISTORY_KEYS, (loss, acc, val_loss, val_acc, rate)):
                history[key].append(value)
            print(f"epoch {epoch + 1}/{opts.epochs}: loss {loss:.4f} accuracy {acc:.4f} "
                  f"val_loss {val_loss:.4f} val_accuracy {val_acc:.4f} ({rate:.1f} images/s)", flush=True)
            self.write_epoch(writers, epoch, (loss, acc), (val_loss, val_acc))
            best, stop = early_stopping.update(history["early_stopping"], history[opts.monitor][-1], epoch,
                                               opts.patience, opts.min_delta, mode)
            if best:
                self.save(self.best_saver, self.out / "best" / "ckpt")
            self.session.run(self.assign_epoch, {self.set_epoch: epoch + 1})
            self.save(self.saver, self.out / "checkpoints" / "ckpt", global_step=epoch + 1)
            run_files.save_history(self.out, history, f"{self.config.model} (graph_api)")
            if stop:
                print(f"early stopping after epoch {epoch + 1}: no {opts.monitor} improvement "
                      f"for {opts.patience} epochs")
                break
        if opts.restore_best and history["early_stopping"]["best_epoch"] is not None:
            self.best_saver.restore(self.session, saved_checkpoints(self.out / "best")[0])
        self.save(self.final_saver, self.out / "final" / "ckpt")
        for writer in writers.values():
            writer.close()
        return history

    def open_writers(self) -> dict:
        """TensorBoard writers laid out as Keras's TensorBoard callback does (the two runs overlay)."""
        if not self.options.tensorboard:
            return {}
        return {part: v1.summary.FileWriter(str(self.out / "tensorboard" / part),
                                            self.g.graph if part == "train" else None)
                for part in ("train", "validation")}

    @staticmethod
    def write_epoch(writers: dict, epoch: int, train: tuple, validation: tuple) -> None:
        """Per-epoch (loss, accuracy) of training and validation under Keras's tags."""
        for part, (part_loss, part_acc) in zip(writers, (train, validation)):
            writers[part].add_summary(v1.Summary(value=[
                v1.Summary.Value(tag="epoch_loss", simple_value=part_loss),
                v1.Summary.Value(tag="epoch_accuracy", simple_value=part_acc)]), epoch)

    def save(self, saver: v1.train.Saver, prefix: Path, **kwargs) -> None:
        """Writes `saver`'s checkpoint at `prefix` (`global_step=` numbers it); a write that fails
        (a full disk) is one UserError naming it, the checkpoints before it kept."""
        try:
            saver.save(self.session, str(prefix), **kwargs)
        except tf.errors.OpError as err:
            for partial in prefix.parent.glob(f"{prefix.name}*.tempstate*"):  # TensorFlow's own temporaries
                partial.unlink(missing_ok=True)
            # the OS's word ends the line that names the file, e.g. "...ckpt.data-...; File too large"
            said = [line.rsplit("; ", 1)[1].strip() for line in err.message.splitlines() if "; " in line]
            reason = said[-1] if said else type(err).__name__
            raise UserError(f"{prefix}: cannot write the checkpoint ({reason})") from None

    def close(self) -> None:
        self.session.close()

def train(config: GraphConfig, manifest: str, out_dir: str | Path, options: TrainOptions,
          cluster: Cluster | None = None) -> dict:
    """Train `config.model` on `manifest`; returns the history. Files go to `out_dir`. With a
    `cluster`, this process is one task of a between-graph replicated run: a ps task serves
    variables until the workers finish; a worker trains (graph_api.cluster_loop)."""
    if cluster is not None and cluster.task_type == "ps":
        serve_parameters(cluster)
        return run_files.new_history()
    check_data_format_runs(config.data_format, "--data-format")
    with run_files.writing_run(out_dir):
        trainer = SessionTrainer(config, manifest, out_dir, options, cluster)
        try:
            return trainer.fit()
        finally:
            trainer.close()
