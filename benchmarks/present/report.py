"""results.json -> report.md + PNGs + results.csv, with a verdict written from the numbers."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.analyse.projection import gpu_projection
from benchmarks.analyse.records import ConfigSummary
from benchmarks.analyse.run_time import PART_LABELS, RunTime, run_time
from benchmarks.analyse.stats import common_repeats
from benchmarks.analyse.summary import interval_half_widths, within_target
from benchmarks.analyse.verdict import answer, claim, not_measured, verdict_map
from benchmarks.config import CLAIMED_RATIO, PRECISION_TARGET, group_of
from benchmarks.modes import (
    BASELINE,
    EAGER,
    GRAPH,
    GRAPH_FEED,
    GRAPH_FUSED_BN,
    KERAS_CTL,
    KERAS_FIT,
    is_graph,
)
from benchmarks.present import plots
from benchmarks.present.markdown import machine_text, table
from benchmarks.present.parity import load_parity, parity_markdown
from benchmarks.present.scaling import scaling_markdown, scaling_plot
from benchmarks.present.verdict import (
    accounting_markdown,
    control_lines,
    map_markdown,
    projection_markdown,
    ratio_text,
)
from plumbing.atomic import atomic_write_bytes

# The graph-vs-eager ladder: (mode, XLA, what a row of it executes), slowest first.
LADDER = ((EAGER, False, "eager (GradientTape, no tf.function)"),
          (KERAS_CTL, False, "tf.function (custom loop)"),
          (KERAS_CTL, True, "tf.function + XLA"),
          (GRAPH, False, "TF1 Session, in-graph tf.data"),
          (GRAPH, True, "TF1 Session + XLA auto-clustering"),
          (GRAPH_FEED, False, "TF1 Session, feed_dict"),
          (KERAS_FIT, False, "Keras fit"))


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def results_csv(results: dict) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["key", "mode", "batch", "repeats_ok", "images_per_s_median", "iqr", "min", "max",
                     "median_step_ms", "first_step_s", "peak_rss_mb", "pipeline_images_per_s", "errors"])
    for key, e in sorted(results["summary"]["configs"].items()):
        t = e.throughput or {}
        writer.writerow([key, e.mode, e.batch, e.repeats_ok, t.get("median"), t.get("iqr"), t.get("min"),
                         t.get("max"), e.median_step_ms, e.first_step_s, e.peak_rss_mb,
                         e.pipeline_images_per_s, "; ".join(e.errors)])
    return buffer.getvalue().encode()


def _config_row(key: str, e: ConfigSummary) -> tuple:
    if not e.measured:
        return (key, f"failed: {'; '.join(e.errors)}", "", "", "", "")
    t, head = e.throughput, e.pipeline_headroom
    pipe = f"{_fmt(e.pipeline_images_per_s, 0)} ({_fmt(head)}x)" if head else "in-memory"
    return (key, f"{t['median']:,.1f} ({t['iqr']:,.1f})", f"{e.median_step_ms:,.1f}", f"{e.first_step_s:.1f}",
            f"{e.peak_rss_mb:,.0f}" + ("" if e.peak_rss_scope == "configuration" else " (process so far)"), pipe)


def _config_table(configs: dict[str, ConfigSummary]) -> list[str]:
    return table(("configuration", "images/s median (IQR)", "step ms", "first step s", "peak RSS MiB",
                  "pipeline images/s (x)"), [_config_row(key, e) for key, e in sorted(configs.items())])


def _ratio_table(ratios: list[dict]) -> list[str]:
    return table(("mode", "vs", "in", "speed ratio [95%]", "repeats (first stage)", f"claim {CLAIMED_RATIO}x"),
                 [(r["mode"], r["baseline"], r["group"], ratio_text(r), f"{r['repeats']} ({r['first_stage']})",
                   claim(r)) for r in ratios])


def _with_interval(x: float, lo: float | None, hi: float | None, digits: int) -> str:
    return f"{x:,.{digits}f}" + ("" if lo is None else f" [{lo:,.{digits}f}, {hi:,.{digits}f}]")


def _fit_table(fits: list[dict], crossovers: list[dict]) -> list[str]:
    where = {(c["family"], c["mode"]): c for c in crossovers}
    rows = []
    for f in fits:
        c = where.get((f["family"], f["mode"]))
        holds = ""
        if c is not None:
            holds = c["holds"] if c["batch"] is None else f"{c['holds']} batch {c['batch']:.1f}"
            if c["batch"] is not None:
                holds += " [unbounded]" if c["lo"] is None else f" [{c['lo']:.1f}, {c['hi']:.1f}]"
                holds += " (extrapolated)" if c.get("extrapolated") else ""
        rows.append((f["family"], f["mode"], _with_interval(f["a_ms"], f["a_lo_ms"], f["a_hi_ms"], 2),
                     _with_interval(f["b_ms"], f["b_lo_ms"], f["b_hi_ms"], 3), ",".join(map(str, f["batches"])),
                     _lack_of_fit(f.get("lack_of_fit")), holds))
    return table(("family", "mode", "a: ms per step [95%]", "b: ms per sample [95%]", "batches",
                  "lack of fit", "ratio > 2.5x vs baseline [Fieller 95%]"), rows)


def _lack_of_fit(lof: dict | None) -> str:
    """"misses by 4% (F 3.1, p 0.08)", or why it could not be tested."""
    if lof is None:
        return "not testable (< 3 batches or < 2 repeats)"
    return f"misses by {lof['max_miss']:.0%} (F {lof['f']:.1f}, p {lof['p']:.2g})"


def _rungs(found: dict[tuple, ConfigSummary]) -> int:
    """How many of the ladder's rungs `found` ((mode, XLA) -> configuration) holds."""
    return sum((mode.name, xla) in found for mode, xla, _ in LADDER)


def ladder_lines(configs: dict[str, ConfigSummary]) -> list[str]:
    """The graph-vs-eager ladder for the model/batch with the most ladder modes measured."""
    rows: dict[tuple, dict] = {}
    for e in configs.values():
        if e.measured:  # with and without XLA on one rung each
            family_batch = (replace(e.config, xla=False).family(), e.batch)
            rows.setdefault(family_batch, {})[(e.mode, e.settings["xla"])] = e
    if not rows:
        return []
    (fam, batch), found = max(rows.items(), key=lambda item: _rungs(item[1]))
    if _rungs(found) < 3:
        return []
    base = found.get((BASELINE.name, False))
    rows = []
    for mode, xla, label in LADDER:
        e = found.get((mode.name, xla))
        if e:
            rel = f"{base.median_step_ms / e.median_step_ms:.2f}x" if base else "n/a"
            rows.append((label, f"{e.throughput['median']:,.1f}", f"{e.median_step_ms:,.1f}",
                         f"{e.first_step_s:.1f}", rel))
    return [f"Model and settings: {fam}, batch {batch}.", ""] + table(
        ("execution", "images/s", "step ms", "first step s (tracing/compile)", "vs Keras fit"), rows)


def precision_rows(ratios: list[dict], configs: dict[str, ConfigSummary]) -> list[dict]:
    """Per graph-mode ratio: interval half-widths as fractions of the ratio, the ratio of each
    repeat's step (the statistic the interval is over: how much fresh processes differ), the
    spread of steps within a process, and whether it meets the target."""
    rows = []
    for r in ratios:
        if not is_graph(r["mode"]):
            continue
        base = r.get("baseline", BASELINE.name)
        fast, slow = configs[f"{r['mode']}/{r['group']}"], configs[f"{base}/{r['group']}"]
        per_repeat = [slow.repeat_step_s[k] / fast.repeat_step_s[k] for k in common_repeats(fast, slow)]
        below, above = interval_half_widths(r)
        spreads = [v for entry in (fast, slow) for v in entry.spread_by_repeat.values()]
        rows.append({"mode": r["mode"], "group": r["group"], "ratio": r["ratio"], "below": below, "above": above,
                     "per_repeat": per_repeat, "met": within_target(r), "within_process": float(np.median(spreads)),
                     "between_repeats": max(per_repeat) / min(per_repeat) - 1 if per_repeat else 0.0})
    return rows


def _precision(rows: list[dict]) -> list[str]:
    lines = [f"Target: every graph / Keras fit interval within +-{PRECISION_TARGET:.0%} of its ratio. Steps vary "
             "within one process (IQR / median of its step times); whole processes vary between repeats "
             "(the spread of the single-repeat ratios, max / min - 1). The larger says what to add.", ""]
    cells = []
    for r in rows:
        more = "" if r["met"] else (" (add `--repeats` or `--budget-min`)" if r["between_repeats"] > r["within_process"]
                                    else " (add `--steps`)")
        width = "n/a" if r["below"] == float("inf") else f"-{r['below']:.1%} / +{r['above']:.1%}"
        cells.append((r["mode"], r["group"], f"{r['ratio']:.2f}x", width,
                      ", ".join(f"{x:.2f}" for x in r["per_repeat"]), f"{r['within_process']:.0%}",
                      f"{r['between_repeats']:.0%}", "met" if r["met"] else "missed" + more))
    return lines + table(("mode", "vs keras-fit in", "ratio", "interval, % of ratio", "ratio per repeat",
                          "within a process", "between repeats", "target"), cells)


def verdict(summary: dict) -> str:
    """A short paragraph from the numbers: where the claim holds, where not, and why."""
    graph = [r for r in summary["ratios"] if is_graph(r["mode"])]
    if not graph:
        return "No graph mode was compared with Keras fit in this run, so there is no verdict on the claim."
    parts = [f"Claimed: not using Keras is about {CLAIMED_RATIO}x faster. Measured (graph mode / its Keras "
             "baseline, geometric mean of the per-repeat ratios of step times (a repeat's median step, or its "
             "total / steps where costs come per call or per pass), 95% t interval over repeats):"]
    for r in graph:
        parts.append(f"{r['mode']} {ratio_text(r)} vs {r.get('baseline', BASELINE.name)} for {r['group']} ({claim(r)})")
    holds = [r for r in graph if claim(r) == "holds"]
    text = parts[0] + " " + "; ".join(parts[1:]) + ". "
    text += (f"The claim holds for {len(holds)} of {len(graph)} comparisons. " if holds
             else "The claim holds for none of them. ")
    fits = {(f["family"], f["mode"]): f for f in summary["fits"]}
    reasons = []
    for c in summary["crossovers"]:
        g, k = fits.get((c["family"], c["mode"])), fits.get((c["family"], BASELINE.name))
        if c["mode"] == GRAPH.name and g and k:
            where = {"below": f"only below batch {c['batch']:.1f}" if c["batch"] else "",
                     "above": f"only above batch {c['batch']:.1f}" if c["batch"] else "",
                     "never": "at no batch size", "always": "at every batch size"}[c["holds"]]
            if c.get("extrapolated"):
                where += f" (extrapolated: the fits measured batches {min(g['batches'])}-{max(g['batches'])})"
            reasons.append(f"for {c['family']}, the fixed cost per step is {g['a_ms']:.1f} ms in the graph vs "
                           f"{k['a_ms']:.1f} ms in Keras fit and the cost per image {g['b_ms']:.2f} vs "
                           f"{k['b_ms']:.2f} ms, so a {CLAIMED_RATIO}x gap is predicted {where}")
    if reasons:
        text += "Why: " + "; ".join(reasons) + ". "
    return text.rstrip() + _fused_bn_note(graph, summary.get("configs", {}))


def _kernels_ran(entry: ConfigSummary | None) -> str | None:
    """The fused batch-norm kernels a configuration ran, as its worker read them, or None."""
    if entry is None or entry.fused_batch_norm_ops is None:
        return None
    return ", ".join(f"`{op}`" for op in entry.fused_batch_norm_ops) or "no fused batch-norm kernel"


def _fused_bn_note(graph: list[dict], configs: dict[str, ConfigSummary]) -> str:
    """What fused batch norm changes against the manual-BN graph in the same group, and which
    fused kernels each side ran (read from the graph and the functions that ran): where the
    baseline runs none, the gain is the kernel's, not the API's."""
    by_group = {(r["group"], r["mode"]): r for r in graph}
    entries = {(e.group, e.mode): e for e in configs.values()}
    notes, credited = [], False
    for (group, mode), row in by_group.items():
        manual = by_group.get((group, GRAPH.name))
        if mode != GRAPH_FUSED_BN.name or manual is None:
            continue
        gain = row["ratio"] / manual["ratio"]
        base = row.get("baseline", BASELINE.name)
        fused, baseline = _kernels_ran(entries.get((group, mode))), _kernels_ran(entries.get((group, base)))
        ran = f" ({mode} ran {fused}; {base} ran {baseline})" if fused and baseline else ""
        notes.append(f"{gain:.2f}x for {group}{ran}")
        credited |= gain > 1 and baseline == "no fused batch-norm kernel" and fused != baseline
    if not notes:
        return ""
    text = (" Fused batch norm (`graph-fused-bn`) runs at this speed relative to the same graph with manual "
            f"batch norm: {'; '.join(notes)}.")
    if credited:
        text += (" Where Keras ran no fused kernel, that part of a graph / Keras gap belongs to the kernel, "
                 "not to leaving Keras.")
    return text


def _order_text(runs: list[dict]) -> str:
    """How the run ordered its processes and, where its records say so, their configurations."""
    if runs and all("process_slot" in r for r in runs):  # older results ran each bundle in one order
        return ("the bundles, and the configurations within each, in an order drawn anew for every repeat "
                "(`order` and `process_slot` in results.json)")
    return "the bundles in an order drawn anew for every repeat (`order` in results.json)"


def extra_repeats_text(results: dict) -> str:
    """How many repeats the run added for imprecise comparisons, how many it had planned, and
    why it stopped adding (`adaptive` in results.json)."""
    adaptive = results.get("adaptive") or {}
    if not adaptive.get("budget_s"):
        return ""
    extra, plan, stop = adaptive.get("extra", []), adaptive.get("plan") or {}, adaptive.get("stop") or {}
    budget = f"{adaptive['budget_s'] / 60:.0f} min"
    if stop.get("reason") == "one repeat":
        return " (no extra repeats: one repeat gives no interval to plan them from)"
    if not plan:
        return f" (no extra repeats needed: every comparison's interval was within +-{adaptive['target']:.0%})"
    planned = max(plan.values()) - results.get("repeats", 0)
    text = (f" plus {len(extra)} of the {planned} extra repeats planned for the {len({group_of(k) for k in plan})} "
            f"comparison(s) whose interval was wider than +-{adaptive['target']:.0%} (at most "
            f"{adaptive['max_repeats']} repeats in all, within {budget}")
    if stop.get("reason") == "budget":
        text += f"; stopped by the budget, {stop['elapsed_s'] / 60:.1f} min used"
    return text + ")"


def _run_time(timing: RunTime) -> list[str]:
    """Where the run's wall time went, and its costliest configurations."""
    lines = [f"{timing.total_s / 60:.1f} min in all, from the records of every configuration and process.", ""]
    lines += table(("part", "min", "share"), [(PART_LABELS[name], f"{seconds / 60:.1f}",
                                               f"{seconds / timing.total_s:.0%}" if timing.total_s else "-")
                                              for name, seconds in timing.parts_s.items()])
    lines += ["", "The configurations that cost most (their spans and their share of their processes' rest, "
              "over every repeat):", ""]
    lines += table(("configuration", "s", "repeats", "a side of a map row"),
                   [(c.key, f"{c.seconds:.0f}", str(c.repeats), "yes" if c.map_side else "no")
                    for c in timing.costliest])
    return lines


def write_report(results: dict, out_dir: str | Path) -> Path:
    """report.md, results.csv and the PNGs into `out_dir`; returns the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = results["summary"]
    rows = verdict_map(summary, results.get("repeats"))
    pictures = {"verdict_map.png": plots.ratio_vs_step(rows, out / "verdict_map.png"),
                "throughput_vs_batch.png": plots.throughput_vs_batch(summary["configs"],
                                                                     out / "throughput_vs_batch.png"),
                "ratios.png": plots.ratios(summary["ratios"], out / "ratios.png"),
                "step_times.png": plots.step_times(results["runs"], out / "step_times.png"),
                "scaling.png": scaling_plot(summary, out / "scaling.png")}
    atomic_write_bytes(out / "results.csv", results_csv(results))
    machine = results.get("machine", {})
    lines = ["# Benchmark report: TF1 static graphs vs Keras", "",
             f"Preset `{results.get('preset')}`, {results.get('repeats')} interleaved "
             f"repeats{extra_repeats_text(results)}, "
             "each bundle (one mode's configurations, one after another) in a fresh process per repeat, "
             f"{_order_text(results['runs'])}. "
             f"Machine: {machine_text(machine)}; commit {results.get('git_commit')}; "
             f"environment {json.dumps(results.get('environment'))}.", "",
             "## Verdict map", "", "Each row: how many times faster the TF1-style program (or the fixed Keras "
             "call) ran than its Keras counterpart, the 95% interval over repeats (processes), and what was "
             "measured to cause it.", ""]
    lines += (map_markdown(rows) + [""] if rows else []) + [answer(rows), ""]  # the answer says when none
    accounts = accounting_markdown(rows)
    if accounts:
        lines += ["## Where each row's time goes", "", "Both sides of each row profiled over samples of their own "
                  "after the timed ones (first repeat): time inside ops (busy, union over threads) from "
                  "TensorFlow's profiler, host time outside them from cProfile attributed to named parts, the "
                  "runtime call's time with no op running, and the residual neither profiler saw; TF1 side / "
                  "Keras side, ms per step (per batch or call). The ratios above come from the untraced samples.", ""]
        lines += accounts + [""]
        if plots.accounting_bars(rows, out / "accounting.png"):
            lines += ["![accounting.png](accounting.png)", ""]
    missing = not_measured(summary)
    if missing:
        lines += ["Not measured in this run: " + "; ".join(missing) + ".", ""]
    controls = control_lines(summary["controls"])
    if controls:
        lines += ["## A/A control", "", "The same configuration in two processes of each repeat, analysed as "
                  "a ratio is: how far the harness's intervals can be trusted on this machine.", ""]
        lines += [f"- {line}" for line in controls] + [""]
    projection = gpu_projection(rows, summary["configs"])
    if projection:
        lines += ["## On GPUs: a projection", ""] + projection_markdown(projection) + [""]
    lines += ["## Verdict", "", verdict(summary), ""]
    if summary["refused"]:
        lines += ["## Refused comparisons (settings differ in more than the mode)", ""]
        lines += [f"- {r['group']}: {r['reason']}" for r in summary["refused"]] + [""]
    lines += ["## Ratios against the Keras baseline (keras-fit, or keras-predict where no fit ran)", ""]
    lines += _ratio_table(summary["ratios"]) if summary["ratios"] else ["No mode was compared with its Keras "
                                                                          "baseline in this run."]
    lines += [""]
    precision = precision_rows(summary["ratios"], summary["configs"])
    if precision:
        lines += ["## Precision of the measurement", ""] + _precision(precision) + [""]
    scaling = scaling_markdown(summary, machine)
    if scaling:
        lines += ["## Scaling over devices and workers", ""] + scaling + [""]
    lines += ["## Fixed per-step overhead and per-image cost (step time = a + b x batch)", ""]
    if summary["fits"]:
        lines += _fit_table(summary["fits"], summary["crossovers"]) + [""]
    else:
        lines += ["No model, task and input was measured at two or more batch sizes in one mode in this run: "
                  "no line to fit.", ""]
    ladder = ladder_lines(summary["configs"])
    if ladder:
        lines += ["## Graph vs eager: the same step, every way of executing it", ""] + ladder + [""]
    lines += ["## Every configuration", "", "Throughput is the median over all timed steps of all repeats "
              "(warm-up excluded); the first step (tracing, graph building, compilation) is reported apart.", ""]
    lines += _config_table(summary["configs"]) + [""]
    if results.get("skipped"):
        skipped = "; ".join(f"{s['key']} ({s['reason']})" for s in results["skipped"])
        lines += ["Not applicable, not run: " + skipped, ""]
    timing = run_time(results)
    if timing is not None:
        lines += ["## Where the run's time went", ""] + _run_time(timing) + [""]
    for name, path in pictures.items():
        if path is not None:
            lines += [f"![{name}]({name})", ""]
    parity = load_parity(out)  # written by `python -m benchmarks parity` into the same directory
    if parity is not None:
        lines += parity_markdown(parity)
    report = out / "report.md"
    atomic_write_bytes(report, "\n".join(lines).encode())
    return report
