"""Commands run as forks of a process that has imported TensorFlow once.

Every `python -m <package>` the tests start would import TensorFlow (4 s of CPU each, more
than a hundred commands per suite). `CommandServer` starts one process per test process that
imports TensorFlow, NumPy, h5py, imageio and SciPy's statistics and nothing else (no runtime,
no session, no eager context: there is nothing a fork could copy half-way; none of the
project's modules, whose import-time state is the command's), then forks a child per command. The
child is a process of its own, with the command's argv, environment, working directory and
output files; it runs `<package>.__main__` as `python -m` does and ends as the interpreter
ends (atexit handlers, threads joined), so its exit status, a hang at exit and what it prints
are its own. The test process is made the children's subreaper (`PR_SET_CHILD_SUBREAPER`):
the server forks each one through an intermediate process that exits at once, so the child
becomes the test process's own, which waits for it, polls it or kills it as it would a
`subprocess.Popen`, several at once (a localhost cluster).

What a fork cannot give is what happens while TensorFlow is imported: callers start a real
process for a command whose environment differs from the server's in a variable read then
(`needs_fresh_process`), e.g. the log level or Keras 2.

Run as a script, this file is the server: it reads one JSON request per line on stdin and
answers each with the child's pid on stdout.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# Variables TensorFlow, Keras, oneDNN, OpenMP or Python read at start-up or import: a command
# whose value differs from the server's gets a fresh process. TF_CONFIG is read when a cluster
# is made, not on import.
FRESH_PROCESS_PREFIXES = ("TF_", "XLA_", "KERAS", "ONEDNN", "DNNL", "MKL", "OMP_", "KMP_", "CUDA", "PYTHON",
                          "LD_", "MALLOC")
READ_AFTER_IMPORT = ("TF_CONFIG",)
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def needs_fresh_process(env: dict[str, str], server_env: dict[str, str]) -> bool:
    """True when `env` and the server's start-up environment differ in a variable read at start-up."""
    keys = {k for k in env.keys() | server_env.keys()
            if k.startswith(FRESH_PROCESS_PREFIXES) and k not in READ_AFTER_IMPORT}
    return any(env.get(k) != server_env.get(k) for k in keys)


class ForkedProcess:
    """A child the server forked, adopted by this process: `subprocess.Popen`'s pid, poll, wait
    and returncode (negative: the signal that ended it)."""

    def __init__(self, pid: int, args: list[str]):
        self.pid, self.args, self.returncode = pid, args, None
        self._exited = os.pidfd_open(pid)  # readable once the process has ended

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._exited], [], [], 0)[0]:
            self._reap()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._exited], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._reap()
        return self.returncode

    def _reap(self) -> None:
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        os.close(self._exited)


class CommandServer:
    """One forking server (this file run as a script) for the calling process's commands."""

    def __init__(self, cwd: Path):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self.env = dict(os.environ)
        self.proc = subprocess.Popen([sys.executable, __file__], cwd=cwd, env=self.env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._replies = self.proc.stdout
        self._lock = threading.Lock()  # one request and its answer at a time, whichever thread asks
        if json.loads(self._replies.readline() or "null") != {"ready": True}:
            raise RuntimeError(f"the command server did not start (status {self.proc.poll()})")

    def start(self, args: list[str], env: dict[str, str], cwd: Path, stdout: Path, stderr: Path | None = None,
              append: bool = False, new_session: bool = False) -> ForkedProcess:
        """`python -m <args>` forked, writing to `stdout` and `stderr` (None: to `stdout`, as
        `stderr=subprocess.STDOUT`), appended to or replaced; in a session of its own if asked."""
        request = {"argv": list(args), "env": env, "cwd": str(cwd), "stdout": str(stdout),
                   "stderr": str(stderr) if stderr else None, "append": append, "new_session": new_session}
        with self._lock:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            reply = self._replies.readline()
        if not reply:
            raise RuntimeError(f"the command server ended (status {self.proc.wait()})")
        return ForkedProcess(json.loads(reply)["pid"], [sys.executable, "-m", *args])

    def run(self, args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        """`python -m <args>` forked, returned as `subprocess.run(..., capture_output=True,
        text=True)` returns it; raises `subprocess.TimeoutExpired` (the child killed) as it does."""
        with tempfile.TemporaryDirectory() as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            child = self.start(args, env, cwd, out, err)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
                raise subprocess.TimeoutExpired(child.args, timeout, out.read_text(), err.read_text()) from None
            return subprocess.CompletedProcess(child.args, child.returncode, out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()  # the server ends at the end of its input
        self.proc.wait(timeout=60)


def _serve() -> dict | None:
    """Answer requests until stdin ends (-> None, in the server); in a forked child, return its
    request. Each child is forked by an intermediate process that exits at once, so that the
    child is adopted by the test process (its subreaper), and the server waits for nobody."""
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    replies.write(b'{"ready": true}\n')
    replies.flush()
    for line in requests:
        request = json.loads(line)
        read_pid, write_pid = os.pipe()
        intermediate = os.fork()
        if intermediate == 0:
            os.close(read_pid)
            child = os.fork()
            if child == 0:
                os.close(write_pid)
                return request
            os.write(write_pid, str(child).encode())
            os._exit(0)
        os.close(write_pid)
        os.waitpid(intermediate, 0)
        pid = int(os.read(read_pid, 64))
        os.close(read_pid)
        replies.write(json.dumps({"pid": pid}).encode() + b"\n")
        replies.flush()
    return None


def _become(request: dict) -> None:
    """Turn this forked child into `python -m <argv>` as a fresh process would start it."""
    if request["new_session"]:
        os.setsid()
    mode = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if request["append"] else os.O_TRUNC)
    stdout = os.open(request["stdout"], mode, 0o644)
    stderr = os.open(request["stderr"], mode, 0o644) if request["stderr"] else stdout
    stdin = os.open(os.devnull, os.O_RDONLY)
    for source, fd in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(source, fd)
    for source in {stdin, stdout, stderr}:
        os.close(source)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # the server's, cached when it imported TensorFlow; the command reads its own TMPDIR
    sys.path[0] = request["cwd"]  # `python -m` puts the working directory first
    package, *args = request["argv"]
    sys.argv = [package, *args]


if __name__ == "__main__":
    sys.path[0] = os.getcwd()  # the repository, as for the commands themselves
    from plumbing.tf_logging import import_tensorflow_quietly
    import_tensorflow_quietly()
    import h5py  # noqa: F401  (what every command imports besides TensorFlow)
    import imageio.v3  # noqa: F401  (0.2 s: the commands that read or write images)
    import numpy  # noqa: F401
    import scipy.stats  # noqa: F401  (0.4 s: the benchmark commands' statistics)
    sys.stdout.flush()
    sys.stderr.flush()
    child_request = _serve()
    if child_request is not None:
        import runpy
        _become(child_request)
        # At the top level, so that the command's SystemExit ends the interpreter as it would
        # end `python -m`.
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
