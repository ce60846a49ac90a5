"""The report's PNGs: throughput vs batch, ratios against the claimed 2.5x, step times."""
from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path

from benchmarks.analyse.records import ConfigSummary
from benchmarks.config import CLAIMED_RATIO
from benchmarks.modes import MODE_NAMES
from plumbing.figures import plt, save_figure


def throughput_vs_batch(configs: dict[str, ConfigSummary], path: Path) -> Path | None:
    """One panel per family, one line per mode; bars span the per-step IQR."""
    families = defaultdict(lambda: defaultdict(list))
    for entry in configs.values():
        if entry.measured:
            families[entry.family][entry.mode].append(entry)
    if not families:
        return None
    fig, axes = plt.subplots(len(families), 1, figsize=(8, 3.2 * len(families)), squeeze=False)
    for ax, (fam, modes) in zip(axes[:, 0], sorted(families.items())):
        for mode in [m for m in MODE_NAMES if m in modes]:
            points = sorted(modes[mode], key=lambda e: e.batch)
            batches = [p.batch for p in points]
            medians = [p.throughput["median"] for p in points]
            # percentile IQR bounds are not stored, so the bar is the IQR centred on the median
            half = [p.throughput["iqr"] / 2 for p in points]
            ax.errorbar(batches, medians, yerr=half, marker="o", capsize=3, label=mode)
        ax.set_xscale("log", base=2)
        ax.set_title(fam, fontsize=9)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images/s")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def ratios(ratio_list: list[dict], path: Path) -> Path | None:
    """Each mode's speed relative to keras-fit with its 95% interval, and the claimed 2.5x."""
    if not ratio_list:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(ratio_list) + 1.5))
    labels = [f"{r['mode']} vs {r['baseline']} | {r['group']}" for r in ratio_list]
    y = range(len(ratio_list))
    ax.errorbar([r["ratio"] for r in ratio_list], y, xerr=_error_bars(ratio_list), fmt="o", capsize=3)
    ax.axvline(CLAIMED_RATIO, color="red", linestyle="--", label=f"claimed {CLAIMED_RATIO}x")
    ax.axvline(1.0, color="grey", linestyle=":", label="as fast as the Keras baseline")
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.set_xlabel("speed relative to the Keras baseline (ratio of per-repeat step times, 95% interval over repeats)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _error_bars(rows: list[dict]) -> list[list[float]]:
    """Distances from each ratio to its interval's ends (0 where a single repeat gave none)."""
    return [[r["ratio"] - r["lo"] if r.get("lo") is not None else 0.0 for r in rows],
            [r["hi"] - r["ratio"] if r.get("hi") is not None else 0.0 for r in rows]]


LEGEND_LINE_IN = 0.15  # a 6 pt legend line, spacing included


def _verdict_legend_label(number: int, row: dict) -> str:
    """A row's whole scenario and modes, wrapped: a cut label can drop the very words that say
    which two sides the ratio compares."""
    return textwrap.fill(f"{number}. {row['scenario']} ({row['fast']} / {row['slow']})", width=90,
                         subsequent_indent="    ")


def ratio_vs_step(rows: list[dict], path: Path) -> Path | None:
    """The verdict map as a picture: each row's ratio (95% interval) against the TF1 side's
    median step time, log-log, with the claimed 2.5x marked."""
    if not rows:
        return None
    labels = [_verdict_legend_label(i + 1, r) for i, r in enumerate(rows)]
    # the figure grows with the legend beside it, which would otherwise run off its foot
    legend_lines = sum(label.count("\n") + 1 for label in labels) + 1
    fig, ax = plt.subplots(figsize=(12, max(5.5, LEGEND_LINE_IN * legend_lines + 0.8)))
    below, above = _error_bars(rows)
    for i, r in enumerate(rows):
        # numbered, and a new marker every 10 rows: the colour cycle alone repeats
        ax.errorbar([r["step_ms"]], [r["ratio"]], yerr=[[below[i]], [above[i]]], fmt="os^D"[i // 10 % 4], capsize=3,
                    label=labels[i])
        ax.annotate(str(i + 1), (r["step_ms"], r["ratio"]), textcoords="offset points", xytext=(4, 4), fontsize=6)
    ax.axhline(CLAIMED_RATIO, color="red", linestyle="--", label=f"claimed {CLAIMED_RATIO}x")
    ax.axhline(1.0, color="grey", linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("per-step (per-call) time of the TF1-style side, ms")
    ax.set_ylabel("speed ratio: TF1-style / Keras")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)


def step_times(runs: list[dict], path: Path) -> Path | None:
    """Distribution of timed step times (ms) per configuration, all repeats pooled."""
    pooled = defaultdict(list)
    for run in runs:
        if run["ok"]:
            pooled[run["key"]].extend(t * 1000 for t in run["step_times_s"])
    if not pooled:
        return None
    keys = sorted(pooled)
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(keys) + 1.5))
    ax.boxplot([pooled[k] for k in keys], vert=False, showfliers=True)
    ax.set_yticks(range(1, len(keys) + 1), keys, fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("step time (ms, log scale)")
    fig.tight_layout()
    return save_figure(fig, path)


def accounting_bars(rows: list[dict], path: Path) -> Path | None:
    """Each profiled row's two sides as stacked bars of their parts, in % of the slower side's
    profiled step (the label gives both in ms); a negative part (ops overlapping host time,
    a residual below 0) is drawn as 0."""
    profiled = [(i, r) for i, r in enumerate(rows, 1) if r.get("accounting")]
    if not profiled:
        return None
    labels = {p["part"]: p["label"] for p in profiled[0][1]["accounting"]["parts"]}
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(profiled) + 2))
    colours = plt.get_cmap("tab20").colors
    ticks, names = [], []
    for y, (number, r) in enumerate(profiled):
        acc = r["accounting"]
        scale = 100 / max(acc["fast_wall_ms"], acc["slow_wall_ms"])
        for offset, side in ((-0.6, "fast"), (0.6, "slow")):
            left = 0.0
            for k, part in enumerate(acc["parts"]):
                width = max(part[f"{side}_ms"], 0.0) * scale
                ax.barh(4 * y + offset, width, left=left, height=1.0, color=colours[k % len(colours)],
                        label=labels[part["part"]] if y == 0 and side == "fast" else None)
                left += width
            ticks.append(4 * y + offset)
            names.append(f"{number}. {r[side]} ({acc[f'{side}_wall_ms']:,.2f} ms)")
    ax.set_yticks(ticks, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("share of the slower side's profiled step (%)")
    ax.set_title("Where each verdict row's time goes (profiled samples; row numbers as in the map)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)
