import hashlib
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import make_dataset, num_batches
from data_pipeline.shards import load_manifest
from plumbing.errors import UserError, user_error_behind

from conftest import REPO


def _stored(shard_dir, split):
    manifest = load_manifest(shard_dir / "manifest.json")
    images, labels = [], []
    for record in manifest["shards"]:
        if record["split"] == split:
            with h5py.File(shard_dir / record["file"], "r") as handle:
                images.append(handle["images"][:])
                labels.append(handle["labels"][:])
    return np.concatenate(images), np.concatenate(labels)


def _fingerprints(images, labels):
    return sorted(hashlib.sha1(im.tobytes()).hexdigest() + str(int(lb)) for im, lb in zip(images, labels))


def _collect(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


def test_every_sample_exactly_once_per_epoch(shard_dir):
    want_images, want_labels = _stored(shard_dir, "train")
    ds = make_dataset(shard_dir / "manifest.json", "train", 5, seed=1, scale=None, block_size=3)
    assert ds.cardinality().numpy() == -(-len(want_images) // 5) == num_batches(
        shard_dir / "manifest.json", "train", 5)
    images, labels = _collect(ds)
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    assert _fingerprints(images, labels) == _fingerprints(want_images, want_labels)
    assert not np.array_equal(images, want_images), "shuffled"


def test_float_conversion_and_one_hot(shard_dir):
    ds = make_dataset(shard_dir / "manifest.json", "val", 4, shuffle=False, one_hot=True)
    x, y = next(iter(ds))
    raw, labels = _stored(shard_dir, "val")
    assert x.dtype == tf.float32 and x.shape[1:] == (32, 32, 3)
    np.testing.assert_allclose(x.numpy(), raw[:4] / 255.0, atol=1e-6)
    assert y.shape == (4, len(load_manifest(shard_dir / "manifest.json")["class_names"]))
    assert (y.numpy().argmax(1) == labels[:4]).all()


def test_seed_makes_order_reproducible_and_epochs_differ(shard_dir):
    def order(seed):
        ds = make_dataset(shard_dir / "manifest.json", "train", 8, seed=seed, scale=None)
        return [_collect(ds)[1].tolist() for _ in range(2)]
    first, again, other = order(7), order(7), order(8)
    assert first == again
    assert first[0] != first[1], "reshuffled each epoch"
    assert first != other


def test_drop_remainder_and_repeat(shard_dir):
    total = len(_stored(shard_dir, "train")[0])
    ds = make_dataset(shard_dir / "manifest.json", "train", 5, drop_remainder=True)
    assert ds.cardinality().numpy() == total // 5
    assert all(x.shape[0] == 5 for x, _ in ds)
    repeated = make_dataset(shard_dir / "manifest.json", "train", 5, repeat=True)
    assert repeated.cardinality().numpy() == tf.data.INFINITE_CARDINALITY


def test_tf1_graph_mode_initializable_iterator(shard_dir):
    want = _fingerprints(*_stored(shard_dir, "val"))
    with tf.Graph().as_default():
        ds = make_dataset(shard_dir / "manifest.json", "val", 3, scale=None)
        iterator = tf.compat.v1.data.make_initializable_iterator(ds)
        images, labels = iterator.get_next()
        got_images, got_labels = [], []
        with tf.compat.v1.Session() as session:
            for _ in range(2):  # re-initialisable: a second epoch gives the same samples
                session.run(iterator.initializer)
                batches = []
                while True:
                    try:
                        batches.append(session.run([images, labels]))
                    except tf.errors.OutOfRangeError:
                        break
                got_images, got_labels = map(np.concatenate, zip(*batches))
                assert _fingerprints(got_images, got_labels) == want


def test_bad_requests_are_named(shard_dir, tmp_path):
    with pytest.raises(UserError, match="no shards for split 'nope'"):
        make_dataset(shard_dir / "manifest.json", "nope", 4)
    with pytest.raises(UserError, match="raw6"):
        make_dataset(shard_dir / "manifest.json", "train", 4, image_mode="raw6")
    with pytest.raises(UserError, match="manifest not found"):
        make_dataset(tmp_path / "manifest.json", "train", 4)


def test_truncated_shard_fails_with_its_name(shard_dir, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(shard_dir, copy)
    manifest = load_manifest(copy / "manifest.json")
    victim = copy / [r for r in manifest["shards"] if r["split"] == "val"][0]["file"]
    victim.write_bytes(victim.read_bytes()[:2000])
    with pytest.raises(tf.errors.OpError, match=victim.name) as raised:
        list(make_dataset(copy / "manifest.json", "val", 4))
    carried = user_error_behind(raised.value)  # what a command reports as its one line
    assert carried is not None and carried.message.startswith(str(victim))
    with pytest.raises(UserError, match=victim.name):
        make_dataset(copy / "manifest.json", "val", 4, verify=True)


@pytest.mark.slow
def test_batches_are_copied_to_a_named_device(shard_dir, tmp_path):
    """GPU path on a CPU-only machine: two logical CPUs, batches prefetched to the second."""
    script = tmp_path / "device.py"
    script.write_text(textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from data_pipeline import make_dataset
        ds = make_dataset({str(shard_dir / "manifest.json")!r}, "val", 4, shuffle=False, device="/cpu:1")
        x, y = next(iter(ds))
        print(x.device, int(tf.reduce_sum(y)))
    """))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1].split()[0].endswith("CPU:1")


FREED_MEMORY_PROBE = """
import sys
import numpy as np
from data_pipeline import make_dataset

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20

make_dataset(sys.argv[1], "val", 4, retain_memory=sys.argv[2] == "1")
before = rss_mb()
block = np.ones(100 * 2 ** 20, np.uint8)  # above glibc's largest dynamic mmap threshold (32 MB)
del block
print(rss_mb() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings")
def test_retain_memory_keeps_a_freed_large_block_in_the_process_and_false_returns_it(shard_dir):
    """retain_memory=True raises glibc's mmap threshold: a freed 100 MB block stays in the
    process (resident); False leaves glibc's default, which unmaps it on free."""
    kept = {}
    for retain in ("1", "0"):
        result = subprocess.run([sys.executable, "-c", FREED_MEMORY_PROBE, str(shard_dir / "manifest.json"), retain],
                                cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        kept[retain] = float(result.stdout.split()[-1])
    assert kept["1"] > 90 and kept["0"] < 10, kept
