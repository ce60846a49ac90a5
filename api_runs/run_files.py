"""The files of a training run, the same for both APIs: run_config.json, history (JSON, CSV, PNG).

The trainers own their configurations; this module only records them (`start_run`) and
the per-epoch history.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from data_pipeline.shards import load_manifest
from model_contract.model_inputs import check_manifest_input
from plumbing import locks
from plumbing.atomic import atomic_write_bytes, write_json
from plumbing.errors import UserError
from plumbing.figures import plt, save_figure

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "images_per_sec")
# Keys of run_config.json that must not change when a run directory is trained again.
IDENTITY_KEYS = ("model", "class_names", "image_shape", "outputs")
# The trainer's settings a run's saved state depends on (the optimizer's slots, a float16 loss
# scale), with their flags: a resume cannot continue that state under other values (the graph's
# checkpoint lacks the variables; Keras would start the optimizer afresh and say so only in a
# warning), so a resume keeps them and `--no-resume` starts a new record.
STATE_SETTINGS = {"optimizer": "--optimizer", "precision": "--precision"}


def save_run_config(out_dir: Path, config: dict, resume: bool = True) -> None:
    """Write run_config.json: the settings of the command that trains now. Over an existing one,
    first check that it describes the same model and classes and, with `resume`, the same
    settings of its trainer's own configuration (`<api>_config`) that the saved state depends
    on (`STATE_SETTINGS`); the others (the learning rate, ...) are the command's."""
    path = out_dir / "run_config.json"
    if path.exists():
        previous = json.loads(path.read_text())
        for key in IDENTITY_KEYS:
            if previous.get(key) != config.get(key):
                raise UserError(f"{path}: the run in {out_dir} has a different {key} "
                                f"({_short(previous.get(key))} vs {_short(config.get(key))}); use another --out")
        if resume:
            api_key = f"{config['api']}_config"
            was, now = previous.get(api_key) or {}, config[api_key]
            for key, flag in STATE_SETTINGS.items():
                if key in was and was[key] != now.get(key):
                    raise UserError(f"{path}: the run was trained with {flag} {was[key]}, not {now.get(key)}; "
                                    f"resume it with {flag} {was[key]}, or start afresh with --no-resume")
    write_json(path, config)


def record_placement(out_dir: Path, placement: dict) -> None:
    """Add where the run executed (devices as the runtime used them, strategy, cluster task)
    to its run_config.json, replacing the previous session's record."""
    path = out_dir / "run_config.json"
    write_json(path, dict(json.loads(path.read_text()), placement=placement))


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) < 60 else text[:57] + "..."


def load_run_config(out_dir: str | os.PathLike) -> dict:
    path = Path(out_dir) / "run_config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not a training run (no run_config.json)") from None


def load_training_manifest(path: str | os.PathLike, model: str) -> dict:
    """The shards manifest a run of `model` trains on; UserError if it cannot feed the model."""
    manifest = load_manifest(path)
    check_manifest_input(model, manifest)
    return manifest


def input_fields(manifest: dict) -> dict:
    """What a trainer's configuration takes from its shards: class count and sample shape."""
    return {"num_classes": len(manifest["class_names"]), "image_shape": tuple(manifest["image_shape"])}


def start_run(api: str, model: str, manifest: dict, out_dir: Path, api_config: dict, batch_size: int,
              steps_per_epoch: int | None, write: bool = True, resume: bool = True) -> int:
    """Create `out_dir` and write (or check) its run_config.json for `model` trained by `api`
    on `manifest` with `api_config` (the trainer's own configuration, as a dict; `resume`: the
    run continues the directory's saved state, see `save_run_config`)
    -> train steps per epoch (`steps_per_epoch`, or one pass over the train split).
    ``write=False`` (a worker that is not a cluster's chief) writes nothing."""
    from data_pipeline import num_batches  # imports TensorFlow: only when a run starts
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
        locks.hold(out_dir, f"python -m {api}_api train")  # released by `writing_run`'s end
        save_run_config(out_dir, {"api": api, "model": model, "class_names": manifest["class_names"],
                                  "image_mode": manifest["image_mode"], "image_shape": list(manifest["image_shape"]),
                                  # both APIs' models end in float32 logits; predict applies the softmax
                                  "outputs": "logits", f"{api}_config": api_config}, resume)
    steps = steps_per_epoch or num_batches(manifest, "train", batch_size, True)
    if steps < 1:
        raise UserError(f"{manifest['_path']}: fewer train samples than one batch of {batch_size}")
    return steps


@contextlib.contextmanager
def writing_run(out_dir: str | os.PathLike) -> Iterator[None]:
    """A training run's span: the run directory's lock, taken by `start_run`, is given up at its
    end, however it ends."""
    try:
        yield
    finally:
        locks.release(out_dir)


def save_history(out_dir: Path, history: dict, title: str) -> None:
    """history.json (with early-stopping state), history.csv and history.png, each atomic."""
    write_json(out_dir / "history.json", history)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("epoch",) + HISTORY_KEYS)
    for i in range(len(history["loss"])):
        writer.writerow([i + 1] + [history[k][i] for k in HISTORY_KEYS])
    atomic_write_bytes(out_dir / "history.csv", buffer.getvalue().encode())
    plot_history(history, out_dir / "history.png", title)


def load_history(out_dir: Path, epochs_done: int) -> dict | None:
    """The saved history cut to `epochs_done` epochs (the checkpoint's), or None."""
    path = out_dir / "history.json"
    if not path.exists():
        return None
    history = json.loads(path.read_text())
    for key in HISTORY_KEYS:
        history[key] = history[key][:epochs_done]
    return history


def completion_note(history: dict, epochs_done: int, epochs: int, out_dir: Path) -> str | None:
    """The line a trainer prints instead of training when the run in `out_dir` is complete
    (stopped early, or `epochs` reached); None while there is training to do."""
    stopped = history["early_stopping"].get("stopped_epoch")
    if stopped is not None:
        return f"run complete (stopped early after epoch {stopped + 1}) in {out_dir}; nothing to train"
    if epochs_done >= epochs:
        return (f"run complete (all {epochs} epochs done) in {out_dir}; nothing to train "
                f"(raise --epochs to train on)")
    return None


def refuse_restart(out_dir: Path, where: Path) -> None:
    """UserError if `out_dir` holds trained epochs although no checkpoint of them could be
    read: resuming would silently start over and overwrite the run."""
    previous = load_history(out_dir, 10 ** 9)
    if previous and previous["loss"]:
        raise UserError(f"{where}: no readable checkpoint of the {len(previous['loss'])} epoch(s) trained in "
                        f"{out_dir}; use --no-resume to start afresh")


def new_history() -> dict:
    return {**{k: [] for k in HISTORY_KEYS},
            "early_stopping": {"best": None, "best_epoch": None, "wait": 0, "stopped_epoch": None}}


def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike, title: str = "") -> Path:
    """Accuracy and loss per epoch, train vs validation (textbook P3.34) -> PNG."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for key, style in ((metric, "o-"), (f"val_{metric}", "s--")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path)
