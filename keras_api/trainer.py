"""The Keras trainer: compile + fit on the shared tf.data pipeline with callbacks
(early stopping, atomic checkpoints, BackupAndRestore, TensorBoard, CSVLogger, NaN stop)."""
from __future__ import annotations

import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import tensorflow as tf

from api_runs import run_files
from api_runs.devices import Cluster, is_chief, split_batch
from api_runs.train_options import TrainOptions, step_done_hook
from data_pipeline import make_dataset
from data_pipeline.constants import NUM_CLASSES
from keras_api import distribute
from keras_api.callbacks import (
    AtomicModelCheckpoint,
    CommandLearningRate,
    RandomStateBackup,
    ResumableEarlyStopping,
    RunFiles,
    keep_csv_rows,
    restore_random_state,
)
from keras_api.model import build_model
from keras_api.optimizers import make_optimizer
from keras_api.weights import (
    backup_epoch,
    backup_problem,
    load_weights_file,
    save_model_atomic,
)
from model_contract.constants import HEAD_DROPOUT
from model_contract.image_models import has_pretrained_base
from model_contract.weights_source import base_preprocessing, resolve_vgg16_weights
from plumbing.atomic import atomic_path
from plumbing.errors import UserError

LOSSES = ("sparse", "categorical")


@dataclass
class KerasConfig:
    """Everything that shapes the compiled model. image_shape is (H, W, C) of one sample."""

    model: str = "resnet50"
    image_shape: tuple = (224, 224, 3)
    num_classes: int = NUM_CLASSES
    precision: str = "fp32"
    optimizer: str = "rmsprop"
    learning_rate: float | None = None
    loss: str = "sparse"            # sparse labels, or one-hot ("categorical", as the textbook)
    jit_compile: bool = False       # pinned: Keras 3's "auto" means XLA only on GPUs
    preprocessing: str | None = None  # set from the VGG16 weights: "caffe" for a pretrained base
    dropout: float = HEAD_DROPOUT     # the VGG16 head's rate
    seed: int = 0
    devices: tuple = ()               # MirroredStrategy over these when more than one (keras_api.distribute)


def compile_model(model: keras.Model, config: KerasConfig) -> keras.Model:
    """RMSprop (or the configured optimizer), cross-entropy from the model's logits (the graph's
    loss; with one-hot labels for "categorical"), accuracy; `jit_compile` as configured."""
    if config.loss not in LOSSES:
        raise UserError(f"unknown loss {config.loss!r}: expected one of {LOSSES}")
    loss = (keras.losses.SparseCategoricalCrossentropy(from_logits=True) if config.loss == "sparse"
            else keras.losses.CategoricalCrossentropy(from_logits=True))
    model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate), loss=loss,
                  metrics=["accuracy"], jit_compile=config.jit_compile)
    return model


class KerasTrainer:
    """One training run in `out_dir`: model, datasets and callbacks."""

    def __init__(self, config: KerasConfig, manifest_path: str, out_dir: str | Path, options: TrainOptions,
                 cluster: Cluster | None = None):
        self.options, self.out, self.cluster = options, Path(out_dir), cluster
        self.is_chief = is_chief(cluster)
        self.strategy = distribute.make_strategy(config.devices, cluster)
        if self.strategy is not None:
            split_batch(options.batch_size, self.strategy.num_replicas_in_sync, "replicas")
        self.manifest = run_files.load_training_manifest(manifest_path, config.model)
        weights = resolve_vgg16_weights(options.weights) if has_pretrained_base(config.model) else None
        self.config = config = replace(config, **run_files.input_fields(self.manifest),
                                       preprocessing=base_preprocessing(weights))
        self.steps = run_files.start_run("keras", config.model, self.manifest, self.out,
                                         dict(asdict(config), init_weights=options.init_weights),
                                         options.batch_size, options.steps_per_epoch, write=self.is_chief,
                                         resume=options.resume)
        self.backup = self.out / "backup"
        if not options.resume and self.backup.exists() and self.is_chief:
            shutil.rmtree(self.backup)
        keras.utils.set_random_seed(config.seed)
        with distribute.scope(self.strategy):
            # XLA off under a strategy: it compiles one replica's step on one device and cannot
            # reach the variables the other replicas keep (the run fails, measured on CPU devices)
            self.model = compile_model(build_model(
                config.model, config.image_shape, config.num_classes, precision=config.precision,
                weights=str(weights) if weights else "none", preprocessing=config.preprocessing,
                dropout=config.dropout), replace(config, jit_compile=config.jit_compile and self.strategy is None))
            if options.init_weights:  # a resumed run's backup replaces them when fit starts
                load_weights_file(self.model, options.init_weights)
        placement = distribute.placement_record(self.strategy, self.model, config.jit_compile, cluster)
        if self.is_chief:
            run_files.record_placement(self.out, placement)
        if self.strategy is not None:
            print(f"{type(self.strategy).__name__}: {placement['replicas']} replicas on "
                  f"{', '.join(placement['devices'])}; jit_compile {placement['jit_compile']}")

    def _datasets(self, first_epoch: int):
        """Train batches from `first_epoch` on, epoch e in the order the graph trainer's epoch e
        has (the same per-epoch seed), and the val split."""
        one_hot = self.config.loss == "categorical"
        train = make_dataset(self.manifest, "train", self.options.batch_size, shuffle=True, seed=self.config.seed,
                             drop_remainder=True, steps_per_epoch=self.steps, first_epoch=first_epoch,
                             one_hot=one_hot)
        val = make_dataset(self.manifest, "val", self.options.batch_size, shuffle=False, one_hot=one_hot)
        if self.strategy is not None:
            train, val = distribute.shard_by_batch(train), distribute.shard_by_batch(val)
        return train, val

    def _resumed_epoch(self) -> int:
        """Epochs done by the run so far per its newest readable backup (BackupAndRestore's
        files), 0 for a fresh run. A damaged newest backup is named and the previous one
        (``double_checkpoint``) put in its place before Keras reads it, so the history, the
        CSV log and the weights all continue from the same epoch."""
        if not self.options.resume:
            return 0
        latest = (self.backup / "latest.weights.h5", self.backup / "training_metadata.json")
        if not any(path.exists() for path in latest):
            run_files.refuse_restart(self.out, self.backup)
            return 0
        problem = backup_problem(*latest)
        if problem is None:
            return backup_epoch(latest[1])
        previous = tuple(path.with_name(path.name + ".bkp") for path in latest)
        if backup_problem(*previous) is not None:
            raise UserError(f"{problem}; no readable earlier backup; use --no-resume to start afresh")
        print(f"warning: {problem}; resuming from the previous backup", file=sys.stderr)
        for source, target in zip(previous, latest):
            with atomic_path(target, keep_suffix=True) as tmp:
                shutil.copyfile(source, tmp)
        return backup_epoch(latest[1])

    def fit(self) -> dict:
        opts = self.options
        first = self._resumed_epoch()
        history = (run_files.load_history(self.out, first) if first else None) or run_files.new_history()
        if first:
            print(f"resuming from {self.backup} after epoch {first}")
            problem = restore_random_state(self.model, self.backup, first)
            if problem:
                print(f"warning: {problem}", file=sys.stderr)
            if self.is_chief:
                keep_csv_rows(self.out / "epochs.csv", first)
        stopping = ResumableEarlyStopping(
            history["early_stopping"], self.out / "best.keras", first, monitor=opts.monitor, min_delta=opts.min_delta,
            patience=opts.patience if opts.patience is not None else 10 ** 9,
            restore_best_weights=opts.restore_best)
        callbacks = [keras.callbacks.TerminateOnNaN(raise_error=True),
                     keras.callbacks.BackupAndRestore(str(self.backup), double_checkpoint=True,
                                                      delete_checkpoint=False),
                     CommandLearningRate(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))),
                     RandomStateBackup(self.backup),  # after the backup: a failed backup changes nothing
                     stopping,
                     AtomicModelCheckpoint(self.out / "best.keras", stopping),
                     keras.callbacks.CSVLogger(str(self.out / "epochs.csv"), append=True),
                     RunFiles(self.out, history, opts.batch_size, f"{self.config.model} (keras_api)", stopping)]
        if opts.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(str(self.out / "tensorboard"), profile_batch=0))
        step_done = step_done_hook()
        if step_done:
            callbacks.append(keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: step_done()))
        callbacks = distribute.chief_callbacks(callbacks, self.is_chief)
        train, val = self._datasets(first)
        distribute.build_before_fit(self.model, self.strategy, train)
        note = run_files.completion_note(history, first, opts.epochs, self.out)
        if note:
            print(note)
        else:
            try:
                self.model.fit(train, epochs=opts.epochs, steps_per_epoch=self.steps, validation_data=val,
                               callbacks=callbacks, shuffle=False,  # the pipeline shuffles
                               verbose=1 if sys.stdout.isatty() else 2)
            except RuntimeError as err:
                if "NaN or Inf loss" not in str(err):
                    raise
                done = len(history["loss"])
                raise UserError(f"loss became NaN/Inf in epoch {done + 1} ({str(err).split('.')[0]}); training "
                                f"stopped, the last good backup in {self.backup} and best.keras are kept") from None
            except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError) as err:
                if self.cluster is None:
                    raise
                raise distribute.lost_worker(self.cluster, self.backup, err) from None
        if self.is_chief:
            save_model_atomic(self.model, self.out / "final.keras")
            save_model_atomic(self.model, self.out / "final.weights.h5")
        return history


def train(config: KerasConfig, manifest: str, out_dir: str | Path, options: TrainOptions,
          cluster: Cluster | None = None) -> dict:
    """Train `config.model` on `manifest` with Keras `fit`; returns the history (run_files format).
    Several `config.devices` train under MirroredStrategy, a `cluster` under
    MultiWorkerMirroredStrategy (keras_api.distribute)."""
    with run_files.writing_run(out_dir):
        return KerasTrainer(config, manifest, out_dir, options, cluster).fit()
