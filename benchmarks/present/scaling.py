"""The report's scaling section and its plot, from `benchmarks.analyse.scaling`'s rows."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from benchmarks.analyse.records import ConfigSummary
from benchmarks.present.markdown import table
from plumbing.figures import plt, save_figure


def _interval(r: dict | None, digits: int = 2, suffix: str = "") -> str:
    if r is None:
        return "n/a (the one-device configuration did not run)"
    text = f"{r['ratio']:.{digits}f}{suffix}"
    return text + ("" if r["lo"] is None else f" [{r['lo']:.{digits}f}, {r['hi']:.{digits}f}]")


def _no_gpu(configs: dict[str, ConfigSummary], rows: list[dict]) -> bool:
    settings = [configs[r["key"]].settings or {} for r in rows]
    return all(s.get("visible_gpus", 0) == 0 for s in settings)


def scaling_markdown(summary: dict, machine: dict) -> list[str]:
    """The report's scaling section: what was measured, the caveat of a machine without GPUs,
    images/s with efficiency and speed-up, and the API ratios at every N."""
    rows, configs = summary.get("scaling", []), summary["configs"]
    if not rows:
        return []
    lines = ["Each N-replica configuration against the one-device configuration at the same per-replica "
             "batch: efficiency = one-device step time / N-replica step time, speed-up = N x efficiency "
             "(95% intervals over repeats). Devices: graph towers (`graph`: variables on the CPU, "
             "`graph-replicated`: a copy per device, all-reduced) and Keras `MirroredStrategy`; workers: "
             "localhost processes, graph_api's ps + workers with synchronous updates and Keras "
             "`MultiWorkerMirroredStrategy`, timed at the chief.", ""]
    if _no_gpu(configs, rows):
        lines += [f"**Functional figures, not speed.** This machine has no GPU: the N devices are logical CPU "
                  f"devices and the workers are processes on the same {machine.get('cpu_count')} CPU cores, so "
                  "an N-replica step shares the compute of one. These figures show that the data-parallel code "
                  "paths run and what they cost in coordination; they say nothing about scaling on N GPUs or "
                  "hosts (run the `gpu` preset there).", ""]
    lines += table(("mode", "model", "replicas", "per-replica batch", "images/s", "one device images/s",
                    "efficiency [95%]", "speed-up [95%]"),
                   [(r["mode"], r["model"], f"{r['n']} {r['kind']}", r["per_replica_batch"],
                     f"{r['images_per_s']:,.1f}",
                     "n/a" if r["one_replica_images_per_s"] is None else f"{r['one_replica_images_per_s']:,.1f}",
                     _interval(r["efficiency"]), _interval(r["speedup"], suffix="x")) for r in rows])
    groups = {r["group"]: r for r in rows} | {r["one_replica_group"]: None for r in rows}
    api = [(ratio, groups[ratio["group"]]) for ratio in summary["ratios"] if ratio["group"] in groups]
    if api:
        lines += ["", "Between the APIs at each N (how many times faster than Keras `fit` on the same replicas):", ""]
        lines += table(("mode", "vs", "replicas", "in", "speed ratio [95%]"),
                       [(ratio["mode"], ratio["baseline"], "1 device" if row is None else f"{row['n']} {row['kind']}",
                         ratio["group"], _interval(ratio, suffix="x"))
                        for ratio, row in sorted(api, key=lambda item: (item[1] is not None and item[1]["n"],
                                                                        item[0]["group"], item[0]["mode"]))])
    return lines


def scaling_plot(summary: dict, path: Path) -> Path | None:
    """Images/s against the number of replicas, one panel per model and per-replica batch, one
    line per mode and kind (devices, workers) from its one-device point; dotted: N x one device."""
    panels = defaultdict(lambda: defaultdict(dict))
    for r in summary.get("scaling", []):
        line = panels[(r["model"], r["per_replica_batch"])][(r["mode"], r["kind"])]
        line[r["n"]] = r["images_per_s"]
        if r["one_replica_images_per_s"] is not None:
            line[1] = r["one_replica_images_per_s"]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 3.4 * len(panels)), squeeze=False)
    for ax, ((model, batch), lines) in zip(axes[:, 0], sorted(panels.items())):
        for (mode, kind), points in sorted(lines.items()):
            ns = sorted(points)
            drawn = ax.plot(ns, [points[n] for n in ns], marker="o", label=f"{mode}, {kind}",
                            linestyle="-" if kind == "devices" else "--")
            if 1 in points:
                ax.plot(ns, [n * points[1] for n in ns], linestyle=":", color=drawn[0].get_color(), alpha=0.6)
        ax.set_xticks(sorted({n for points in lines.values() for n in points}))
        ax.set_title(f"{model}, {batch} images per replica (dotted: N x one device)", fontsize=9)
        ax.set_xlabel("replicas (devices or workers)")
        ax.set_ylabel("images/s")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
