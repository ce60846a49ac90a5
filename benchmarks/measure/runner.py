"""Runs configurations in bundles (one mode's configurations, one after another in one fresh
process per repeat), repeats interleaved, the bundles, and the configurations within each, in a
new shuffled order in every repeat (recorded), and writes the results JSON after every bundle so
an interrupted run loses nothing.

Results schema (``schema`` 1), see docs/benchmarks.md:
  machine, versions, git_commit, environment, preset, repeats, started/finished,
  adaptive: {budget_s, max_repeats, target, extra: [{repeat, keys}]},
  order: {seed, repeats: [{repeat, bundles: [label]}]},
  runs: [{key, repeat, position, process_slot, ok, error?, config, settings, build_s, first_step_s,
          warmup_times_s, step_times_s, peak_rss_mb, wall_s}],
  skipped: [{key, reason}], pipeline: [{manifest, batch, images_per_s}],
  summary: (benchmarks.analyse.summary.summarize)
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from benchmarks.analyse.projection import projected_keys
from benchmarks.analyse.stats import log_ratios, stein_repeats
from benchmarks.analyse.summary import imprecise_pairs, per_config, summarize_results
from benchmarks.analyse.verdict import row_keys
from benchmarks.config import (
    ACCOUNT_SAMPLES,
    MAX_REPEATS,
    PINNED_ENV,
    PRECISION_TARGET,
    SCHEMA_VERSION,
    BenchConfig,
    group_of,
)
from benchmarks.measure.batches import pipeline_rate
from benchmarks.measure.protocol import read_results
from benchmarks.measure.replicas import run_cluster
from benchmarks.modes import Api
from data_pipeline.shards import load_manifest
from plumbing.atomic import write_json
from plumbing.tf_logging import quiet_tensorflow_logs

REPO = Path(__file__).resolve().parents[2]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except OSError:
        return None


def machine_info() -> dict:
    info = {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in lines if line.startswith("flags")).split()
        info["cpu_flags_of_note"] = sorted(set(flags) & {"avx2", "avx512f", "avx512_bf16", "amx_bf16",
                                                         "amx_tile", "fma"})
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / 2 ** 30, 1)
    except (ValueError, OSError):
        pass
    return info


def worker_env() -> dict:
    """The environment every worker gets: the caller's, quieter logs; identical for all modes."""
    quiet_tensorflow_logs()
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}  # clusters are the runner's to make
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_worker(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """`python -m benchmarks.measure.worker <args>` in a fresh process started from the
    repository, with environment `env`; its output captured as text. Raises
    `subprocess.TimeoutExpired` past `timeout` (s). The tests' fixture `forked_workers` replaces
    it with one that forks the process from one that imported TensorFlow already."""
    return subprocess.run([sys.executable, "-m", "benchmarks.measure.worker", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_bundle(configs: list[BenchConfig], env: dict, timeout: float) -> list[dict]:
    """Configurations of one bundle (`BenchConfig.bundle`), one after another in a fresh Python
    process -> a result record for each; `timeout` (s) is per configuration."""
    started = time.perf_counter()
    if configs[0].spec.api is Api.TF_KERAS:
        env = {**env, "TF_USE_LEGACY_KERAS": "1"}  # Keras 2 as tf.keras, in its own process
    if configs[0].workers > 1:  # one configuration, on a localhost cluster: the chief's timing
        stdout, failure = run_cluster(configs[0], env, timeout)
        if failure is None and not read_results(stdout):
            failure = "the chief exited without a result"
    else:
        try:
            proc = run_worker([json.dumps([c.to_dict() for c in configs])], env, timeout * len(configs))
            stdout, failure = proc.stdout, None
        except subprocess.TimeoutExpired as err:
            stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            failure = f"timed out after {timeout * len(configs):.0f} s"
    records = {record["key"]: record for record in read_results(stdout)}
    if failure is None and len(records) < len(configs):  # killed (e.g. out of memory) before reporting
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
        failure = f"worker exited with status {proc.returncode}: {tail[0][:300]}"
    wall = (time.perf_counter() - started) / len(configs)
    out = []
    for config in configs:
        record = records.get(config.key()) or {"key": config.key(), "config": config.to_dict(), "ok": False,
                                               "error": failure}
        record["wall_s"] = wall  # the process's wall time, shared among its configurations
        out.append(record)
    return out


def _pipeline_rates(configs: list[BenchConfig], manifest: str | None) -> list[dict]:
    """The shards -> tf.data rate alone, for each (manifest, batch) a configuration reads, and
    for `manifest` at every batch of the configurations whose input has its image shape."""
    pairs = {(c.manifest, c.batch) for c in configs if c.manifest}
    if manifest:
        shape = tuple(load_manifest(manifest)["image_shape"])
        pairs |= {(manifest, c.batch) for c in configs if c.input_shape() == shape}
    pairs = sorted(pairs)
    return [{"manifest": m, "batch": b, "images_per_s": pipeline_rate(m, b)} for m, b in pairs]


def _log_record(log: Callable[[str], None], record: dict, config: BenchConfig, progress: str) -> None:
    if record["ok"]:
        times = sorted(record["step_times_s"])
        outcome = f"{config.batch / times[len(times) // 2]:,.1f} samples/s"
    else:
        outcome = f"FAILED: {record['error']}"
    log(f"[{progress}] {config.key()} repeat {record['repeat'] + 1}: {outcome} ({record['wall_s']:.0f} s)")


def controlled_groups(configs: list[BenchConfig]) -> set[str]:
    """The groups an A/A control among `configs` measures a second time."""
    return {c.group().removesuffix("/aa-control") for c in configs if c.control}


def bundles(configs: list[BenchConfig], seed: int | None = None, repeat: int = 0) -> list[list[BenchConfig]]:
    """The configurations grouped by `BenchConfig.bundle` (one worker process each), in the
    order their first member appears, each bundle's members in the order its process runs them.
    The groups an A/A control measures come first: the control runs alone in a fresh process, so
    its twin, and that twin's counterparts in the other modes, run first in theirs too, not after
    others have warmed the process. With `seed`, the other members follow in a permutation drawn
    as `bundle_orders` draws the bundles' (from `seed`, the bundle's label and `repeat`, redrawn
    while it equals the previous repeat's): the two sides of a ratio sit in different bundles, at
    different places, so a fixed order would leave a place effect (what the configurations before
    left in the process) as a bias no pairing cancels."""
    controlled = controlled_groups(configs)
    grouped: dict[tuple, list[BenchConfig]] = {}
    for config in configs:
        grouped.setdefault(config.bundle(), []).append(config)
    out = []
    for members in grouped.values():
        lead = [c for c in members if c.group() in controlled]
        rest = [c for c in members if c.group() not in controlled]
        if seed is not None:
            rest = [rest[i] for i in bundle_orders(len(rest), f"{seed}/{bundle_label(members)}", repeat + 1)[repeat]]
        out.append(lead + rest)
    return out


def bundle_label(bundle: list[BenchConfig]) -> str:
    """A bundle as the results' `order` names it: its mode and execution environment."""
    return "/".join(str(part) for part in bundle[0].bundle() if part is not None)


def bundle_orders(count: int, seed: int | str, repeats: int) -> list[list[int]]:
    """The order (indices) `count` bundles run in, for repeats 0 .. `repeats` - 1: each a
    permutation drawn from (`seed`, repeat), redrawn while it equals the previous repeat's, so no
    bundle keeps a fixed position and a position effect (the machine warming up, memory filling)
    lands on either side of a ratio at random instead of biasing it."""
    orders: list[list[int]] = []
    for repeat in range(repeats):
        order, draw = _draw_order(count, seed, repeat), 0
        while count > 1 and orders and order == orders[-1]:
            draw += 1
            order = _draw_order(count, seed, repeat, draw)
        orders.append(order)
    return orders


def _draw_order(count: int, seed: int | str, repeat: int, draw: int = 0) -> list[int]:
    order = list(range(count))
    random.Random(f"{seed}/{repeat}/{draw}").shuffle(order)
    return order


def _wall_estimate_s(results: dict, keys: set[str]) -> float:
    """Expected wall time of one more repeat of `keys`: the mean of their runs so far."""
    walls: dict[str, list[float]] = {}
    for run in results["runs"]:
        walls.setdefault(run["key"], []).append(run.get("wall_s", 0.0))
    return sum(sum(walls[k]) / len(walls[k]) for k in keys if k in walls)


# Why the extra repeats ended (`adaptive.stop.reason` in results.json), as the run's log says it.
STOP_LOG = {"budget": "stopped by the time budget; the report states each interval as measured",
            "done": "done", "none needed": "none needed",
            "one repeat": "none: one repeat gives no interval to plan them from"}


def extra_plan(results: dict, target: float, max_repeats: int) -> dict[str, int]:
    """Repeats in all for each configuration key, fixed once from the first stage: both sides of
    every imprecise graph-mode ratio get `stein_repeats` of its first-stage spread."""
    configs, first = per_config(results), results["repeats"]
    plan: dict[str, int] = {}
    for pair in imprecise_pairs(results, target):
        keys = [f"{pair['mode']}/{pair['group']}", f"{pair['baseline']}/{pair['group']}"]
        fast, slow = (configs[k].repeat_step_s for k in keys)
        stage = sorted((r for r in set(fast) & set(slow) if int(r) < first), key=int)
        n = stein_repeats(log_ratios([fast[r] for r in stage], [slow[r] for r in stage]), target, cap=max_repeats)
        for key in keys:
            plan[key] = max(plan.get(key, 0), n)
    return {k: n for k, n in plan.items() if n > first}


def run(configs: list[BenchConfig], repeats: int, out_path: Path, preset: str | None = None,
        manifest: str | None = None, timeout: float = 1800, log: Callable[[str], None] = print,
        budget_s: float | None = None, max_repeats: int = MAX_REPEATS,
        target: float = PRECISION_TARGET, order_seed: int | None = None,
        account: int = ACCOUNT_SAMPLES) -> dict:
    """Every applicable configuration `repeats` times, interleaved, one process per bundle and
    repeat, the bundles in the order `bundle_orders` draws from `order_seed` (random when None;
    recorded) and each one's configurations in the order `bundles` draws from it (recorded as
    each run's `process_slot`); returns the results.

    With `budget_s`, extra repeats follow for both sides of every graph-mode ratio whose
    interval is wider than +-`target`: how many is decided once, from the first `repeats`
    (Stein's two-stage rule, `extra_plan`, at most `max_repeats` in all), and they run
    interleaved, one repeat at a time, while the run's elapsed time plus the next repeat's
    expected time stays within `budget_s`. An extra repeat runs each whole bundle that holds a
    planned configuration, as the first stage did, so its processes do what theirs did.

    In the first repeat, both sides of every verdict row profile samples after their timed ones
    (`benchmarks.measure.accounting`; `account` asked, 0: none; `BenchConfig.profiled_samples`
    says how many each profiles); the sides the GPU projection uses (`projected_keys`) profile in
    every repeat.
    """
    started = time.monotonic()
    seed = random.SystemRandom().randrange(2 ** 31) if order_seed is None else order_seed
    results = {"schema": SCHEMA_VERSION, "preset": preset, "repeats": repeats, "machine": machine_info(),
               "git_commit": _git_commit(), "started": dt.datetime.now(dt.UTC).isoformat(),
               "environment": {name: os.environ.get(name) for name in PINNED_ENV},
               "adaptive": {"budget_s": budget_s, "max_repeats": max_repeats, "target": target, "extra": [],
                            "plan": {}},
               "configs": [c.to_dict() for c in configs], "order": {"seed": seed, "repeats": []},
               "runs": [], "skipped": [], "pipeline": []}
    runnable = []
    for config in configs:
        reason = config.applicable()
        if reason:
            results["skipped"].append({"key": config.key(), "reason": reason})
        else:
            runnable.append(config)
    results["pipeline"] = _pipeline_rates(runnable, manifest)
    for rate in results["pipeline"]:
        log(f"pipeline {Path(rate['manifest']).parent.name} batch {rate['batch']}: "
            f"{rate['images_per_s']:,.0f} images/s")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    env, total, done = worker_env(), len(runnable) * repeats, 0

    # every row's sides in the first repeat; the GPU projection's in every repeat, for an interval
    accounted = (row_keys(runnable), projected_keys(runnable)) if account else (set(), set())

    def measure(chosen: list[BenchConfig], repeat: int, progress: Callable[[], str]) -> None:
        keys = accounted[0] if repeat == 0 else accounted[1]
        chosen = [replace(c, account=c.profiled_samples(account)) if c.key() in keys else c for c in chosen]
        grouped = bundles(chosen, seed, repeat)
        order = bundle_orders(len(grouped), seed, repeat + 1)[repeat]
        results["order"]["repeats"].append({"repeat": repeat, "bundles": [bundle_label(grouped[i]) for i in order]})
        for position, index in enumerate(order):
            bundle = grouped[index]
            for slot, (record, config) in enumerate(zip(run_bundle(bundle, env, timeout), bundle)):
                record["repeat"], record["position"], record["process_slot"] = repeat, position, slot
                results["runs"].append(record)
                _log_record(log, record, config, progress())
            write_json(out_path, results)

    for repeat in range(repeats):
        def progress() -> str:
            nonlocal done
            done += 1
            return f"{done}/{total}"
        measure(runnable, repeat, progress)
    plan = extra_plan(results, target, max_repeats) if budget_s and repeats >= 2 else {}
    results["adaptive"]["plan"] = plan
    repeat = repeats
    while budget_s:
        planned = {k for k, n in plan.items() if n > repeat}
        planned_bundles = {c.bundle() for c in runnable if c.key() in planned}
        chosen = [c for c in runnable if c.bundle() in planned_bundles]
        keys = {c.key() for c in chosen}
        estimate, elapsed = _wall_estimate_s(results, keys), time.monotonic() - started
        used = f"{elapsed / 60:.1f} of {budget_s / 60:.1f} min used"
        if not keys or elapsed + estimate > budget_s:
            reason = "budget" if keys else "done" if plan else "none needed" if repeats >= 2 else "one repeat"
            results["adaptive"]["stop"] = {"reason": reason, "elapsed_s": round(elapsed, 1)}
            log(f"extra repeats: {STOP_LOG[reason]} ({used})")
            break
        log(f"repeat {repeat + 1} for {len({group_of(k) for k in planned})} comparison(s) planned to reach "
            f"+-{target:.0%}: {len(bundles(chosen))} whole bundle(s) (about {estimate:.0f} s; {used})")
        results["adaptive"]["extra"].append({"repeat": repeat, "keys": sorted(keys)})
        count, total = iter(range(1, len(chosen) + 1)), len(chosen)
        measure(chosen, repeat, lambda count=count, total=total: f"extra {next(count)}/{total}")
        repeat += 1
    results["finished"] = dt.datetime.now(dt.UTC).isoformat()
    results["summary"] = summarize_results(results)
    write_json(out_path, results)
    return results
