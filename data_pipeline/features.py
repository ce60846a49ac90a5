"""Cached features (textbook P3.27-P3.30): run a function over every shard, write feature shards.

Both APIs' `extract-features` use this: they supply `compute`, a function from a batch of
model input (N, H, W, C) float32 to features (N, h, w, c) float32; shards, labels, ids and
the manifest are carried over here.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from data_pipeline.build import BuildOptions, ShardJob, make_manifest
from data_pipeline.constants import FEATURE_MODE
from data_pipeline.images import as_model_input
from data_pipeline.shards import (
    content_tag,
    load_manifest,
    publish_manifest,
    read_shard,
    tagged_name,
    write_shard,
)
from plumbing import locks


def write_feature_shards(manifest_path: str, out_dir: str | Path, compute: Callable[[np.ndarray], np.ndarray],
                         source: dict, batch_size: int = 32) -> dict:
    """Feature shards with the same files, splits, labels and ids as `manifest_path`'s; returns the manifest."""
    manifest = load_manifest(manifest_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with locks.hold(out_dir, locks.command_name()):  # one writer of a folder at a time
        return _write_locked(manifest, out_dir, compute, source, batch_size)


def _write_locked(manifest: dict, out_dir: Path, compute: Callable[[np.ndarray], np.ndarray], source: dict,
                  batch_size: int) -> dict:
    tag = content_tag([r["sha256"] for r in manifest["shards"]], source)
    done, jobs, shape = {}, [], None
    for record in manifest["shards"]:
        name = tagged_name(record["file"], tag)
        shard = read_shard(manifest, record)
        pixels = shard["images"]
        features = np.concatenate([compute(as_model_input(pixels[i:i + batch_size]))
                                   for i in range(0, len(pixels), batch_size)]).astype(np.float32)
        shape = list(features.shape[1:])
        digest = write_shard(out_dir / name, features, shard["labels"], [i.decode() for i in shard["id_codes"]],
                             shard["sites"],
                             {"image_mode": FEATURE_MODE, "class_names": manifest["class_names"],
                              "split": record["split"], "source": source})
        jobs.append(ShardJob(name, record["split"], ()))
        done[name] = dict(record, file=name, sha256=digest, skipped=[], job=name)
    result = make_manifest(jobs, done, manifest["class_names"],
                           BuildOptions(root=manifest["_path"], out_dir=str(out_dir), source=source),
                           fingerprint="features")
    result.update(image_mode=FEATURE_MODE, image_shape=shape, dtype="float32")
    publish_manifest(out_dir, result)
    return result
