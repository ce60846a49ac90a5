"""From raw runs to the numbers the report states: per-configuration throughput, ratios with
t intervals over repeats, overhead fits with intervals and where the 2.5x claim would hold."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np

from data_pipeline.errors import DataError

from .config import (BASELINE, CLAIMED_RATIO, GRAPH_MODES, INFERENCE_BASELINE, PRECISION_TARGET, BenchConfig,
                     check_comparable)
from .stats import crossover_batch, mean_interval, overhead_fit, ratio_interval, throughput


def family(config: BenchConfig) -> str:
    """The group key without the batch size: one line of a throughput-vs-batch plot."""
    return replace(config, batch=0).group().replace("/b0/", "/")


def _pipeline_for(config: BenchConfig, pipeline: list[dict], shapes: dict[str, tuple]) -> float | None:
    """The measured shards -> tf.data rate for this configuration's input and batch, if any."""
    for entry in pipeline:
        same_input = config.manifest == entry["manifest"] or shapes.get(entry["manifest"]) == config.input_shape()
        if same_input and entry["batch"] == config.batch:
            return entry["images_per_s"]
    return None


def _manifest_shapes(pipeline: list[dict]) -> dict[str, tuple]:
    from data_pipeline.shards import load_manifest
    shapes = {}
    for entry in pipeline:
        try:
            shapes[entry["manifest"]] = tuple(load_manifest(entry["manifest"])["image_shape"])
        except DataError:
            pass
    return shapes


def per_config(results: dict) -> dict[str, dict]:
    """key -> throughput summary, per-repeat medians, first-step time, peak memory, errors,
    pipeline headroom."""
    runs = defaultdict(list)
    for run in results["runs"]:
        runs[run["key"]].append(run)
    shapes = _manifest_shapes(results.get("pipeline", []))
    out = {}
    for key, records in runs.items():
        config = BenchConfig.from_dict(records[0]["config"])
        ok = [r for r in records if r["ok"]]
        entry = {"mode": config.mode, "model": config.model, "task": config.task, "data": config.data,
                 "optimizer": config.optimizer, "group": config.group(),
                 "family": family(config), "batch": config.batch, "repeats_ok": len(ok),
                 "devices": config.devices, "workers": config.workers,
                 "one_replica_key": config.one_replica().key() if config.replicas() > 1 else None,
                 "errors": sorted({r["error"] for r in records if not r["ok"]})}
        if ok:
            times = [r["step_times_s"] for r in ok]
            entry.update(throughput=throughput(times, config.batch),
                         median_step_ms=float(np.median(np.concatenate(times))) * 1000,
                         p95_step_ms=float(np.percentile(np.concatenate(times), 95)) * 1000,
                         sparse_update_ops=ok[0].get("sparse_update_ops"),
                         repeat_medians_s={str(r["repeat"]): float(np.median(r["step_times_s"])) for r in ok},
                         first_step_s=float(np.median([r["first_step_s"] for r in ok])),
                         peak_rss_mb=float(max(r["peak_rss_mb"] for r in ok)), settings=ok[0]["settings"])
            rate = _pipeline_for(config, results.get("pipeline", []), shapes)
            entry["pipeline_images_per_s"] = rate
            entry["pipeline_headroom"] = rate / entry["throughput"]["median"] if rate else None
        out[key] = entry
    return out


def pair_ratio(fast: dict, slow: dict, first_stage: int | None = None) -> dict | None:
    """How many times faster configuration `fast` ran than `slow` (summary entries), over the
    repeats both completed (they ran side by side); None without a common repeat."""
    common = sorted(set(fast["repeat_medians_s"]) & set(slow["repeat_medians_s"]), key=int)
    if not common:
        return None
    stage = None if first_stage is None else sum(int(r) < first_stage for r in common)
    return ratio_interval([fast["repeat_medians_s"][r] for r in common],
                          [slow["repeat_medians_s"][r] for r in common], first_stage=stage)


def baseline_of(modes) -> str | None:
    """The Keras mode a group's others are compared with: fit, else the textbook's predict."""
    return BASELINE if BASELINE in modes else (INFERENCE_BASELINE if INFERENCE_BASELINE in modes else None)


def comparisons(configs: dict[str, dict], first_stage: int | None = None) -> tuple[list[dict], list[dict]]:
    """Each mode against its group's baseline (`baseline_of`) -> (ratios, refused groups)."""
    groups = defaultdict(dict)
    for key, entry in configs.items():
        if "throughput" in entry:
            groups[entry["group"]][entry["mode"]] = entry
    ratios, refused = [], []
    for group, modes in sorted(groups.items()):
        try:
            check_comparable({mode: entry["settings"] for mode, entry in modes.items()})
        except DataError as err:
            refused.append({"group": group, "reason": err.message})
            continue
        base = baseline_of(modes)
        for mode, entry in sorted(modes.items()):
            if base and mode != base:
                interval = pair_ratio(entry, modes[base], first_stage)
                if interval is not None:
                    ratios.append({"group": group, "mode": mode, "baseline": base, **interval,
                                   "batch": entry["batch"], "family": entry["family"]})
    return ratios, refused


def interval_half_widths(ratio: dict) -> tuple[float, float]:
    """How far the interval reaches below and above the ratio, as fractions of the ratio
    (infinite without an interval)."""
    if ratio.get("lo") is None:
        return float("inf"), float("inf")
    return 1 - ratio["lo"] / ratio["ratio"], ratio["hi"] / ratio["ratio"] - 1


def within_target(ratio: dict, target: float = PRECISION_TARGET) -> bool:
    return max(interval_half_widths(ratio)) <= target


def fits(configs: dict[str, dict]) -> list[dict]:
    """Per family and mode, step_time = a + b x batch over the batch sizes measured: with two or
    more repeats that measured every batch, a and b are the means of each process's own fit with
    t intervals; with one, the fit of the pooled medians."""
    points = defaultdict(list)
    for entry in configs.values():
        if "throughput" in entry:
            points[(entry["family"], entry["mode"])].append(entry)
    out = []
    for (fam, mode), entries in sorted(points.items()):
        batches = [e["batch"] for e in entries]
        fit = overhead_fit(batches, [e["median_step_ms"] / 1000 for e in entries])
        if not fit:
            continue
        per_repeat = _per_repeat_fits(entries)
        for name in ("a_ms", "b_ms"):
            mean, lo, hi = mean_interval([f[name] for f in per_repeat.values()])
            if lo is not None:  # the interval's own centre: the mean of the processes' fits
                fit[name] = mean
            fit[name.replace("_ms", "_lo_ms")], fit[name.replace("_ms", "_hi_ms")] = lo, hi
        out.append({"family": fam, "mode": mode, **fit, "batches": sorted(batches), "per_repeat": per_repeat})
    return out


def _per_repeat_fits(entries: list[dict]) -> dict[str, dict]:
    repeats = set.intersection(*(set(e["repeat_medians_s"]) for e in entries))
    return {r: overhead_fit([e["batch"] for e in entries], [e["repeat_medians_s"][r] for e in entries])
            for r in sorted(repeats, key=int)}


def crossovers(fit_list: list[dict], claimed: float = CLAIMED_RATIO) -> list[dict]:
    """For each family with both fits: where mode / baseline exceeds `claimed`, with a t interval
    of the crossing batch over the repeats when every repeat's pair of fits gives one."""
    by_family = defaultdict(dict)
    for fit in fit_list:
        by_family[fit["family"]][fit["mode"]] = fit
    out = []
    for fam, modes in sorted(by_family.items()):
        base = baseline_of(modes)
        for mode, fit in sorted(modes.items()):
            if base is None or mode == base:
                continue
            entry = {"family": fam, "mode": mode, "baseline": base, "claimed": claimed,
                     **crossover_batch(fit, modes[base], claimed), "lo": None, "hi": None}
            common = sorted(set(fit["per_repeat"]) & set(modes[base]["per_repeat"]), key=int)
            each = [crossover_batch(fit["per_repeat"][r], modes[base]["per_repeat"][r], claimed) for r in common]
            if each and all(c["holds"] == entry["holds"] and c["batch"] is not None for c in each):
                _, entry["lo"], entry["hi"] = mean_interval([c["batch"] for c in each])
            out.append(entry)
    return out


def imprecise_pairs(results: dict, target: float = PRECISION_TARGET) -> list[dict]:
    """Graph-mode ratios whose interval is wider than +-target (or missing)."""
    ratios, _ = comparisons(per_config(results), results.get("repeats"))
    return [r for r in ratios if r["mode"] in GRAPH_MODES and not within_target(r, target)]


def summarize_results(results: dict) -> dict:
    configs = per_config(results)
    ratios, refused = comparisons(configs, results.get("repeats"))
    fit_list = fits(configs)
    from .scaling import scaling_rows
    return {"configs": configs, "ratios": ratios, "refused": refused, "fits": fit_list,
            "crossovers": crossovers(fit_list), "scaling": scaling_rows(configs, results.get("repeats"))}
