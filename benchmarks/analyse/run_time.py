"""Where a run's wall time went, from its own records: how much of it built models and ran their
first step, ran the samples, profiled, started worker processes, and passed between them; and
which configurations cost most (what a preset that must fit a time budget would weigh)."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from benchmarks.analyse.verdict import row_keys
from benchmarks.config import BenchConfig

# The parts of a run's wall time, in the order they are reported; they add up to it.
PART_LABELS = {
    "setup": "building each model and its first step",
    "samples": "warm-up and timed samples",
    "profiled": "profiled samples",
    "workers": "worker processes' start, imports and the rest of their time",
    "between": "between the worker processes (shard rates, results written)",
}


@dataclass(frozen=True)
class ConfigCost:
    key: str
    seconds: float     # over every repeat: its own spans and its share of its processes' rest
    repeats: int
    map_side: bool     # a side of a verdict row (`row_keys`)


@dataclass(frozen=True)
class RunTime:
    total_s: float               # started -> finished
    parts_s: dict[str, float]    # `PART_LABELS` -> seconds; they add up to total_s
    costliest: list[ConfigCost]  # most seconds first


def _spans(record: dict) -> dict[str, float]:
    """A successful record's measured spans (s): set-up (model build and first step), the other
    warm-up and timed samples, and the profiled ones (their mean step x steps)."""
    per = record.get("steps_per_sample", 1)
    setup = record.get("first_step_s", 0.0)  # a record without it leaves its process's rest larger
    first = setup - record.get("build_s", 0.0) if "first_step_s" in record else 0.0  # its first sample
    samples = (sum(record.get("warmup_times_s", [])) + sum(record.get("step_times_s", []))) * per - first
    account = record.get("accounting") or {}
    profiled = account.get("wall_ms", 0.0) * account.get("samples", 0) * account.get("steps_per_sample", 1) / 1000
    return {"setup": setup, "samples": max(samples, 0.0), "profiled": profiled}


def run_time(results: dict, top: int = 8) -> RunTime | None:
    """`results` (a finished run) -> where its wall time went, and its `top` costliest
    configurations; None for a run that has not finished."""
    if not results.get("finished") or not results.get("runs"):
        return None
    total = (dt.datetime.fromisoformat(results["finished"]) - dt.datetime.fromisoformat(results["started"]))
    parts = dict.fromkeys(PART_LABELS, 0.0)
    processes: dict[tuple, list[dict]] = defaultdict(list)  # (repeat, position): one worker process
    for record in results["runs"]:
        processes[(record["repeat"], record["position"])].append(record)
    cost: dict[str, float] = defaultdict(float)
    repeats: dict[str, int] = defaultdict(int)
    for members in processes.values():
        wall = sum(r.get("wall_s", 0.0) for r in members)  # each holds an equal share of the process
        spans = [_spans(r) if r.get("ok") else {} for r in members]
        rest = wall - sum(sum(s.values()) for s in spans)
        for record, own in zip(members, spans):
            for name, seconds in own.items():
                parts[name] += seconds
            cost[record["key"]] += sum(own.values()) + rest / len(members)
            repeats[record["key"]] += 1
        parts["workers"] += rest
    parts["between"] = total.total_seconds() - sum(parts.values())
    sides = row_keys([BenchConfig.from_dict(c) for c in results.get("configs", [])])
    ranked = sorted(cost, key=lambda k: -cost[k])[:top]
    return RunTime(total.total_seconds(), parts,
                   [ConfigCost(k, cost[k], repeats[k], k in sides) for k in ranked])


def run_time_line(timing: RunTime) -> str:
    """One line of `run_time`'s parts, in minutes."""
    parts = ", ".join(f"{PART_LABELS[name].split(' (')[0]} {seconds / 60:.1f}"
                      for name, seconds in timing.parts_s.items())
    return f"run time {timing.total_s / 60:.1f} min: {parts}"
