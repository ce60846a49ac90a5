"""The data every mode of one comparison reads: the same in-memory batch, in-memory arrays
walked batch by batch (as `fit(X, Y)` and the textbook's feed_dict loops read them), or the
shards."""
from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from benchmarks.config import BenchConfig, shape_text
from data_pipeline import make_dataset
from model_contract.small_models import SMALL_MODELS
from plumbing.errors import UserError

NUMPY_ARRAY_LIMIT_BYTES = 4 << 30  # in-memory arrays beyond this are refused, not swapped


def _samples(config: BenchConfig, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n samples: float32 inputs in [0, 1) (non-negative, like images or ReLU features) or token
    ids, and int32 labels ((n,) or one per token)."""
    spec = SMALL_MODELS.get(config.model)
    if spec is not None and spec.input_dtype == "int32":
        inputs = rng.integers(0, spec.vocabulary, (n,) + spec.input_shape).astype(np.int32)
    else:
        inputs = rng.random((n,) + config.input_shape(), dtype=np.float32)
    label_shape = spec.label_shape if spec is not None else ()
    return inputs, rng.integers(0, config.classes(), (n,) + label_shape).astype(np.int32)


def synthetic_batch(config: BenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """One fixed batch, the same for every mode given the seed."""
    return _samples(config, np.random.default_rng(config.seed), config.batch)


def array_batches(config: BenchConfig) -> int:
    """Whole batches in the in-memory arrays: one pass (`BenchConfig.whole_passes`), or enough that
    neither the call of warm-up + timed samples nor the profiled call (its lead sample included,
    `BenchConfig.profile_lead`) reaches the end of its first pass."""
    per = config.steps_per_sample()
    if config.whole_passes():
        return config.pass_batches()
    return max(config.warmup + config.steps, 1 + config.account) * per


def numpy_arrays(config: BenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """In-memory arrays (X, Y) of `array_batches` whole batches, walked again as epochs do."""
    n = array_batches(config) * config.batch
    nbytes = n * int(np.prod(config.input_shape())) * 4
    if nbytes > NUMPY_ARRAY_LIMIT_BYTES:
        raise UserError(f"{config.key()}: in-memory arrays of {n:,} samples would take {nbytes / 2 ** 30:.1f} GiB "
                        f"(at most {NUMPY_ARRAY_LIMIT_BYTES / 2 ** 30:.0f}); use fewer steps or a smaller epoch")
    return _samples(config, np.random.default_rng(config.seed), n)


def train_dataset(config: BenchConfig) -> tf.data.Dataset:
    """Endless (inputs, labels) batches of the configuration's data."""
    if config.data_spec.shards:
        dataset = make_dataset(config.manifest, "train", config.batch, shuffle=True, seed=config.seed,
                               drop_remainder=True, repeat=True)
        held = tuple(dataset.element_spec[0].shape[1:])
        if held != config.input_shape():  # a fully convolutional model would run them, under a wrong key
            raise UserError(f"{config.manifest}: the shards hold {shape_text(held)} images, not the "
                            f"configuration's {shape_text(config.input_shape())}")
        return dataset
    if config.data_spec.arrays:
        return tf.data.Dataset.from_tensor_slices(numpy_arrays(config)).batch(config.batch).repeat()
    return tf.data.Dataset.from_tensors(synthetic_batch(config)).repeat()


def numpy_batches(config: BenchConfig) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless numpy batches, produced the way the textbook feeds them: slices of arrays in
    memory (the same batch again for synthetic data)."""
    if config.data_spec.repeated_batch:
        batch = synthetic_batch(config)
        while True:
            yield batch
    if config.data_spec.arrays:
        inputs, labels = numpy_arrays(config)
        while True:
            for start in range(0, len(inputs), config.batch):
                yield inputs[start:start + config.batch], labels[start:start + config.batch]
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
