"""Where a training run executes, read the same way by both APIs: the local devices of a
data-parallel run (``--devices``) and the cluster of a multi-process one (``--cluster FILE`` or
the ``TF_CONFIG`` environment variable, TensorFlow's own JSON:
``{"cluster": {"worker": ["host:port", ...], "ps": [...]}, "task": {"type": "worker", "index": 0}}``).

Devices must be chosen before TensorFlow initialises its runtime: a machine without GPUs gets
N *logical* CPU devices (`tf.config.set_logical_device_configuration`), which share the
CPU's cores; they prove the data-parallel code paths, not a speed-up."""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from plumbing.errors import UserError
from plumbing.tables import record_named


@dataclass(frozen=True)
class VariableUpdate:
    """Where graph_api's data-parallel towers keep their variables (``--variable-update``,
    named as tf_cnn_benchmarks names them)."""
    name: str
    # A copy on every device, the towers' gradients all-reduced by collective ops; else one copy
    # on the parameter-server device (the CPU, or a cluster's ps tasks) that every tower reads.
    copy_per_device: bool


PARAMETER_SERVER = VariableUpdate("parameter_server", copy_per_device=False)
REPLICATED = VariableUpdate("replicated", copy_per_device=True)
VARIABLE_UPDATES: dict[str, VariableUpdate] = {v.name: v for v in (PARAMETER_SERVER, REPLICATED)}


def variable_update_named(name: str) -> VariableUpdate:
    """The record of variable update `name`; a user error naming the choices for an unknown one."""
    return record_named(VARIABLE_UPDATES, name, "variable update")

JOBS = ("chief", "worker", "ps")
_DEVICE = re.compile(r"^/(?:device:)?(cpu|gpu):(\d+)$", re.IGNORECASE)


def parse_devices(text: str) -> int | list[str]:
    """argparse type of ``--devices``: a device count, or a list like "/gpu:0,/gpu:1"."""
    text = text.strip()
    if text.isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError("must be at least 1")
        return int(text)
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [name for name in names if not _DEVICE.match(name)]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{bad[0] if bad else text!r} is neither a count nor a device "
                                         "like /gpu:0 or /cpu:1")
    if len(set(n.lower() for n in names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r} names a device twice")
    return [_canonical(name) for name in names]


def _canonical(name: str) -> str:
    kind, index = _DEVICE.match(name).groups()
    return f"/{kind.lower()}:{index}"


def local_devices(spec: int | list[str]) -> list[str]:
    """Make the devices of `spec` exist and name them -> ["/gpu:0", ...] or ["/cpu:0", ...].
    Call before TensorFlow's runtime starts (before any op runs).
    A count takes the first N GPUs when there are that many, else splits the CPU into N
    logical devices when the machine has no GPU; a list is checked against what exists."""
    import tensorflow as tf  # the command line parses --devices before TensorFlow loads
    gpus = tf.config.list_physical_devices("GPU")
    if isinstance(spec, int):
        if gpus:
            if spec > len(gpus):
                raise UserError(f"--devices: {spec} requested, this machine has {len(gpus)} GPU(s)")
            return [f"/gpu:{i}" for i in range(spec)]
        names = [f"/cpu:{i}" for i in range(spec)]
    else:
        names = spec
    wanted_gpus = [int(n.split(":")[1]) for n in names if n.startswith("/gpu")]
    if wanted_gpus and max(wanted_gpus) >= len(gpus):
        raise UserError(f"--devices: /gpu:{max(wanted_gpus)} requested, this machine has {len(gpus)} GPU(s)")
    cpus = [int(n.split(":")[1]) for n in names if n.startswith("/cpu")]
    if cpus and max(cpus) > 0:
        _split_cpu(max(cpus) + 1)
    return names


def device_kind(names: list[str]) -> str:
    """"GPU", "logical CPU" (the CPU split into several devices), "CPU", or "mixed"."""
    kinds = {name.split(":")[0] for name in names}
    if kinds == {"/gpu"}:
        return "GPU"
    if kinds == {"/cpu"}:
        return "logical CPU" if len(names) > 1 or names != ["/cpu:0"] else "CPU"
    return "mixed"


def _split_cpu(count: int) -> None:
    import tensorflow as tf  # as local_devices
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:  # the runtime started already: usable only if it has the devices
        if len(tf.config.list_logical_devices("CPU")) < count:
            raise UserError(f"--devices: {count} CPU devices must be configured before TensorFlow starts; "
                            "pass --devices on the command line") from None


@dataclass(frozen=True)
class Cluster:
    """One process's view of a multi-process run: every job's addresses and its own task."""

    jobs: dict                  # job name -> ["host:port", ...]
    task_type: str
    task_index: int
    source: str                 # "TF_CONFIG" or the --cluster file

    @property
    def workers(self) -> list[str]:
        """The training tasks, chief first: ["/job:chief/task:0", "/job:worker/task:0", ...]."""
        return [f"/job:{job}/task:{i}" for job in ("chief", "worker") for i in range(len(self.jobs.get(job, ())))]

    @property
    def task(self) -> str:
        return f"/job:{self.task_type}/task:{self.task_index}"

    @property
    def worker_index(self) -> int:
        """This task's place among `workers` (its slice of each global batch)."""
        return self.workers.index(self.task)

    @property
    def is_chief(self) -> bool:
        """The task that initialises, checkpoints and writes summaries: the chief, or worker 0
        when the cluster has no chief job (TensorFlow's convention)."""
        return self.task == self.workers[0]

    def tf_config(self) -> str:
        """This process's TF_CONFIG (what `tf.distribute` reads)."""
        return json.dumps({"cluster": self.jobs, "task": {"type": self.task_type, "index": self.task_index}})


def read_cluster(path: str | None) -> Cluster | None:
    """The cluster of `--cluster FILE`, else of ``TF_CONFIG``, else None (one process)."""
    if path is not None:
        try:
            text, source = Path(path).read_text(), path
        except OSError as err:
            raise UserError(f"{path}: cannot read the cluster file ({err.strerror})") from None
    elif os.environ.get("TF_CONFIG", "").strip():
        text, source = os.environ["TF_CONFIG"], "TF_CONFIG"
    else:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{source}: not JSON ({err.msg} at line {err.lineno})") from None
    return _check_cluster(config, source)


def _check_cluster(config, source: str) -> Cluster:
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise UserError(f'{source}: expected {{"cluster": {{job: [addresses]}}, "task": {{"type", "index"}}}}')
    jobs = config["cluster"]
    for job, addresses in jobs.items():
        if job not in JOBS:
            raise UserError(f"{source}: unknown job {job!r}: expected {', '.join(JOBS)}")
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and re.match(r"^[^:\s]+:\d+$", a) for a in addresses)):
            raise UserError(f"{source}: job {job!r} must list addresses as \"host:port\"")
    if not any(job in jobs for job in ("chief", "worker")):
        raise UserError(f"{source}: the cluster has no worker or chief job")
    if len(jobs.get("chief", ())) > 1:
        raise UserError(f"{source}: a cluster has at most one chief")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in jobs:
        raise UserError(f"{source}: task.type must name a job of the cluster ({', '.join(jobs)})")
    index = task.get("index", 0)
    if not isinstance(index, int) or not 0 <= index < len(jobs[task["type"]]):
        raise UserError(f"{source}: task.index {index!r} is not a task of job {task['type']!r}")
    return Cluster({job: list(jobs[job]) for job in jobs}, task["type"], index, source)


def is_chief(cluster: Cluster | None) -> bool:
    """Whether this process writes the run's files: a one-process run, or a cluster's chief."""
    return cluster is None or cluster.is_chief


def split_batch(global_batch: int, parts: int, what: str) -> int:
    """Per-replica batch of a global batch split over `parts` replicas (devices or workers)."""
    if global_batch % parts:
        raise UserError(f"--batch-size: the global batch {global_batch} does not split evenly over {parts} {what}")
    return global_batch // parts


def localhost_jobs(workers: int, ps: int = 0) -> dict:
    """The jobs of a cluster on this machine: `workers` worker and `ps` ps tasks on free ports
    (free when asked; a port taken between now and the server's start fails that server)."""
    sockets = [socket.socket() for _ in range(workers + ps)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        ports = iter([s.getsockname()[1] for s in sockets])
    finally:
        for s in sockets:
            s.close()
    jobs = {"worker": [f"localhost:{next(ports)}" for _ in range(workers)]}
    if ps:
        jobs["ps"] = [f"localhost:{next(ports)}" for _ in range(ps)]
    return jobs
