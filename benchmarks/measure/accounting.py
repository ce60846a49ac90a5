"""Where a step's wall time goes, measured on a few extra samples that are not timed for the
ratios: TensorFlow's profiler (one trace method for a Session and for Keras's functions) gives
the time inside ops; Python's cProfile gives the host time outside them, attributed to named
parts; the time the runtime call spends with no op running (scheduling, a gate, lost overlap)
is the runtime call's time minus the ops' busy time; cProfile's own time, which lands inside
the own times of the functions it times, is calibrated per call (of an empty function, of a
builtin) and moved out of them into a part of its own; what neither profiler saw is the residual.

    wall = ops busy + waiting in the runtime + the host parts + the profiler + residual   (ms per step)

Profiling slows a step; the record says by how much (`inflation`: traced wall over the timed
statistic), and the ratios come from the untraced samples only.
"""
from __future__ import annotations

import cProfile
import functools
import gc
import glob
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.parts import HOST_PARTS, OTHER, PART_LABELS, PROFILER, HostPart

# cProfile's names of the C functions that hand a step to TensorFlow's runtime: their own time
# is time inside the runtime (ops, or the runtime waiting), never Python.
RUNTIME_CALL = re.compile(r"TF_SessionRun|TF_SessionRunCallable|TFE_Py_Execute|TFE_Py_FastPathExecute")


def _part_of_file(filename: str) -> HostPart | None:
    path = filename.replace(os.sep, "/")
    return next((p for p in HOST_PARTS if any(s in path for s in p.paths)), None)


def _label(code) -> tuple:
    """cProfile's name of a function: (file, line, name), or ("~", 0, repr) for a C function."""
    if isinstance(code, str):
        return "~", 0, code
    return code.co_filename, code.co_firstlineno, code.co_name


def profile_table(entries: list) -> dict:
    """cProfile's entries (`Profile.getstats()`) in `pstats.Stats.stats` form, {func: (cc, nc,
    own, cumulative, {caller: (nc, cc, own, cumulative)})} (s), summed over every code object of
    the same name.

    `pstats` keeps one code object per (file, line, name) and drops the others: generated code
    (dataclass and namedtuple methods, `exec`'d wrappers) gives many the same name, so its
    table loses their time, and two tables of one profile can keep different ones."""
    table: dict[tuple, list] = {}
    for entry in entries:
        func = _label(entry.code)
        row = table.setdefault(func, [0, 0, 0.0, 0.0, {}])
        row[0] += entry.callcount - entry.reccallcount
        row[1] += entry.callcount
        row[2] += entry.inlinetime
        row[3] += entry.totaltime
        for sub in entry.calls or ():
            callee = table.setdefault(_label(sub.code), [0, 0, 0.0, 0.0, {}])
            nc, cc, own, cumulative = callee[4].get(func, (0, 0, 0.0, 0.0))
            callee[4][func] = (nc + sub.callcount, cc + sub.callcount - sub.reccallcount,
                               own + sub.inlinetime, cumulative + sub.totaltime)
    return {func: (*row[:4], row[4]) for func, row in table.items()}


def _empty() -> None:
    pass


def _python_calls(n: int) -> None:
    for _ in range(n):
        _empty()


def _builtin_calls(n: int) -> None:
    for _ in range(n):
        id(None)


@dataclass(frozen=True)
class ProfilerCost:
    """cProfile's own time per call it records (s), split as it lands: in the caller's own time
    (the work before the callee's clock starts and after it stops) and in the callee's."""
    python_caller: float
    python_callee: float
    builtin_caller: float
    builtin_callee: float


def _cost_of(calls: Callable[[int], None], callee: str, n: int = 20_000, rounds: int = 5) -> tuple[float, float]:
    """(caller's share, callee's share) of cProfile's time per call of `calls`' callee: the
    profiled wall minus the unprofiled wall is the whole; the callee's profiled own time is its
    share (an empty callee's own work is nearly nothing); the least of `rounds`, as another
    process only ever adds."""
    plain, profiled, own = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        calls(n)
        plain.append(time.perf_counter() - start)
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        calls(n)
        profile.disable()
        profiled.append(time.perf_counter() - start)
        own.append(sum(v[2] for k, v in profile_table(profile.getstats()).items() if callee in k[2]))
    whole = max(min(profiled) - min(plain), 0.0) / n
    callee_share = min(min(own) / n, whole)
    return whole - callee_share, callee_share


@functools.cache
def profiler_cost() -> ProfilerCost:
    """cProfile's cost per call on this machine, calibrated once per process."""
    python = _cost_of(_python_calls, "_empty")
    builtin = _cost_of(_builtin_calls, "builtins.id")
    return ProfilerCost(*python, *builtin)


def _is_builtin(func: tuple) -> bool:
    return func[0] == "~"  # cProfile's file name for a C function


def profiler_charges(table: dict, cost: ProfilerCost) -> dict[tuple, float]:
    """{function: cProfile's time (s) inside its own time}: its share of each call it received
    and of each call it made, from the calls the profile counted."""
    out: dict[tuple, float] = {}
    for func, (_, calls, _, _, callers) in table.items():
        builtin = _is_builtin(func)
        out[func] = out.get(func, 0.0) + calls * (cost.builtin_callee if builtin else cost.python_callee)
        for caller, (made, *_rest) in callers.items():
            out[caller] = out.get(caller, 0.0) + made * (cost.builtin_caller if builtin else cost.python_caller)
    return out


def host_parts(table: dict, cost: ProfilerCost) -> tuple[float, dict[str, float]]:
    """(time inside the runtime call, {host part: time}) in seconds from cProfile's stats: each
    function's own time, less cProfile's charges in it (`cost`; they make the profiler part), goes
    to its file's part, or split among its callers' parts as they called it."""
    charges = profiler_charges(table, cost)
    resolved: dict[tuple, dict[str, float]] = {}

    def shares(func: tuple, seen: frozenset) -> dict[str, float]:
        """The parts `func`'s own time belongs to, as fractions summing to 1."""
        if func in resolved:
            return resolved[func]
        part = _part_of_file(func[0])
        if part is not None:
            out = {part.name: 1.0}
        else:
            callers = {c: v[2] for c, v in table.get(func, (0, 0, 0, 0, {}))[4].items() if c not in seen}
            total = sum(callers.values())
            out = {}
            for caller, own in callers.items():
                for name, share in shares(caller, seen | {func}).items():
                    out[name] = out.get(name, 0.0) + share * (own / total if total else 1 / len(callers))
            out = out or {OTHER.name: 1.0}
        if not seen:
            resolved[func] = out
        return out

    runtime, parts = 0.0, {PROFILER: 0.0}
    for func, (_, _, own, _, _) in table.items():
        charge = min(charges.get(func, 0.0), own)  # never more than the time it holds
        parts[PROFILER] += charge
        own -= charge
        if RUNTIME_CALL.search(func[2]):
            runtime += own
            continue
        for name, share in shares(func, frozenset()).items():
            parts[name] = parts.get(name, 0.0) + own * share
    return runtime, parts


def _union(intervals: list[tuple[int, int]]) -> int:
    total, end = 0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total, end = total + (b - a), b
        elif b > end:
            total, end = total + (b - end), b
    return total


@dataclass
class OpEvents:
    """What a profiler trace says ran: ops (ps), and the runtime's thread pools as they ran."""
    busy_ps: int                        # the union over threads of op executions, off tf.data's threads
    by_type: dict[str, list[int]]       # op type -> [ps summed over threads, count]
    input_ps: int                       # tf.data's own ops, on its threads
    threads: dict[str, int]             # pool -> threads that recorded an event in the trace


# The runtime's thread pools, by the prefix of their threads' names in a trace.
THREAD_POOLS = {"inter_op": "tf_Compute", "intra_op": "tf_numa_", "tf_data": "tf_data"}


def op_events(xspace_path: str) -> OpEvents:
    """The ops and thread pools of a profiler trace (XSpace)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # late: only a profiled worker needs it
    space = xplane_pb2.XSpace()
    with open(xspace_path, "rb") as f:
        space.ParseFromString(f.read())
    intervals, by_type, input_ps = [], {}, 0
    threads = dict.fromkeys(THREAD_POOLS, 0)
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            for pool, prefix in THREAD_POOLS.items():
                threads[pool] += line.name.startswith(prefix) and len(line.events) > 0
            pipeline = line.name.startswith("tf_data")
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_type = name.rsplit(":", 1)[-1].strip()
                # "node:OpType" is an op, "A::B" the runtime's own event; a function's call
                # ("__inference_f_12") spans the ops it runs, which are counted themselves
                if ":" not in name or "::" in name or op_type.startswith("__"):
                    continue
                if pipeline:
                    input_ps += event.duration_ps
                    continue
                start = line.timestamp_ns * 1000 + event.offset_ps
                intervals.append((start, start + event.duration_ps))
                entry = by_type.setdefault(op_type, [0, 0])
                entry[0] += event.duration_ps
                entry[1] += 1
    return OpEvents(_union(intervals), by_type, input_ps, threads)


def stats_since(base: dict, final: dict) -> dict:
    """cProfile's stats (`pstats.Stats.stats` form) of what ran between two snapshots, leaving
    out the snapshot's own machinery."""
    out = {}
    for func, (cc, nc, own, cumulative, callers) in final.items():
        if func[0].endswith("cProfile.py") or "getstats" in func[2]:
            continue
        before = base.get(func)
        if before is not None:
            cc, nc, own, cumulative = cc - before[0], nc - before[1], own - before[2], cumulative - before[3]
            callers = {caller: tuple(a - b for a, b in zip(v, before[4].get(caller, (0, 0, 0.0, 0.0))))
                       for caller, v in callers.items()}
        if nc or own > 0:
            out[func] = (cc, nc, own, cumulative, {c: v for c, v in callers.items() if v[0] or v[2] > 0})
    return out


def _entries_while_on(profile: cProfile.Profile) -> list:
    """`profile.getstats()` while it records, without the collector's work landing in the window.

    The collector is off for the walk: a finalizer that a collection runs mid-walk is profiled,
    and recording it reshapes the tree of entries being walked (entries are then skipped or
    listed twice). Then what the process holds, the copies with it, is frozen (`gc.freeze`,
    undone when the profile stops): otherwise the next collections, inside the first samples,
    would traverse the copies (ms of the snapshot's cost counted as the loop's)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        entries = profile.getstats()  # copies of the counts, tabled once cProfile is off
        gc.freeze()
    finally:
        if collecting:
            gc.enable()
    return entries


class Tracer:
    """Both profilers around a few samples: `start()` before the first, `stop(walls)` after the
    last -> the accounting record (ms per step). Where the samples run inside a call already
    running (fit's loop), `start_python()` before that call and `start_window()` at the first
    sample: cProfile then sees every frame of the loop, and counts only what ran from there."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-trace-")
        self._profile = cProfile.Profile()
        self._python_on = self._trace_on = False
        self._base: list | None = None

    def start(self) -> None:
        self.start_window()

    def start_python(self) -> None:
        self._profile.enable()
        self._python_on = True

    def start_window(self) -> None:
        import tensorflow as tf  # late: the worker set the process state first
        tf.profiler.experimental.start(self._dir.name, options=tf.profiler.experimental.ProfilerOptions(
            host_tracer_level=2, python_tracer_level=0, device_tracer_level=1))
        self._trace_on = True
        if self._python_on:
            self._base = _entries_while_on(self._profile)
        else:
            self._profile.enable()

    def _stop_python(self) -> None:
        self._profile.disable()
        if self._base is not None:
            gc.unfreeze()  # what the window's snapshot froze

    def abandon(self) -> dict:
        """Stop both profilers, keep nothing (the samples failed)."""
        import tensorflow as tf  # late: the worker set the process state first
        self._stop_python()
        if self._trace_on:
            tf.profiler.experimental.stop()
        self._dir.cleanup()
        return {}

    def stop(self, walls_s: list[float], timed_step_s: float, steps_per_sample: int = 1) -> dict:
        """`walls_s`: the traced samples' wall times (s), each of `steps_per_sample` steps;
        `timed_step_s`: the untraced statistic, per step."""
        import tensorflow as tf  # late: the worker set the process state first
        self._stop_python()
        tf.profiler.experimental.stop()
        try:
            (trace,) = glob.glob(os.path.join(self._dir.name, "**", "*.xplane.pb"), recursive=True)
            events = op_events(trace)
        finally:
            self._dir.cleanup()
        table = profile_table(self._profile.getstats())
        if self._base is not None:
            table = stats_since(profile_table(self._base), table)
        runtime, parts = host_parts(table, profiler_cost())
        return accounting(walls_s, timed_step_s, runtime, parts, events, steps_per_sample)


def accounting(walls_s: list[float], timed_step_s: float, runtime_s: float, parts_s: dict[str, float],
               events: OpEvents, steps_per_sample: int = 1) -> dict:
    """The record of `len(walls_s)` traced samples of `steps_per_sample` steps each (`runtime_s`,
    `parts_s`: s over all of them): per-step ms of every part, which add up to the traced wall
    with the residual."""
    n = len(walls_s) * steps_per_sample
    per = 1000 / n
    wall = sum(walls_s) * per
    busy_s = events.busy_ps / 1e12
    out = {"ops": busy_s * per, "waiting": (runtime_s - busy_s) * per,
           **{name: parts_s.get(name, 0.0) * per for name in PART_LABELS if name not in ("ops", "waiting", "residual")}}
    out["residual"] = wall - sum(out.values())
    return {"samples": len(walls_s), "steps_per_sample": steps_per_sample, "wall_ms": wall,
            "inflation": wall / (timed_step_s * 1000) if timed_step_s else None,
            "parts_ms": out, "input_ops_ms": events.input_ps / 1e9 / n, "threads": events.threads,
            "op_types": {t: {"ms": ps / 1e9 / n, "count": count / n}
                         for t, (ps, count) in sorted(events.by_type.items(), key=lambda kv: -kv[1][0])}}


def traced(run_samples: Callable[[], list[float]], timed_step_s: float) -> dict:
    """Run `run_samples` (-> their wall times, s) under both profilers -> the accounting record."""
    tracer = Tracer()
    tracer.start()
    walls: list[float] = []
    try:
        walls = run_samples()
    finally:
        record = tracer.stop(walls, timed_step_s) if walls else tracer.abandon()  # a step mode: 1 step a sample
    return record
