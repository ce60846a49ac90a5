"""Configurations on several replicas: N local devices (`BenchConfig.devices`) or N localhost
worker processes (`BenchConfig.workers`).

The worker side (`prepare`) makes the devices exist before TensorFlow starts, reads the
cluster the runner put in TF_CONFIG and, for Keras, creates the strategy first, as
`tf.distribute` requires. The runner side (`run_cluster`) starts one benchmark worker per task
of a localhost cluster (graph modes add a ps task, which holds the variables), reports the
chief's timing and stops every process it started, also on failure and timeout.

On a machine without GPUs the devices are logical CPU devices and the workers are processes on
the same cores: such figures show that the code paths work, not how they scale.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from api_runs.devices import Cluster, local_devices, localhost_jobs, read_cluster
from benchmarks.config import BenchConfig
from benchmarks.measure.protocol import read_result

POLL_SECONDS = 0.2


@dataclass
class Placement:
    """Where one worker process's replicas are: its local devices (() for one), its cluster
    (None for one process), and the Keras strategy over either (None for graph modes)."""
    devices: tuple = ()
    cluster: Cluster | None = None
    strategy: object = None

    @property
    def is_ps(self) -> bool:
        return self.cluster is not None and self.cluster.task_type == "ps"


def prepare(config: BenchConfig) -> Placement:
    """The placement of a worker process's configurations; call before TensorFlow runs anything."""
    devices = tuple(local_devices(config.devices)) if config.devices > 1 else ()
    cluster = read_cluster(None) if config.workers > 1 else None
    strategy = None
    if not config.spec.is_graph and (devices or cluster is not None):
        from keras_api import make_strategy  # late: a graph mode's worker loads no Keras
        strategy = make_strategy(devices, cluster)
    return Placement(devices, cluster, strategy)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def task_error(path: Path) -> str:
    """Why a task failed, from its log: the error of the result record it printed last (a record
    is mostly its configuration, which would push the error past any cut), else its last line."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not lines:
        return "no output"
    record = read_result(lines[-1])  # None if cut short by the kill: the line as it is
    return str(record["error"] if record and "error" in record else lines[-1])[:300]


def run_cluster(config: BenchConfig, env: dict, timeout: float) -> tuple[str, str | None]:
    """One configuration on a localhost cluster of `config.workers` workers (and one ps task for
    graph modes), each task a benchmark worker process with its TF_CONFIG -> (the chief's
    stdout, why the run failed or None). `timeout` (s) bounds the whole cluster."""
    jobs = localhost_jobs(config.workers, ps=1 if config.spec.is_graph else 0)
    tasks = [(job, i) for job in ("worker", "ps") for i in range(len(jobs.get(job, ())))]
    command = [sys.executable, "-m", "benchmarks.measure.worker", json.dumps([config.to_dict()])]
    procs: dict[tuple[str, int], subprocess.Popen] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        logs = {task: Path(tmp) / f"{task[0]}-{task[1]}.log" for task in tasks}
        try:
            for task in tasks:
                task_env = {**env, "TF_CONFIG": Cluster(jobs, *task, "runner").tf_config()}
                with open(logs[task], "w") as log:
                    procs[task] = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2], env=task_env,
                                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            failure = _wait(procs, logs, time.monotonic() + timeout, timeout)
        finally:
            _stop(list(procs.values()))
        return logs[("worker", 0)].read_text(errors="replace"), failure


def _first_failure(procs: dict, logs: dict) -> str | None:
    """The first task that exited with an error, with why (`task_error`); None if none did."""
    for (job, index), proc in procs.items():
        if proc.poll() not in (None, 0):
            return f"{job} task {index} exited with status {proc.returncode}: {task_error(logs[(job, index)])}"
    return None


def _wait(procs: dict, logs: dict, deadline: float, timeout: float) -> str | None:
    """Until every task has exited -> None, or the first failure: a task that exited with an
    error, or the deadline passed."""
    while any(proc.poll() is None for proc in procs.values()):
        failure = _first_failure(procs, logs)
        if failure:
            return failure
        if time.monotonic() > deadline:
            return f"timed out after {timeout:.0f} s"
        time.sleep(POLL_SECONDS)
    return _first_failure(procs, logs)
