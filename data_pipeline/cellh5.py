"""The textbook's single-file layout, ``cell.h5``: x_train, y_train, x_val, y_val, classes.

Export gathers the train and val shards of a manifest into one file as the book's code
reads it: images uint8, labels one-hot uint8 rows in class order (what ``pd.get_dummies``
gives, for ``categorical_crossentropy``), class names as bytes. Import turns such a file back
into shards + manifest so ``make_dataset`` can read it; it takes one-hot rows or class
indices. Images written with the book's ``'i1'`` (int8) dtype come in two kinds: wrapped
(values over 127 stored as negatives: reinterpreted as uint8, exactly restored) and
saturated (h5py clips values over 127 to 127 on assignment: the pixels are lost, refused).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import h5py
import numpy as np

from data_pipeline.build import BuildOptions, ShardJob, make_manifest
from data_pipeline.constants import IMAGE_MODE_RAW, IMAGE_MODE_RGB
from data_pipeline.shards import (
    content_tag,
    load_manifest,
    open_h5,
    publish_manifest,
    read_split,
    write_h5,
    write_shard,
)
from plumbing.errors import UserError

SPLITS = (("train", "x_train", "y_train"), ("val", "x_val", "y_val"))


# A saturated int8 file: no negative value and at least this fraction of pixels at 127.
SATURATED_FRACTION = 0.001


def one_hot_rows(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) class indices -> (N, num_classes) uint8 one-hot rows (pandas 1.x `get_dummies`)."""
    rows = np.zeros((len(labels), num_classes), np.uint8)
    rows[np.arange(len(labels)), labels] = 1
    return rows


def export_cell_h5(manifest_path: str | os.PathLike, out_path: str | os.PathLike) -> dict:
    """Write `out_path` (atomically) from the manifest's train and val splits; returns counts."""
    manifest = load_manifest(manifest_path)
    if manifest["dtype"] != "uint8":
        raise UserError(f"{manifest['_path']}: shards hold {manifest['dtype']} {manifest['image_mode']}; "
                        f"cell.h5 holds uint8 images (export the image shards, not features)")
    splits = {split: read_split(manifest, split, ("images", "labels")) for split, _, _ in SPLITS}
    for split, data in splits.items():
        if (data["labels"] < 0).any():
            raise UserError(f"{manifest['_path']}: split {split!r} has unlabelled samples; cell.h5 needs labels")
    out_path = Path(out_path)
    counts = {}

    def fill(handle: h5py.File) -> None:
        for split, x_name, y_name in SPLITS:
            images, labels = splits[split]["images"], splits[split]["labels"]
            handle.create_dataset(x_name, data=images, dtype="uint8")
            handle.create_dataset(y_name, data=one_hot_rows(labels, len(manifest["class_names"])))
            counts[split] = len(images)
        handle.create_dataset("classes", data=np.asarray(manifest["class_names"], dtype="S"))
    write_h5(out_path, fill)
    return counts


def _load_cell_arrays(path: Path) -> tuple[dict, list[str]]:
    with open_h5(path) as handle:
        missing = [k for k in ("x_train", "y_train", "x_val", "y_val", "classes") if k not in handle]
        if missing:
            raise UserError(f"{path}: missing dataset(s) {', '.join(missing)}")
        arrays = {k: handle[k][:] for k in ("x_train", "y_train", "x_val", "y_val")}
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in handle["classes"][:]]
    return arrays, classes


def _as_uint8(x: np.ndarray, path: Path, name: str) -> np.ndarray:
    if x.dtype == np.int8:
        at_max = float(np.mean(x == 127)) if x.size else 0.0
        if x.size and x.min() >= 0 and at_max >= SATURATED_FRACTION:
            raise UserError(f"{path}: {name} is int8 with no value below 0 and {at_max:.1%} of pixels at 127: "
                            f"pixels over 127 were clipped when it was written (h5py saturates on "
                            f"assignment), so they cannot be restored; write the images as uint8")
        print(f"{path}: {name} is int8 (the book's 'i1'); reinterpreting as uint8", file=sys.stderr)
        return x.view(np.uint8)
    if x.dtype != np.uint8:
        raise UserError(f"{path}: {name} has dtype {x.dtype}, expected uint8")
    return x


def _as_labels(y: np.ndarray, n_classes: int, path: Path, name: str) -> np.ndarray:
    labels = y.argmax(axis=1) if y.ndim == 2 else y
    if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() >= n_classes)):
        raise UserError(f"{path}: {name} must hold class indices 0..{n_classes - 1} or one-hot rows")
    return labels.astype(np.int32)


def import_cell_h5(path: str | os.PathLike, out_dir: str | os.PathLike, shard_size: int = 256) -> dict:
    """Shards + manifest from a cell.h5; returns the manifest."""
    path, out_dir = Path(path), Path(out_dir)
    arrays, classes = _load_cell_arrays(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    x_train = _as_uint8(arrays["x_train"], path, "x_train")
    if x_train.ndim != 4 or x_train.shape[-1] not in (3, 6) or x_train.shape[1] != x_train.shape[2]:
        raise UserError(f"{path}: x_train has shape {x_train.shape}, expected (N, S, S, 3 or 6)")
    mode = IMAGE_MODE_RGB if x_train.shape[-1] == 3 else IMAGE_MODE_RAW
    options = BuildOptions(root=str(path), out_dir=str(out_dir), image_mode=mode,
                           image_size=x_train.shape[1], shard_size=shard_size,
                           source={"cell_h5": str(path.resolve())})
    done, jobs = {}, []
    stat = path.stat()  # the file was just read whole: its identity, not a second read, names the shards
    tag = content_tag(str(path.resolve()), stat.st_size, stat.st_mtime_ns, shard_size)
    for split, x_name, y_name in SPLITS:
        x = _as_uint8(arrays[x_name], path, x_name)
        if x.shape[1:] != x_train.shape[1:]:
            raise UserError(f"{path}: {x_name} has samples of shape {x.shape[1:]}, x_train {x_train.shape[1:]}")
        y = _as_labels(arrays[y_name], len(classes), path, y_name)
        if len(y) != len(x):
            raise UserError(f"{path}: {x_name} has {len(x)} samples but {y_name} has {len(y)}")
        n_shards = -(-len(x) // shard_size)
        for i in range(n_shards):
            lo, hi = i * shard_size, min((i + 1) * shard_size, len(x))
            name = f"{split}-{i:05d}-of-{n_shards:05d}-{tag}.h5"
            ids = [f"{x_name}[{j}]" for j in range(lo, hi)]
            digest = write_shard(out_dir / name, x[lo:hi], y[lo:hi], ids, [0] * (hi - lo),
                                 {"image_mode": mode, "class_names": classes, "split": split,
                                  "source": options.source})
            jobs.append(ShardJob(name, split, ()))
            done[name] = {"file": name, "split": split, "count": hi - lo, "sha256": digest,
                          "skipped": [], "job": name}
    manifest = make_manifest(jobs, done, classes, options, fingerprint="cell_h5")
    publish_manifest(out_dir, manifest)
    return manifest
