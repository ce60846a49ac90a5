"""Keras callbacks that the stock ones lack: atomic checkpoints, an early stopping that
survives a resume, the random generators' states beside the backup, and the run files
(history JSON/CSV/PNG) shared with graph_api."""
from __future__ import annotations

import json
import math
import os
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np

from api_runs import run_files
from keras_api.weights import load_layer_weights, save_model_atomic
from plumbing.atomic import atomic_write_bytes, write_json

RANDOM_STATE = "random_state.json"  # in the backup folder: epoch -> the generators' states


def random_variables(model: keras.Model) -> list:
    """The model's variables that are not weights: its random generators' states (one per
    dropout layer), which Keras's weight files and so its backups leave out."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class CommandLearningRate(keras.callbacks.Callback):
    """The command's learning rate, set after BackupAndRestore (list it after that callback):
    a backup's optimizer state holds the rate the run was started with, which would otherwise
    replace the one a resume is given. A resumed run trains at its command's rate, as a graph
    run does (there the rate is a placeholder's default in the graph, not a checkpointed variable)."""

    def __init__(self, rate: float) -> None:
        """`rate`: the compiled optimizer's, read before `fit` (the command's, or its optimizer's default)."""
        super().__init__()
        self.rate = rate

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.model.optimizer.learning_rate = self.rate


class RandomStateBackup(keras.callbacks.Callback):
    """Records, at the end of each epoch and after BackupAndRestore has backed it up, the states
    of the model's random generators, so that a resumed run draws the dropout masks the
    uninterrupted run draws (`restore_random_state`). List it after BackupAndRestore."""

    def __init__(self, backup_dir: Path) -> None:
        super().__init__()
        self.path = Path(backup_dir) / RANDOM_STATE

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        states = _read_states(self.path) or {}
        states[str(epoch + 1)] = [np.asarray(v).tolist() for v in random_variables(self.model)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, states)


def _read_states(path: Path) -> dict | None:
    try:
        states = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return states if isinstance(states, dict) else None


def restore_random_state(model: keras.Model, backup_dir: Path, epoch: int) -> str | None:
    """Sets the model's random generators to their state after `epoch` as RandomStateBackup
    recorded it; returns what is wrong (for a warning) when that state is missing or does not
    fit the model, None when restored."""
    path = Path(backup_dir) / RANDOM_STATE
    saved = (_read_states(path) or {}).get(str(epoch))
    variables = random_variables(model)
    if saved is None or len(saved) != len(variables):
        return f"{path}: no random state for epoch {epoch}; the resumed run's dropout masks differ from an " \
               "uninterrupted run's"
    for variable, value in zip(variables, saved):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return None


def _finite(logs: dict | None) -> bool:
    return all(math.isfinite(float(v)) for v in (logs or {}).values() if isinstance(v, (int, float)))


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """ModelCheckpoint's `save_best_only` behaviour, written atomically, whose "best" is the
    early-stopping callback's: the same monitor, `min_delta` and state across a resume, so
    best.keras always holds the epoch that `restore_best_weights` restores (and the graph
    trainer's rule picks). List it after `early_stopping`. Epochs whose logs are not finite
    are never saved."""

    def __init__(self, path: str | os.PathLike, early_stopping: ResumableEarlyStopping) -> None:
        super().__init__()
        self.path, self.early_stopping = Path(path), early_stopping

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.early_stopping.best_recovered:  # an unreadable best.keras, its weights found in the backup
            save_model_atomic(self.model, self.path)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.early_stopping.best_epoch == epoch and _finite(logs):
            save_model_atomic(self.model, self.path)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """keras.callbacks.EarlyStopping whose wait/best/best weights continue after a resume.

    `state` is the run's saved early-stopping record (run_files format); `best_path` the
    best-epoch checkpoint, whose weights become `best_weights` again when resuming;
    `resumed_epoch` the epochs the weights in the model (the backup's) have done. The score,
    best epoch and wait always continue from `state`, also when `best_path` is unreadable:
    then the best weights are the backup's if the best epoch is the one resumed from
    (`best_recovered`: the checkpoint callback rewrites the file), else lost and said so.
    List it after BackupAndRestore, which puts the backup's weights in the model.
    """

    def __init__(self, state: dict, best_path: Path, resumed_epoch: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state, self.best_path, self.resumed_epoch = state, best_path, resumed_epoch
        self.best_recovered = self.best_lost = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if self.state.get("best") is None:
            return
        if self.restore_best_weights:
            current = self.model.get_weights()
            try:
                if not self.best_path.exists():
                    raise FileNotFoundError("missing")
                load_layer_weights(self.model, self.best_path)  # the optimizer stays the backup's
                self.best_weights = self.model.get_weights()
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:  # .keras is a zip
                self._unreadable_best(str(err).splitlines()[0][:160], current)
            self.model.set_weights(current)
        self.best, self.best_epoch = self.state["best"], self.state["best_epoch"]
        self.wait = self.state["wait"]

    def _unreadable_best(self, reason: str, current: list) -> None:
        epoch = self.state["best_epoch"]
        self.best_recovered = epoch == self.resumed_epoch - 1
        self.best_lost = not self.best_recovered
        if self.best_recovered:
            self.best_weights = current
            fate = f"epoch {epoch + 1}, the best so far, is the backup resumed from: rewritten from it"
        else:
            fate = (f"the weights of epoch {epoch + 1}, the best so far, are lost; early stopping keeps its "
                    f"score, and best.keras returns when an epoch beats it")
        print(f"warning: {self.best_path}: unreadable ({reason}); {fate}", file=sys.stderr)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.best_lost:
            super().on_epoch_end(epoch, logs)
            return
        # Keras reads "no best weights" as "no best yet" and would name this epoch the best
        # whatever its score: give it this epoch's weights and take them back unless it improved.
        self.best_weights, best_epoch = self.model.get_weights(), self.best_epoch
        super().on_epoch_end(epoch, logs)
        self.best_lost = self.best_epoch == best_epoch
        if self.best_lost:
            self.best_weights = None

    def record(self) -> dict:
        """The current state in run_files' early-stopping format."""
        return {"best": None if self.best is None else float(self.best), "best_epoch": self.best_epoch
                if self.best is not None else None, "wait": int(self.wait),
                "stopped_epoch": self.stopped_epoch or self.state.get("stopped_epoch")}


class RunFiles(keras.callbacks.Callback):
    """After each epoch: history.json/.csv/.png in graph_api's format, with images/s of the
    training part of the epoch (validation excluded)."""

    def __init__(self, out_dir: Path, history: dict, images_per_step: int, title: str,
                 early_stopping: ResumableEarlyStopping | None) -> None:
        super().__init__()
        self.out, self.history, self.images_per_step, self.title = out_dir, history, images_per_step, title
        self.early_stopping = early_stopping
        self.epoch, self.steps, self.started, self.train_seconds = 0, 0, 0.0, None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch, self.steps, self.train_seconds = epoch, 0, None
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.steps = batch + 1

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self.train_seconds is None:
            self.train_seconds = time.perf_counter() - self.started

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        seconds = self.train_seconds or (time.perf_counter() - self.started)
        values = [logs.get(k, float("nan")) for k in run_files.HISTORY_KEYS[:4]]
        values.append(self.steps * self.images_per_step / seconds)
        for key, value in zip(run_files.HISTORY_KEYS, values):
            self.history[key].append(float(value))
        if self.early_stopping is not None:
            self.history["early_stopping"] = self.early_stopping.record()
        run_files.save_history(self.out, self.history, self.title)


def keep_csv_rows(path: Path, rows: int) -> None:
    """Cut CSVLogger's epochs.csv to its header and first `rows` epochs (those being resumed from)."""
    if path.exists():
        lines = path.read_bytes().splitlines(keepends=True)  # as written: CSVLogger ends rows with \r\n
        if len(lines) > rows + 1:  # nothing to cut: the file stays as it is
            atomic_write_bytes(path, b"".join(lines[:rows + 1]))
