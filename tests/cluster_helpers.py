"""Localhost clusters for the distribution tests: processes of `python -m <api> train` on free
ports, each with its own TF_CONFIG, bounded in time and always stopped by the test."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from command_server import ForkedProcess

from api_runs.devices import Cluster as TaskView  # one process's view: its TF_CONFIG

from conftest import start_cli

DEADLINE_SECONDS = 240  # a whole cluster run; the processes are killed past it


class Cluster:
    """The processes of one localhost cluster; a context manager that kills what is left."""

    def __init__(self, api: str, jobs: dict, args: list[str], logs: Path) -> None:
        self.api, self.jobs, self.args, self.logs = api, jobs, args, logs
        self.procs: dict[tuple[str, int], subprocess.Popen | ForkedProcess] = {}
        self.started = time.monotonic()
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, job: str, index: int, out: Path, extra: list[str] = (), via_file: bool = False,
              env: dict | None = None) -> subprocess.Popen | ForkedProcess:
        """Start task (job, index): its TF_CONFIG in the environment, or in a `--cluster` file;
        `env` adds variables."""
        config = TaskView(self.jobs, job, index, "test").tf_config()
        env = {**{k: v for k, v in os.environ.items() if k != "TF_CONFIG"}, **(env or {})}
        if via_file:
            path = self.logs / f"{job}-{index}.json"
            path.write_text(config)
            extra = [*extra, "--cluster", str(path)]
        else:
            env["TF_CONFIG"] = config
        proc = start_cli(self.api, "train", *self.args, "--out", str(out), *extra, env=env,
                         log=self.log_path(job, index))
        self.procs[(job, index)] = proc
        return proc

    def log_path(self, job: str, index: int) -> Path:
        return self.logs / f"{job}-{index}.log"

    def log(self, job: str, index: int) -> str:
        path = self.log_path(job, index)
        return path.read_text() if path.exists() else ""

    def wait_for(self, job: str, index: int, text: str) -> None:
        """Until `text` appears in the task's log (AssertionError past the deadline)."""
        while text not in self.log(job, index):
            proc = self.procs[(job, index)]
            assert proc.poll() is None or text in self.log(job, index), \
                f"{job} {index} exited ({proc.returncode}) before {text!r}:\n{self.log(job, index)[-3000:]}"
            assert time.monotonic() - self.started < DEADLINE_SECONDS, f"timed out waiting for {text!r}"
            time.sleep(0.2)

    def kill(self, job: str, index: int) -> None:
        proc = self.procs[(job, index)]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def wait(self, job: str, index: int) -> int:
        remaining = max(1.0, DEADLINE_SECONDS - (time.monotonic() - self.started))
        try:
            return self.procs[(job, index)].wait(remaining)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{job} {index} still running after {DEADLINE_SECONDS} s:\n"
                                 f"{self.log(job, index)[-3000:]}") from None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
