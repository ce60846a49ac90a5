"""Input-pipeline throughput: shard build rate and tf.data read rate.

    python -m benchmarks pipeline --work-dir /tmp/pipeline-bench [--json out.json]

Build rate: sites/s from 512x512 6-channel PNGs to rgb224 shards, with N processes.
Read rate: images/s of 224x224x3 uint8 shards -> float32 [0, 1] batches of 64 through
`make_dataset` (shuffled, as training reads them). Each is the median of repeats.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from benchmarks.analyse.stats import format_rate, summarize
from benchmarks.measure.runner import machine_info
from data_pipeline import make_dataset
from data_pipeline.build import BuildOptions, build_shards, plan_shards, select_sites
from data_pipeline.synthetic import SynthConfig, generate

BUILD_TARGET = 15.0    # sites/s with 2 processes
READ_TARGET = 3000.0   # images/s


def measure_build_rate(root: Path, work: Path, workers: int, repeats: int, shard_size: int = 64) -> dict:
    """Fresh full builds of every training site in `root`; returns the summary of sites/s."""
    sites, classes = select_sites(root, val_fraction=0.0)
    jobs = plan_shards(sites, classes, shard_size)
    rates = []
    for i in range(repeats):
        out = work / f"build-{i}"
        shutil.rmtree(out, ignore_errors=True)
        options = BuildOptions(root=str(root), out_dir=str(out), shard_size=shard_size, workers=workers)
        start = time.perf_counter()
        build_shards(jobs, classes, options)
        rates.append(len(sites) / (time.perf_counter() - start))
    return dict(summarize(rates), sites=len(sites), workers=workers)


def measure_read_rate(manifest: Path, batch_size: int, batches: int, repeats: int) -> dict:
    """Images/s of `make_dataset` over `batches` batches after one warm-up pass."""
    dataset = make_dataset(manifest, "train", batch_size, shuffle=True, seed=0, repeat=True)
    iterator = iter(dataset)
    for _ in range(10):  # warm-up: start the interleave workers and autotuning
        next(iterator)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            images, _labels = next(iterator)
        _ = images.numpy()  # the batch exists in host memory, not just as a handle
        rates.append(batches * batch_size / (time.perf_counter() - start))
    return dict(summarize(rates), batch_size=batch_size, batches=batches)


def run(work: Path, wells: int, workers: int, repeats: int) -> dict:
    root = work / "rxrx1"
    if not (root / "train.csv").exists():
        generate(SynthConfig(num_classes=10, train_experiments=1, test_experiments=0, plates=2,
                             wells_per_plate=wells, seed=0), root)
    build = measure_build_rate(root, work, workers, repeats)
    read = measure_read_rate(work / "build-0" / "manifest.json", 64, 60, max(repeats, 5))
    targets = {"build_sites_per_s": BUILD_TARGET, "read_images_per_s": READ_TARGET}
    rates = {"build_sites_per_s": build, "read_images_per_s": read}
    return {**rates, "targets": targets, "met": {k: rates[k]["median"] >= targets[k] for k in targets},
            "machine": machine_info()}


def _against(rate: dict, target: float) -> str:
    """A rate's median against its target: met, or missed by how much."""
    if rate["median"] >= target:
        return f"target >= {target:,g}: met"
    return f"target >= {target:,g}: missed by {1 - rate['median'] / target:.0%}"


def print_rates(results: dict) -> None:
    """The two rates as a person reads them, against their targets."""
    build, read = results["build_sites_per_s"], results["read_images_per_s"]
    targets = results["targets"]
    print(f"shard build: {format_rate(build, 'sites/s')} with {build['workers']} processes, "
          f"512x512x6 PNG -> rgb224 [{_against(build, targets['build_sites_per_s'])}]")
    print(f"tf.data read: {format_rate(read, 'images/s')}, 224x224x3 uint8 -> float32 batches of "
          f"{read['batch_size']} [{_against(read, targets['read_images_per_s'])}]")
