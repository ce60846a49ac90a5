"""Helpers for model tests: learnable feature shards (both APIs train on them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_pipeline.build import BuildOptions, ShardJob, make_manifest
from data_pipeline.shards import MANIFEST_NAME, write_shard
from plumbing.atomic import write_json


def feature_shards(out: Path, n_train=96, n_val=48, classes=4, shape=(2, 2, 512), seed=0) -> Path:
    """VGG16-feature-like shards (float32, non-negative) with a learnable class signal."""
    rng = np.random.default_rng(seed)
    directions = rng.random((classes,) + shape).astype(np.float32)
    done, jobs = {}, []
    for split, n in (("train", n_train), ("val", n_val)):
        labels = np.arange(n) % classes
        x = (rng.random((n,) + shape, dtype=np.float32) + 1.5 * directions[labels]).astype(np.float32)
        name = f"{split}-00000-of-00001.h5"
        digest = write_shard(out / name, x, labels, [f"U2OS-01_1_B{2 + i % 20:02d}" for i in range(n)],
                             [1] * n, {"image_mode": "vgg16_features", "class_names": [], "split": split})
        jobs.append(ShardJob(name, split, ()))
        done[name] = {"file": name, "split": split, "count": n, "sha256": digest, "skipped": [], "job": name}
    manifest = make_manifest(jobs, done, [f"sirna_{k}" for k in range(classes)],
                             BuildOptions(root=str(out), out_dir=str(out), image_mode="raw6"), "test")
    manifest.update(image_mode="vgg16_features", image_shape=list(shape), dtype="float32")
    write_json(out / MANIFEST_NAME, manifest)
    return out / MANIFEST_NAME
