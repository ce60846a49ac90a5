"""Batches that mix: the stored order is a seeded permutation, batch compositions match a
uniform shuffle, and every way of building the train stream (eager, TF1 graph with a seed
placeholder, Keras's endless stream, a resumed one) gives each epoch the same batches."""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from data_pipeline import make_dataset
from data_pipeline.build import BuildOptions, ShardJob, make_manifest, plan_shards
from data_pipeline.dataset import epoch_seed
from data_pipeline.shards import MANIFEST_NAME, write_shard
from plumbing.atomic import write_json

v1 = tf.compat.v1
PLATES, WELLS, SITES, BATCH, EPOCHS = 4, 30, 2, 16, 30  # 240 samples; the demo trains batch 16


@pytest.fixture(scope="module")
def sorted_shards(tmp_path_factory) -> Path:
    """Shards stored in id order (plate, well, site): the reader alone must mix them.
    Each 1x1x3 image encodes its sample number (r + 256 g)."""
    out = tmp_path_factory.mktemp("sorted")
    n = PLATES * WELLS * SITES
    pixels = np.stack([np.arange(n) % 256, np.arange(n) // 256, np.zeros(n)], 1).astype(np.uint8)[:, None, None, :]
    ids = [f"U2OS-01_{p + 1}_B{w + 2:02d}" for p in range(PLATES) for w in range(WELLS) for _ in range(SITES)]
    sites = [s + 1 for _ in range(PLATES * WELLS) for s in range(SITES)]
    done, jobs = {}, []
    for i, lo in enumerate(range(0, n, 64)):
        name = f"train-{i:05d}-of-00004.h5"
        hi = min(lo + 64, n)
        digest = write_shard(out / name, pixels[lo:hi], np.zeros(hi - lo, np.int32), ids[lo:hi], sites[lo:hi],
                             {"image_mode": "rgb224", "class_names": ["a"], "split": "train"})
        jobs.append(ShardJob(name, "train", ()))
        done[name] = {"file": name, "split": "train", "count": hi - lo, "sha256": digest, "skipped": [], "job": name}
    manifest = make_manifest(jobs, done, ["a"], BuildOptions(root=str(out), out_dir=str(out), image_size=1), "t")
    write_json(out / MANIFEST_NAME, manifest)
    return out / MANIFEST_NAME


def _numbers(images) -> list[int]:
    images = np.asarray(images).reshape(len(images), 3).astype(int)
    return (images[:, 0] + 256 * images[:, 1]).tolist()


def _epochs_of_batches(ds, epochs, steps) -> list[list[frozenset]]:
    it = iter(ds)
    return [[frozenset(_numbers(next(it)[0])) for _ in range(steps)] for _ in range(epochs)]


def _statistics(batches: list[frozenset]) -> tuple[float, float, int]:
    """Mean same-well and same-plate pairs per batch, and distinct compositions."""
    well = [sum(a // SITES == b // SITES for a, b in combinations(sorted(batch), 2)) for batch in batches]
    plate = [sum(a // (WELLS * SITES) == b // (WELLS * SITES) for a, b in combinations(sorted(batch), 2))
             for batch in batches]
    return float(np.mean(well)), float(np.mean(plate)), len(set(batches))


def _uniform_quantiles(steps: int, trials: int = 200) -> np.ndarray:
    """The three statistics of a uniform shuffle at the same settings: (0.1%, 99.9%) per statistic."""
    rng = np.random.default_rng(0)
    n = PLATES * WELLS * SITES
    values = [_statistics([frozenset(perm[i * BATCH:(i + 1) * BATCH].tolist())
                           for perm in (rng.permutation(n) for _ in range(EPOCHS)) for i in range(steps)])
              for _ in range(trials)]
    return np.quantile(np.array(values), [0.001, 0.999], axis=0)


@pytest.mark.slow
def test_batch_compositions_are_those_of_a_uniform_shuffle(sorted_shards):
    steps = PLATES * WELLS * SITES // BATCH
    ds = make_dataset(sorted_shards, "train", BATCH, seed=0, scale=None, drop_remainder=True,
                      steps_per_epoch=steps)
    batches = [batch for epoch in _epochs_of_batches(ds, EPOCHS, steps) for batch in epoch]
    assert all(len(batch) == BATCH for batch in batches)
    same_well, same_plate, distinct = _statistics(batches)
    low, high = _uniform_quantiles(steps)
    assert low[0] <= same_well <= high[0], (same_well, low[0], high[0])      # uniform: ~0.5 per batch
    assert low[1] <= same_plate <= high[1], (same_plate, low[1], high[1])    # uniform: ~30 of 120 pairs
    assert distinct >= low[2], (distinct, low[2])                             # uniform: every batch new


def test_every_pass_is_a_permutation_of_the_split(sorted_shards):
    ds = make_dataset(sorted_shards, "train", 8, seed=3, scale=None, repeat=True)  # 8 divides 240
    seen = _numbers(np.concatenate([images for images, _ in ds.take(2 * 240 // 8)]))
    assert sorted(seen[:240]) == list(range(240)) and seen[:240] != seen[240:480]


def test_both_apis_and_a_resumed_run_see_the_same_epochs(sorted_shards):
    seed, steps = 5, 9
    keras_stream = _epochs_of_batches(make_dataset(sorted_shards, "train", BATCH, seed=seed, scale=None,
                                                   drop_remainder=True, steps_per_epoch=steps), 3, steps)
    resumed = _epochs_of_batches(make_dataset(sorted_shards, "train", BATCH, seed=seed, scale=None,
                                              drop_remainder=True, steps_per_epoch=steps, first_epoch=2), 1, steps)
    assert resumed[0] == keras_stream[2]
    graph = tf.Graph()  # the graph trainer: one initializable iterator, re-seeded every epoch
    with graph.as_default():
        seed_feed = v1.placeholder(tf.int64, ())
        it = v1.data.make_initializable_iterator(make_dataset(sorted_shards, "train", BATCH, seed=seed_feed,
                                                              scale=None, drop_remainder=True, repeat=True))
        images, _ = it.get_next()
        with v1.Session() as session:
            graph_epochs = []
            for epoch in range(3):
                session.run(it.initializer, {seed_feed: epoch_seed(seed, epoch)})
                graph_epochs.append([frozenset(_numbers(session.run(images))) for _ in range(steps)])
    assert graph_epochs == keras_stream
    assert keras_stream[0] != keras_stream[1]


def test_build_stores_each_split_in_a_seeded_permutation():
    sites = pd.DataFrame({"dataset": "train", "experiment": "U2OS-01", "plate": 1,
                          "well": [f"B{w:02d}" for w in range(2, 22) for _ in (1, 2)], "site": [1, 2] * 20,
                          "sirna": 1, "split": "train"})
    sites["id_code"] = "U2OS-01_1_" + sites["well"]

    def order(seed):
        return [(s[5], s[4]) for job in plan_shards(sites, ["sirna_1"], 8, seed) for s in job.samples]
    assert sorted(order(0)) == sorted(zip(sites["id_code"], sites["site"]))
    assert order(0) == order(0) and order(0) != order(1) and order(0) != sorted(order(0))
