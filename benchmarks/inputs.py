"""The data every mode of one comparison reads: the same in-memory batch, or the shards."""
from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from data_pipeline import make_dataset

from .config import BenchConfig


def synthetic_batch(config: BenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """One fixed batch: (B, H, W, C) float32 in [0, 1] (non-negative, like images or ReLU
    features) and (B,) int32 labels; the same for every mode given the seed."""
    rng = np.random.default_rng(config.seed)
    images = rng.random((config.batch,) + config.input_shape(), dtype=np.float32)
    labels = rng.integers(0, config.num_classes, config.batch).astype(np.int32)
    return images, labels


def train_dataset(config: BenchConfig) -> tf.data.Dataset:
    """Endless (images, labels) batches: the in-memory batch repeated, or the shards' train split."""
    if config.data == "pipeline":
        return make_dataset(config.manifest, "train", config.batch, shuffle=True, seed=config.seed,
                            drop_remainder=True, repeat=True)
    return tf.data.Dataset.from_tensors(synthetic_batch(config)).repeat()


def numpy_batches(config: BenchConfig):
    """Endless numpy batches for feed_dict, produced the way the textbook feeds them."""
    if config.data == "synthetic":
        batch = synthetic_batch(config)
        while True:
            yield batch
    for images, labels in train_dataset(config):
        yield images.numpy(), labels.numpy()


def pipeline_rate(manifest: str, batch: int, batches: int = 60, seed: int = 0) -> float:
    """Images/s the shards -> tf.data pipeline delivers alone (shuffled train split, float32)."""
    iterator = iter(make_dataset(manifest, "train", batch, shuffle=True, seed=seed, drop_remainder=True,
                                 repeat=True))
    next(iterator)  # opening files and the first read are not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)
