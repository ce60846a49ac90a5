"""The files of a training run, the same for both APIs: run_config.json, history (JSON, CSV, PNG)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .errors import DataError
from .plots import plot_history
from .shards import atomic_write_bytes, write_json

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "images_per_sec")


def save_run_config(out_dir: Path, config: dict) -> None:
    """Write run_config.json, or check an existing one describes the same model and classes."""
    path = out_dir / "run_config.json"
    if path.exists():
        previous = json.loads(path.read_text())
        for key in ("model", "class_names", "image_shape"):
            if previous.get(key) != config.get(key):
                raise DataError(f"{path}: the run in {out_dir} has a different {key} "
                                f"({_short(previous.get(key))} vs {_short(config.get(key))}); use another --out")
        return
    write_json(path, config)


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) < 60 else text[:57] + "..."


def load_run_config(out_dir: Path) -> dict:
    path = Path(out_dir) / "run_config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not a training run (no run_config.json)") from None


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


def new_history() -> dict:
    return {**{k: [] for k in HISTORY_KEYS},
            "early_stopping": {"best": None, "best_epoch": None, "wait": 0, "stopped_epoch": None}}


def start_run(api: str, config, manifest_path, out_dir: Path, batch_size: int,
              steps_per_epoch: int | None) -> tuple[dict, int]:
    """What both trainers do first: load the manifest, fit `config` (a dataclass with model,
    num_classes, image_shape) to it, check the model suits the shards, write or check
    run_config.json in `out_dir` -> (manifest, train steps per epoch)."""
    from dataclasses import asdict
    from .dataset import num_batches
    from .shards import load_manifest
    manifest = load_manifest(manifest_path)
    config.num_classes = len(manifest["class_names"])
    config.image_shape = tuple(manifest["image_shape"])
    if config.model == "vgg16_head" and manifest["image_mode"] != "vgg16_features":
        raise DataError(f"{manifest['_path']}: vgg16_head trains on feature shards (extract-features), "
                        f"not {manifest['image_mode']!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_run_config(out_dir, {"api": api, "model": config.model, "class_names": manifest["class_names"],
                              "image_mode": manifest["image_mode"], "image_shape": list(config.image_shape),
                              f"{api}_config": asdict(config)})
    steps = steps_per_epoch or num_batches(manifest, "train", batch_size, True)
    if steps < 1:
        raise DataError(f"{manifest['_path']}: fewer train samples than one batch of {batch_size}")
    return manifest, steps
