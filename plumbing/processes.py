"""Commands run side by side, at most N at a time, where their timing is not what is measured
(e.g. the parity trainings): much of a short training is single-threaded (imports, Python), so
on 2 cores two side by side end sooner than two one after the other."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finished:
    """One command's end: its exit status and standard error (its standard output is dropped)."""
    returncode: int
    stderr: str


def default_jobs() -> int:
    """Commands at a time by default: one per core, at most 2."""
    return max(1, min(2, os.cpu_count() or 1))


def run_side_by_side(commands: Sequence[Sequence[str]], jobs: int, *, cwd: str | Path, env: dict,
                     check: Callable[[int, Finished], None],
                     done: Callable[[int], None] = lambda index: None) -> list[Finished]:
    """Run `commands` (argument lists), at most `jobs` at a time, in the order given -> each
    one's `Finished`, in that order. `check(index, finished)` runs as each one ends and may raise:
    the first exception (or an interrupt) kills the commands still running, starts no more and
    is raised; `done(index)` then follows a command that passed, in the caller's thread."""
    lock, stopping = threading.Lock(), threading.Event()
    live: set[subprocess.Popen] = set()
    results: list[Finished | None] = [None] * len(commands)

    def one(index: int) -> int:
        if stopping.is_set():
            return index
        # its own session, so that a kill reaches the processes it starts too
        proc = subprocess.Popen(list(commands[index]), cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        with lock:
            live.add(proc)
            if stopping.is_set():  # stopped between the check above and the start
                os.killpg(proc.pid, signal.SIGKILL)
        try:
            _, stderr = proc.communicate()
        finally:
            with lock:
                live.discard(proc)
        if not stopping.is_set():  # a command killed because another failed is not checked
            results[index] = Finished(proc.returncode, stderr)
            try:
                check(index, results[index])
            except BaseException:
                stopping.set()  # before this thread can take the next command
                raise
        return index

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        pending = {pool.submit(one, i) for i in range(len(commands))}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in finished:
                index = future.result()  # raises the command's failure
                if results[index] is not None:
                    done(index)
    except BaseException:
        stopping.set()
        with lock:
            for proc in live:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [r for r in results if r is not None]
