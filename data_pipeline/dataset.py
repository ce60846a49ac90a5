"""The one `tf.data` input pipeline both model APIs consume.

Design, for speed on few cores: the per-sample stream carries only (shard, index) pairs
(a few bytes each), so shuffling and batching never copy pixels. Each pass over a split is
a uniform random permutation of all its samples (stateless: pass k of seed s is the same
order wherever and however often it is built); a batch of indices is sorted and then read
in one h5py call per contiguous run of samples, straight into the output array, converted
to float in one pass, prefetched, and copied to the GPU when one is visible. The build
stores each split in a seeded random order, so neither the stored order nor the sorting
within a batch puts neighbouring wells together. Works in eager mode and inside a TF1
`tf.Graph`.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator

import h5py
import numpy as np
import tensorflow as tf

from data_pipeline.allocator import keep_freed_memory
from data_pipeline.shards import (
    load_manifest,
    open_shard,
    shard_path,
    split_records,
    verify_manifest,
)
from plumbing.errors import UserError, record_for_tensorflow

SCALES = ("unit", "raw", None)  # [0, 1] floats, [0, 255] floats, or the stored uint8

# For the functions given to tf.data: they branch only on Python values, so AutoGraph has
# nothing to convert, and converting one writes its generated source to a temporary file that
# only a normal interpreter exit removes; a command that fails fast (plumbing.errors.exit_process)
# would leave those files behind.
without_autograph = tf.autograph.experimental.do_not_convert


def make_dataset(manifest_path: str | os.PathLike | dict, split: str, batch_size: int, *,
                 shuffle: bool | None = None, seed: int | None = None, repeat: bool = False,
                 image_mode: str | None = None, dtype: tf.DType = tf.float32, scale: str | None = "unit",
                 one_hot: bool = False, drop_remainder: bool = False, block_size: int = 1,
                 steps_per_epoch: int | None = None, first_epoch: int = 0,
                 deterministic: bool | None = None, device: str | None = "auto",
                 verify: bool = False, retain_memory: bool = True) -> tf.data.Dataset:
    """Batches of ``(images, labels)`` from the shards of one split.

    images: (B, H, W, C) `dtype`, in [0, 1] for ``scale="unit"``, [0, 255] for ``"raw"``,
    or the stored uint8 for ``None``; labels: (B,) int32 class indices (-1 = unlabelled),
    or (B, num_classes) float32 with ``one_hot``. One pass (without ``repeat``) yields every
    sample of the split exactly once, in a new order each time it is iterated; with ``repeat``
    each pass is reshuffled (pass k with seed pair (seed, k)). ``shuffle`` defaults to True
    for "train"; a ``seed`` (an int, or an int64 tensor such as a TF1 placeholder) makes the
    order reproducible. ``block_size`` > 1
    shuffles blocks of that many stored neighbours instead of single samples.
    ``steps_per_epoch``: an endless stream of epochs ``first_epoch``, ``first_epoch + 1``, ...,
    each the first `steps_per_epoch` batches of ``make_dataset(..., seed=epoch_seed(seed, e),
    repeat=True)``: the order a trainer that re-creates the dataset every epoch sees, so both
    APIs, and a resumed run, see the same batches in every epoch.
    ``device``: "auto" copies batches to the first GPU if any, a device name copies there,
    None keeps them on the host. ``retain_memory`` raises glibc's mmap/trim thresholds
    (see `data_pipeline.allocator`), which doubles the rate of large float batches.
    """
    manifest = _manifest(manifest_path)
    if image_mode is not None and image_mode != manifest["image_mode"]:
        raise UserError(f"{manifest['_path']}: shards hold {manifest['image_mode']!r}, "
                        f"not the requested {image_mode!r}")
    if batch_size < 1 or block_size < 1:
        raise UserError(f"batch_size {batch_size} and block_size {block_size} must be positive")
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}: expected one of {SCALES}")
    if verify:
        verify_manifest(manifest)
    if retain_memory:
        keep_freed_memory()
    records = split_records(manifest, split)
    shuffle = (split == "train") if shuffle is None else shuffle
    deterministic = True if deterministic is None else deterministic
    if seed is None:
        seed = int(np.random.default_rng().integers(2 ** 31))
    counts = [int(r["count"]) for r in records]
    blocks = tf.constant(_block_rows(counts, block_size), tf.int64)

    def epoch(epoch_seed_value, salted: bool = False) -> tf.data.Dataset:
        """Batches of (shard, index) pairs: passes 0, 1, ... (or one) with seeds (epoch_seed_value, k).
        `salted`: one pass whose k is drawn anew each time the dataset is iterated (reproducibly
        for the seed), so `fit` over a finite dataset sees a new order every epoch."""
        passes = tf.data.Dataset.range(2 ** 62 if repeat else 1)
        if salted:
            passes = tf.data.Dataset.random(seed=epoch_seed_value, rerandomize_each_iteration=True).take(1)
        indices = passes.flat_map(without_autograph(lambda k: tf.data.Dataset.from_tensor_slices(
            _pass_order(blocks, shuffle, epoch_seed_value, k)))).map(without_autograph(_block_to_indices)).unbatch()
        return indices.batch(batch_size, drop_remainder=drop_remainder)

    if steps_per_epoch is not None:
        batches = tf.data.Dataset.range(first_epoch, 2 ** 62).flat_map(
            without_autograph(lambda e: epoch(epoch_seed(tf.cast(seed, tf.int64), e)).take(steps_per_epoch)))
    else:
        batches = epoch(seed, salted=shuffle and not repeat and isinstance(seed, int))
    endless = repeat or steps_per_epoch is not None
    batches = batches.apply(tf.data.experimental.assert_cardinality(
        tf.data.INFINITE_CARDINALITY if endless
        else sum(counts) // batch_size if drop_remainder else -(-sum(counts) // batch_size)))
    reader = _BatchReader(manifest, records)
    batches = batches.map(without_autograph(reader.read_tensors), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=deterministic)
    # A map of its own: TF's cast runs outside the GIL, unlike the numpy read above.
    convert = _converter(dtype, scale, one_hot, len(manifest["class_names"]), manifest["dtype"])
    batches = batches.map(without_autograph(convert), num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return _to_device(batches, device)


def pass_order(manifest_path: str | os.PathLike | dict, split: str, seed, k=0) -> tf.Tensor:
    """(N, 2) int64 [shard, index] of every sample of `split` in the order of shuffled pass `k`
    for `seed` (ints or int64 tensors): the order `make_dataset(..., seed=seed, repeat=True)`
    streams in its pass k, for a feed_dict loop that reads its batches with `read_batches`."""
    manifest = _manifest(manifest_path)
    blocks = tf.constant(_block_rows(_counts(manifest, split), 1), tf.int64)
    return _pass_order(blocks, True, seed, k)[:, :2]


def stored_order(manifest_path: str | os.PathLike | dict, split: str) -> np.ndarray:
    """(N, 2) int64 [shard, index] of `split` as stored (`make_dataset(..., shuffle=False)`'s order)."""
    manifest = _manifest(manifest_path)
    return np.array(_block_rows(_counts(manifest, split), 1), np.int64).reshape(-1, 3)[:, :2]


def read_batches(manifest_path: str | os.PathLike | dict, split: str, orders: Iterable[np.ndarray],
                 batch_size: int, drop_remainder: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Numpy batches for a feed_dict loop, read from the shards without TensorFlow: the stream
    of (n, 2) [shard, index] arrays in `orders` (e.g. pass after pass of `pass_order`) cut into
    batches of `batch_size`, each read and scaled as `make_dataset(scale="unit")` reads it ->
    images (B, H, W, C) float32, labels (B,) int32; the same batches for the same order."""
    manifest = _manifest(manifest_path)
    reader = _BatchReader(manifest, split_records(manifest, split))
    factor = np.float32(1.0 / 255.0) if manifest["dtype"] == "uint8" else None
    pending = np.empty((0, 2), np.int64)

    def batch(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images, labels = reader.read(pairs)
        images = images.astype(np.float32)
        return (images * factor if factor is not None else images), labels

    for order in orders:
        pending = np.concatenate([pending, np.asarray(order, np.int64).reshape(-1, 2)])
        while len(pending) >= batch_size:
            yield batch(pending[:batch_size])
            pending = pending[batch_size:]
    if len(pending) and not drop_remainder:
        yield batch(pending)


def epoch_seed(seed, epoch):
    """The shuffle seed of one epoch (ints or int64 tensors): a resumed run, and the other
    API, see the same order as an uninterrupted run."""
    return seed * 100_003 + epoch


def _manifest(manifest_path: str | os.PathLike | dict) -> dict:
    """A loaded manifest as is, or the manifest at a path."""
    return manifest_path if isinstance(manifest_path, dict) else load_manifest(manifest_path)


def _counts(manifest: dict, split: str) -> list[int]:
    return [int(r["count"]) for r in split_records(manifest, split)]


def _block_rows(counts: list[int], block_size: int) -> list[tuple[int, int, int]]:
    """[shard, start, stop] of each run of `block_size` stored neighbours, shard after shard."""
    return [(i, start, min(start + block_size, n)) for i, n in enumerate(counts) for start in range(0, n, block_size)]


def _pass_order(blocks: tf.Tensor, shuffle: bool, seed, k) -> tf.Tensor:
    """The blocks of one pass: a stateless uniform permutation for seed pair (seed, k)."""
    if not shuffle:
        return blocks
    pair = tf.stack([tf.cast(seed, tf.int64), tf.cast(k, tf.int64)])
    return tf.gather(blocks, tf.random.experimental.stateless_shuffle(tf.range(tf.shape(blocks)[0]), seed=pair))


def _block_to_indices(block):
    """(3,) [shard, start, stop] -> (stop - start, 2) rows of [shard, index]."""
    positions = tf.range(block[1], block[2])
    return tf.stack([tf.fill(tf.shape(positions), block[0]), positions], axis=1)


class _BatchReader:
    """Reads a batch of (shard, index) pairs with one h5py call per contiguous run."""

    def __init__(self, manifest: dict, records: list[dict]) -> None:
        self.paths = [str(shard_path(manifest, r)) for r in records]
        self.shape = tuple(manifest["image_shape"])
        self.stored = np.dtype(manifest["dtype"])
        self._files: dict[str, tuple[h5py.Dataset, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _open(self, index: int) -> tuple[h5py.Dataset, np.ndarray]:
        """Shard `index`'s images dataset and all its labels (read once: a per-sample label
        read would cost as much as the image's)."""
        path = self.paths[index]
        with self._lock:
            if path not in self._files:
                try:
                    handle = open_shard(path)
                    self._files[path] = (handle["images"], handle["labels"][:])
                except UserError as err:
                    raise record_for_tensorflow(err) from None
                except (OSError, KeyError) as err:
                    raise record_for_tensorflow(UserError(f"{path}: unreadable shard ({err})")) from None
            return self._files[path]

    def read(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 2) int64 [shard, index] -> images (B, H, W, C) as stored, labels (B,) int32, in
        (shard, index) order: a batch is a set, and sorted it reads in fewer, forward calls."""
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        n = len(pairs)
        images = _aligned_empty((n,) + self.shape, self.stored)
        labels = np.empty(n, np.int32)
        new_run = np.flatnonzero((np.diff(pairs[:, 0]) != 0) | (np.diff(pairs[:, 1]) != 1)) + 1
        for lo, hi in zip(np.r_[0, new_run], np.r_[new_run, n]):
            shard, start = int(pairs[lo, 0]), int(pairs[lo, 1])
            stored_images, stored_labels = self._open(shard)
            try:
                stored_images.read_direct(images, np.s_[start:start + hi - lo], np.s_[lo:hi])
                labels[lo:hi] = stored_labels[start:start + hi - lo]
            except (OSError, KeyError, ValueError, TypeError) as err:
                raise record_for_tensorflow(UserError(
                    f"{self.paths[shard]}: cannot read samples {start}..{start + hi - lo} ({err})")) from None
        return images, labels

    def read_tensors(self, pairs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images, labels = tf.numpy_function(self.read, [pairs], [tf.as_dtype(self.stored), tf.int32],
                                           stateful=False)
        images.set_shape((None,) + self.shape)
        labels.set_shape((None,))
        return images, labels


def _aligned_empty(shape: tuple, dtype: np.dtype, align: int = 64) -> np.ndarray:
    """An uninitialised array whose data starts on an `align`-byte boundary, which lets
    TensorFlow take over the buffer of a numpy_function result instead of copying it."""
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    offset = (-raw.ctypes.data) % align
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def _converter(dtype: tf.DType, scale: str | None, one_hot: bool, num_classes: int, stored: str):
    factor = 1.0 / 255.0 if (scale == "unit" and stored == "uint8") else None

    def convert(images, labels):
        if scale is not None:
            images = tf.cast(images, dtype)
            if factor is not None:
                images = images * tf.constant(factor, dtype)
        if one_hot:
            labels = tf.one_hot(labels, num_classes, dtype=tf.float32)
        return images, labels
    return convert


def _to_device(dataset: tf.data.Dataset, device: str | None) -> tf.data.Dataset:
    if device == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        device = gpus[0].name if gpus else None
    if device is None:
        return dataset.prefetch(tf.data.AUTOTUNE)
    # Must be the last transformation: batches are staged in the device's memory.
    return dataset.apply(tf.data.experimental.prefetch_to_device(device, buffer_size=2))


def num_batches(manifest_path: str | os.PathLike | dict, split: str, batch_size: int,
                drop_remainder: bool = False) -> int:
    """Batches in one pass over a split (what `make_dataset` yields without repeat)."""
    manifest = _manifest(manifest_path)
    total = sum(r["count"] for r in split_records(manifest, split))
    return total // batch_size if drop_remainder else -(-total // batch_size)
