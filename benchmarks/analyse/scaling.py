"""Scaling over several devices and workers: each N-replica configuration against the
one-device configuration at the same per-replica batch (weak scaling, as tf_cnn_benchmarks
reports it), and the ratio between the APIs at each N.

At the same per-replica batch an N-replica step processes N times the images, so

    scaling efficiency = one-device step time / N-replica step time
    speed-up           = N x efficiency = N-replica images/s / one-device images/s

Efficiency is a ratio of step times of two configurations run side by side in every repeat,
so it gets the paired t interval over repeats every other ratio gets (`benchmarks.analyse.stats.ratio_interval`).
"""
from __future__ import annotations

from benchmarks.analyse.records import ConfigSummary
from benchmarks.analyse.stats import pair_ratio
from benchmarks.config import group_of


def scaling_rows(configs: dict[str, ConfigSummary], first_stage: int | None = None) -> list[dict]:
    """One row per measured N-replica configuration (summary entries `configs`): images/s, and
    against its one-device configuration, when that ran, efficiency and speed-up with 95%
    intervals (None without a common repeat; lo/hi None with one)."""
    rows = []
    for key, entry in sorted(configs.items()):
        base_key = entry.one_replica_key
        if base_key is None or not entry.measured:
            continue
        n = entry.devices * entry.workers
        base = configs.get(base_key)
        base_ran = base is not None and base.measured
        efficiency = pair_ratio(entry, base, first_stage) if base_ran else None
        speedup = None if efficiency is None else {
            k: (None if efficiency[k] is None else n * efficiency[k]) for k in ("ratio", "lo", "hi")}
        rows.append({"key": key, "mode": entry.mode, "model": entry.model, "group": entry.group,
                     "kind": "devices" if entry.devices > 1 else "workers", "n": n,
                     "per_replica_batch": entry.batch // n, "images_per_s": entry.throughput["median"],
                     "one_replica_key": base_key, "one_replica_group": group_of(base_key),
                     "one_replica_images_per_s": base.throughput["median"] if base_ran else None,
                     "efficiency": efficiency, "speedup": speedup})
    return sorted(rows, key=lambda r: (r["model"], r["per_replica_batch"], r["kind"], r["n"], r["mode"]))
