"""HDF5 shards and their manifest: the on-disk format both model APIs read.

A shard holds ``images`` (N, H, W, C) uint8 (or float32 for cached features),
``labels`` (N,) int32 (-1 = unlabelled), ``id_codes`` (N,) and ``sites`` (N,) uint8, with
fletcher32 checksums on every dataset. It is written atomically
(`atomic.atomic_path`), so a final name never holds half a shard. ``manifest.json`` lists
each shard's split, count and SHA-256.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from data_pipeline.constants import SHARD_SCHEMA_VERSION
from plumbing.atomic import atomic_path, write_json
from plumbing.errors import UserError

MANIFEST_NAME = "manifest.json"
SHARD_FIELDS = ("images", "labels", "id_codes", "sites")
# Shard files: <split>-<i>-of-<n>[-<tag>].h5. The tag (8 hex digits, from the build's plan)
# gives each build's shards names of their own, so a build never overwrites the shards a
# published manifest lists: its new manifest replaces the old one only when it is complete.
SHARD_FILE = re.compile(r"^(?P<base>[a-z_]+-\d{5}-of-\d{5})(-(?P<tag>[0-9a-f]{8}))?\.h5$")
_CHUNK_BYTES = 1 << 16


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_shard(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                id_codes: Sequence[str], sites: Sequence[int], attrs: dict[str, Any],
                before_rename=None) -> str:
    """Write one shard atomically; returns its SHA-256. `attrs` become HDF5 attributes."""
    n = len(images)
    if not (len(labels) == len(id_codes) == len(sites) == n) or n == 0:
        raise ValueError(f"shard {path}: {n} images but {len(labels)} labels, "
                         f"{len(id_codes)} ids, {len(sites)} sites")
    chunk = (_chunk_samples(images[0].nbytes, n),) + images.shape[1:]

    def fill(handle: h5py.File) -> None:
        handle.create_dataset("images", data=images, chunks=chunk, fletcher32=True)
        handle.create_dataset("labels", data=np.asarray(labels, np.int32), fletcher32=True)
        handle.create_dataset("id_codes", data=np.asarray(id_codes, dtype="S"), fletcher32=True)
        handle.create_dataset("sites", data=np.asarray(sites, np.uint8), fletcher32=True)
        handle.attrs["schema_version"] = SHARD_SCHEMA_VERSION
        for key, value in attrs.items():
            handle.attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return write_h5(path, fill, before_rename)


def write_h5(path: str | os.PathLike, fill: Callable[[h5py.File], None], before_rename=None) -> str:
    """An HDF5 file made in memory by `fill(handle)`, then written to `path` atomically -> its
    SHA-256. HDF5 itself never writes to disk, so a failed write (a full disk, a file-size limit)
    is one OSError naming the file, with nothing half-written and nothing left for HDF5 to
    flush (and fail again) when its objects are freed."""
    with h5py.File(f"{Path(path).name}.in-memory", "w", driver="core", backing_store=False) as handle:
        fill(handle)
        handle.flush()
        image = handle.id.get_file_image()
    with atomic_path(path) as tmp:
        tmp.write_bytes(image)
        if before_rename:
            before_rename(tmp)
        digest = sha256_file(tmp)
    return digest


def tagged_name(name: str, tag: str) -> str:
    """`train-00000-of-00003.h5` (with or without a tag) -> `train-00000-of-00003-<tag>.h5`."""
    match = SHARD_FILE.match(name)
    if match is None:
        raise ValueError(f"not a shard file name: {name!r}")
    return f"{match['base']}-{tag[:8]}.h5"


def content_tag(*parts) -> str:
    """An 8-hex-digit tag of what determines a set of shards (JSON-serialisable `parts`)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]


def publish_manifest(out_dir: Path, manifest: dict) -> None:
    """Replace `out_dir`/manifest.json atomically, then delete the shard files it no longer
    lists (an earlier build's, or an abandoned one's). Call only when every listed shard is written."""
    write_json(out_dir / MANIFEST_NAME, manifest)
    listed = {record["file"] for record in manifest["shards"]}
    for path in out_dir.glob("*.h5"):
        if SHARD_FILE.match(path.name) and path.name not in listed:
            path.unlink(missing_ok=True)


def _chunk_samples(sample_bytes: int, n: int) -> int:
    """Samples per HDF5 chunk: one sample of 64 KiB or more (the reader draws samples in a
    uniform random order, and a larger chunk would be decoded, checksum and all, for each
    sample it holds), else a power of two of up to ~64 KiB (small samples: fewer chunks)."""
    fit = max(1, _CHUNK_BYTES // max(1, sample_bytes))
    return min(n, 1 << (fit.bit_length() - 1))


def open_h5(path: str | os.PathLike, what: str = "HDF5 file", missing: str | None = None) -> h5py.File:
    """Open an HDF5 file for reading; UserError naming it if it is missing (``missing``, or
    "<what> not found") or unreadable."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise UserError(f"{path}: {missing or what + ' not found'}") from None
    except OSError as err:
        raise UserError(f"{path}: not a readable {what} ({str(err).splitlines()[0][:200]})") from None


def load_manifest(path: str | os.PathLike) -> dict:
    """Read and sanity-check a manifest.json (structure only; `verify_manifest` checks data)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: manifest not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: manifest is not valid JSON ({err})") from None
    required = ("schema_version", "image_mode", "image_shape", "dtype", "class_names", "shards")
    missing = [k for k in required if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise UserError(f"{path}: manifest lacks {', '.join(missing)}")
    if manifest["schema_version"] != SHARD_SCHEMA_VERSION:
        raise UserError(f"{path}: schema version {manifest['schema_version']}, "
                        f"this code reads {SHARD_SCHEMA_VERSION}")
    manifest["_dir"] = str(path.parent.resolve())
    manifest["_path"] = str(path.resolve())
    return manifest


def shard_path(manifest: dict, record: dict) -> Path:
    path = (Path(manifest["_dir"]) / record["file"]).resolve()
    if Path(manifest["_dir"]) not in path.parents:
        raise UserError(f"{manifest['_path']}: shard {record['file']!r} lies outside the manifest folder")
    return path


def split_records(manifest: dict, split: str) -> list[dict]:
    records = [r for r in manifest["shards"] if r["split"] == split]
    if not records:
        splits = sorted({r["split"] for r in manifest["shards"]})
        raise UserError(f"{manifest['_path']}: no shards for split {split!r} (has {splits})")
    return records


def verify_shard(manifest: dict, record: dict, check_sha: bool = True) -> None:
    """Raise UserError naming the shard if its checksum, count or shapes disagree with the manifest."""
    path = shard_path(manifest, record)
    if not path.is_file():
        raise UserError(f"{path}: shard listed in the manifest is missing")
    if check_sha and sha256_file(path) != record["sha256"]:
        raise UserError(f"{path}: SHA-256 does not match the manifest (file changed or truncated)")
    try:
        with h5py.File(path, "r") as handle:
            images, labels = handle["images"], handle["labels"]
            counts = {len(images), len(labels), len(handle["id_codes"]), len(handle["sites"])}
            shape = list(images.shape[1:])
            label_values = labels[:]
            images[:]  # reading every chunk checks its fletcher32 checksum
    except (OSError, KeyError) as err:
        raise UserError(f"{path}: unreadable shard ({err})") from None
    if counts != {record["count"]}:
        raise UserError(f"{path}: holds {sorted(counts)} samples, manifest says {record['count']}")
    if shape != list(manifest["image_shape"]):
        raise UserError(f"{path}: sample shape {shape}, manifest says {manifest['image_shape']}")
    if label_values.size and (label_values.min() < -1 or label_values.max() >= len(manifest["class_names"])):
        raise UserError(f"{path}: labels outside 0..{len(manifest['class_names']) - 1}")


def verify_manifest(manifest: dict, check_sha: bool = True) -> None:
    for record in manifest["shards"]:
        verify_shard(manifest, record, check_sha)


def open_shard(path: str | os.PathLike) -> h5py.File:
    """Open a shard a manifest lists; UserError naming it if it is missing or unreadable."""
    return open_h5(path, "shard", missing="shard listed in the manifest is missing")


def read_shard(manifest: dict, record: dict, fields=SHARD_FIELDS) -> dict[str, np.ndarray]:
    """The datasets `fields` of one shard, read whole; UserError naming the shard if it is
    missing, truncated or lacks a field."""
    path = shard_path(manifest, record)
    with open_shard(path) as handle:
        try:
            return {field: handle[field][:] for field in fields}
        except (OSError, KeyError) as err:
            raise UserError(f"{path}: unreadable shard ({str(err).splitlines()[0][:200]})") from None


def read_split(manifest: dict, split: str, fields=SHARD_FIELDS) -> dict[str, np.ndarray]:
    """The datasets `fields` of every shard of `split`, concatenated in manifest order."""
    parts = [read_shard(manifest, record, fields) for record in split_records(manifest, split)]
    return {field: np.concatenate([part[field] for part in parts]) for field in fields}


def label_counts(manifest: dict) -> dict[str, np.ndarray]:
    """Per split, the number of samples of each class (index -1 = unlabelled at the end)."""
    n_classes = len(manifest["class_names"])
    counts: dict[str, np.ndarray] = {}
    for record in manifest["shards"]:
        labels = read_shard(manifest, record, ("labels",))["labels"]
        per_class = np.bincount(np.where(labels < 0, n_classes, labels), minlength=n_classes + 1)
        counts[record["split"]] = counts.get(record["split"], 0) + per_class
    return counts
