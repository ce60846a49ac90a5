"""From raw runs to the numbers the report states: per-configuration throughput, ratios
with bootstrap intervals, overhead fits and where the 2.5x claim would hold."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np

from data_pipeline.errors import DataError

from .config import BASELINE, CLAIMED_RATIO, GRAPH_MODES, PRECISION_TARGET, BenchConfig, check_comparable
from .stats import crossover_batch, overhead_fit, ratio_interval, throughput


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
    """key -> throughput summary, first-step time, peak memory, errors, pipeline headroom."""
    runs = defaultdict(list)
    for run in results["runs"]:
        runs[run["key"]].append(run)
    shapes = _manifest_shapes(results.get("pipeline", []))
    out = {}
    for key, records in runs.items():
        config = BenchConfig.from_dict(records[0]["config"])
        ok = [r for r in records if r["ok"]]
        entry = {"mode": config.mode, "group": config.group(), "family": family(config), "batch": config.batch,
                 "repeats_ok": len(ok), "errors": sorted({r["error"] for r in records if not r["ok"]})}
        if ok:
            times = [r["step_times_s"] for r in ok]
            by_repeat = {r["repeat"]: r["step_times_s"] for r in ok}
            entry.update(throughput=throughput(times, config.batch),
                         median_step_ms=float(np.median(np.concatenate(times))) * 1000,
                         first_step_s=float(np.median([r["first_step_s"] for r in ok])),
                         peak_rss_mb=float(max(r["peak_rss_mb"] for r in ok)),
                         step_times_by_repeat=by_repeat, settings=ok[0]["settings"])
            rate = _pipeline_for(config, results.get("pipeline", []), shapes)
            entry["pipeline_images_per_s"] = rate
            entry["pipeline_headroom"] = rate / entry["throughput"]["median"] if rate else None
        out[key] = entry
    return out


def comparisons(configs: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """Each mode against keras-fit within a group -> (ratios, refused groups)."""
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
        if BASELINE not in modes:
            continue
        base = modes[BASELINE]["step_times_by_repeat"]
        for mode, entry in sorted(modes.items()):
            if mode != BASELINE:
                # Only the repeats both sides completed: they ran next to each other.
                common = sorted(set(entry["step_times_by_repeat"]) & set(base))
                if not common:
                    continue
                interval = ratio_interval([entry["step_times_by_repeat"][r] for r in common],
                                          [base[r] for r in common], paired=True)
                ratios.append({"group": group, "mode": mode, "baseline": BASELINE, **interval,
                               "batch": entry["batch"], "family": entry["family"]})
    return ratios, refused


def interval_half_widths(ratio: dict) -> tuple[float, float]:
    """How far the interval reaches below and above the ratio, as fractions of the ratio."""
    return 1 - ratio["lo"] / ratio["ratio"], ratio["hi"] / ratio["ratio"] - 1


def within_target(ratio: dict, target: float = PRECISION_TARGET) -> bool:
    return max(interval_half_widths(ratio)) <= target


def imprecise_keys(results: dict, target: float = PRECISION_TARGET) -> list[str]:
    """Configuration keys of both sides of every graph-mode / keras-fit ratio whose interval
    is wider than +-target: the configurations another repeat should measure."""
    ratios, _ = comparisons(per_config(results))
    keys = []
    for r in ratios:
        if r["mode"] in GRAPH_MODES and not within_target(r, target):
            keys += [f"{r['mode']}/{r['group']}", f"{BASELINE}/{r['group']}"]
    return list(dict.fromkeys(keys))


def fits(configs: dict[str, dict]) -> list[dict]:
    """Per family and mode, step_time = a + b x batch over the batch sizes measured."""
    points = defaultdict(list)
    for entry in configs.values():
        if "throughput" in entry:
            points[(entry["family"], entry["mode"])].append((entry["batch"], entry["median_step_ms"] / 1000))
    out = []
    for (fam, mode), pts in sorted(points.items()):
        fit = overhead_fit([b for b, _ in pts], [t for _, t in pts])
        if fit:
            out.append({"family": fam, "mode": mode, **fit, "batches": sorted(b for b, _ in pts)})
    return out


def crossovers(fit_list: list[dict], claimed: float = CLAIMED_RATIO) -> list[dict]:
    """For each family with both fits: the batch below which mode / keras-fit exceeds `claimed`."""
    by_family = defaultdict(dict)
    for fit in fit_list:
        by_family[fit["family"]][fit["mode"]] = fit
    out = []
    for fam, modes in sorted(by_family.items()):
        if BASELINE not in modes:
            continue
        for mode, fit in sorted(modes.items()):
            if mode != BASELINE:
                out.append({"family": fam, "mode": mode, "claimed": claimed,
                            **crossover_batch(fit, modes[BASELINE], claimed)})
    return out


def summarize_results(results: dict) -> dict:
    configs = per_config(results)
    ratios, refused = comparisons(configs)
    fit_list = fits(configs)
    for entry in configs.values():
        entry.pop("step_times_by_repeat", None)  # raw samples stay in runs
    return {"configs": configs, "ratios": ratios, "refused": refused, "fits": fit_list,
            "crossovers": crossovers(fit_list)}
