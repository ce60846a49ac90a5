"""From raw runs to the numbers the report states: per-configuration throughput, ratios with
t intervals over repeats, overhead fits with intervals and where the 2.5x claim would hold."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.analyse.records import ConfigSummary
from benchmarks.analyse.scaling import scaling_rows
from benchmarks.analyse.stats import (
    common_repeats,
    crossover_batch,
    fieller_crossing,
    lack_of_fit,
    log_ratios,
    mean_interval,
    overhead_fit,
    pair_ratio,
    throughput,
)
from benchmarks.config import (
    CLAIMED_RATIO,
    PRECISION_TARGET,
    SCHEMA_VERSION,
    BenchConfig,
    check_comparable,
)
from benchmarks.modes import BASELINE, INFERENCE_BASELINE, is_graph
from data_pipeline.shards import load_manifest
from plumbing.errors import UserError


def _pipeline_for(config: BenchConfig, pipeline: list[dict], shapes: dict[str, tuple]) -> float | None:
    """The measured shards -> tf.data rate for this configuration's input and batch, if any."""
    for entry in pipeline:
        same_input = config.manifest == entry["manifest"] or shapes.get(entry["manifest"]) == config.input_shape()
        if same_input and entry["batch"] == config.batch:
            return entry["images_per_s"]
    return None


def _manifest_shapes(pipeline: list[dict]) -> dict[str, tuple]:
    shapes = {}
    for entry in pipeline:
        try:
            shapes[entry["manifest"]] = tuple(load_manifest(entry["manifest"])["image_shape"])
        except UserError:
            pass
    return shapes


def _spread(times: list[float]) -> float:
    """IQR / median of one repeat's step times: how much steps vary within a process."""
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return float((q3 - q1) / median)


def per_config(results: dict) -> dict[str, ConfigSummary]:
    """key -> the configuration over every repeat: throughput, per-repeat medians, first-step
    time, peak memory, errors, pipeline headroom."""
    runs = defaultdict(list)
    for run in results["runs"]:
        runs[run["key"]].append(run)
    shapes = _manifest_shapes(results.get("pipeline", []))
    out = {}
    for key, records in runs.items():
        config = BenchConfig.from_dict(records[0]["config"])
        ok = [r for r in records if r["ok"]]
        errors = sorted({r["error"] for r in records if not r["ok"]})
        if not ok:
            out[key] = ConfigSummary(config, 0, errors)
            continue
        times = [r["step_times_s"] for r in ok]
        rate = throughput(times, config.batch)
        pipeline = _pipeline_for(config, results.get("pipeline", []), shapes)
        out[key] = ConfigSummary(
            config, len(ok), errors, throughput=rate,
            median_step_ms=float(np.median(np.concatenate(times))) * 1000,
            p95_step_ms=float(np.percentile(np.concatenate(times), 95)) * 1000,
            sparse_update_ops=ok[0].get("sparse_update_ops"), fused_batch_norm_ops=ok[0].get("fused_batch_norm_ops"),
            repeat_step_s={str(r["repeat"]): config.repeat_step(r["step_times_s"]) for r in ok},
            spread_by_repeat={str(r["repeat"]): _spread(r["step_times_s"]) for r in ok},
            first_step_s=float(np.median([r["first_step_s"] for r in ok])),
            peak_rss_mb=float(max(r["peak_rss_mb"] for r in ok)),
            peak_rss_scope="configuration" if all(r.get("peak_rss_scope") == "configuration" for r in ok)
            else "process so far",
            settings=ok[0]["settings"], settings_by_repeat={str(r["repeat"]): r["settings"] for r in ok},
            accounting=next((r["accounting"] for r in ok if r.get("accounting")), None),
            accounting_by_repeat={str(r["repeat"]): r["accounting"] for r in ok if r.get("accounting")},
            pipeline_images_per_s=pipeline, pipeline_headroom=pipeline / rate["median"] if pipeline else None)
    return out


def baseline_of(modes) -> str | None:
    """The Keras mode a group's others are compared with: fit, else the textbook's predict."""
    for base in (BASELINE.name, INFERENCE_BASELINE.name):
        if base in modes:
            return base
    return None


def comparisons(configs: dict[str, ConfigSummary],
                first_stage: int | None = None) -> tuple[list[dict], list[dict]]:
    """Each mode against its group's baseline (`baseline_of`) -> (ratios, refused groups: any
    two repeats of the group's modes whose settings differ in more than the mode)."""
    groups = defaultdict(dict)
    for entry in configs.values():
        if entry.measured:
            groups[entry.group][entry.mode] = entry
    ratios, refused = [], []
    for group, modes in sorted(groups.items()):
        try:
            check_comparable({f"{mode} (repeat {int(r) + 1})": settings for mode, entry in modes.items()
                              for r, settings in entry.settings_by_repeat.items()})
        except UserError as err:
            refused.append({"group": group, "reason": err.message})
            continue
        base = baseline_of(modes)
        for mode, entry in sorted(modes.items()):
            if base and mode != base:
                interval = pair_ratio(entry, modes[base], first_stage)
                if interval is not None:
                    ratios.append({"group": group, "mode": mode, "baseline": base, **interval,
                                   "batch": entry.batch, "family": entry.family, "statistic": entry.statistic})
    return ratios, refused


def interval_half_widths(ratio: dict) -> tuple[float, float]:
    """How far the interval reaches below and above the ratio, as fractions of the ratio
    (infinite without an interval)."""
    if ratio.get("lo") is None:
        return float("inf"), float("inf")
    return 1 - ratio["lo"] / ratio["ratio"], ratio["hi"] / ratio["ratio"] - 1


def within_target(ratio: dict, target: float = PRECISION_TARGET) -> bool:
    return max(interval_half_widths(ratio)) <= target


def fits(configs: dict[str, ConfigSummary]) -> list[dict]:
    """Per family and mode, step_time = a + b x batch over the batch sizes measured: with two or
    more repeats that measured every batch, a and b are the means of each process's own fit with
    t intervals; with one, the fit of the pooled medians."""
    points = defaultdict(list)
    for entry in configs.values():
        if entry.measured:
            points[(entry.family, entry.mode)].append(entry)
    out = []
    for (fam, mode), entries in sorted(points.items()):
        batches = [e.batch for e in entries]
        fit = overhead_fit(batches, [e.median_step_ms / 1000 for e in entries])
        if not fit:
            continue
        per_repeat = _per_repeat_fits(entries)
        fit["lack_of_fit"] = lack_of_fit(batches, [[e.repeat_step_s[r] for e in entries]
                                                   for r in common_repeats(*entries)])
        for name in ("a_ms", "b_ms"):
            mean, lo, hi = mean_interval([f[name] for f in per_repeat.values()])
            if lo is not None:  # the interval's own centre: the mean of the processes' fits
                fit[name] = mean
            fit[name.replace("_ms", "_lo_ms")], fit[name.replace("_ms", "_hi_ms")] = lo, hi
        out.append({"family": fam, "mode": mode, **fit, "batches": sorted(batches), "per_repeat": per_repeat})
    return out


def _per_repeat_fits(entries: list[ConfigSummary]) -> dict[str, dict]:
    return {r: overhead_fit([e.batch for e in entries], [e.repeat_step_s[r] for e in entries])
            for r in common_repeats(*entries)}


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
            if entry["batch"] is not None:
                entry["lo"], entry["hi"] = fieller_crossing([fit["per_repeat"][r] for r in common],
                                                            [modes[base]["per_repeat"][r] for r in common], claimed)
                measured = set(fit["batches"]) & set(modes[base]["batches"])
                entry["extrapolated"] = not min(measured) <= entry["batch"] <= max(measured)
            out.append(entry)
    return out


def imprecise_pairs(results: dict, target: float = PRECISION_TARGET) -> list[dict]:
    """Graph-mode ratios whose interval is wider than +-target (or missing)."""
    ratios, _ = comparisons(per_config(results), results.get("repeats"))
    return [r for r in ratios if is_graph(r["mode"]) and not within_target(r, target)]


def aa_controls(configs: dict[str, ConfigSummary], first_stage: int | None = None) -> list[dict]:
    """Each A/A control (`BenchConfig.control`) against its twin, the same configuration in the
    run's ordinary bundle: the ratio and interval the harness puts on two processes that differ
    in nothing (it should cover 1), and the spread of their per-repeat log ratios (as a fraction)."""
    out = []
    for entry in configs.values():
        twin = configs.get(replace(entry.config, control=False).key()) if entry.config.control else None
        if not (twin and twin.measured and entry.measured):
            continue
        ratio = pair_ratio(twin, entry, first_stage)
        if ratio is None:
            continue
        common = common_repeats(twin, entry)
        logs = log_ratios([twin.repeat_step_s[r] for r in common], [entry.repeat_step_s[r] for r in common])
        out.append({"key": twin.key, "control": entry.key, **ratio,
                    "covers_one": None if ratio["lo"] is None else ratio["lo"] <= 1 <= ratio["hi"],
                    "spread": float(np.expm1(logs.std(ddof=1))) if logs.size > 1 else None})
    return out


def summarize_results(results: dict) -> dict:
    configs = per_config(results)
    ratios, refused = comparisons(configs, results.get("repeats"))
    fit_list = fits(configs)
    return {"configs": configs, "ratios": ratios, "refused": refused, "fits": fit_list,
            "crossovers": crossovers(fit_list), "scaling": scaling_rows(configs, results.get("repeats")),
            "controls": aa_controls(configs, results.get("repeats"))}


def load_results(path: str | Path) -> dict:
    try:
        results = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: results file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a results JSON ({err})") from None
    if not isinstance(results, dict) or "runs" not in results or "schema" not in results:
        raise UserError(f"{path}: not a benchmarks results file (no 'schema'/'runs')")
    if results["schema"] != SCHEMA_VERSION:
        raise UserError(f"{path}: results schema {results['schema']!r}; this version reads schema {SCHEMA_VERSION}")
    # The summary is derived: recomputed from the raw runs, so an interrupted run is summarised
    # from what exists and a report always uses the current statistics.
    try:
        results["summary"] = summarize_results(results)
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path}: results file of schema {SCHEMA_VERSION} lacks or mangles a field "
                        f"({type(err).__name__}: {err}); rerun the benchmark to regenerate it") from None
    return results
