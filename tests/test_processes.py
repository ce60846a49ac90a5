"""`plumbing.processes.run_side_by_side`: commands at most N at a time, in order; the first
failure stops the others."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from plumbing.processes import Finished, run_side_by_side

# Waits (up to 60 s, then exits 1) until the file argv[2] exists, after creating argv[1].
WAIT_FOR = ("import pathlib, sys, time\n"
            "pathlib.Path(sys.argv[1]).touch()\n"
            "end = time.monotonic() + 60\n"
            "while not pathlib.Path(sys.argv[2]).exists():\n"
            "    if time.monotonic() > end: sys.exit(1)\n"
            "    time.sleep(0.01)\n")


def _script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _strict(index: int, finished: Finished) -> None:
    if finished.returncode:
        raise RuntimeError(f"command {index} exited {finished.returncode}: {finished.stderr.strip()}")


def test_two_jobs_run_side_by_side_and_one_job_runs_them_in_order(tmp_path):
    wait = _script(tmp_path, "wait.py", WAIT_FOR)
    # each waits for the other to have started: they pass only if both run at once
    a, b = tmp_path / "a", tmp_path / "b"
    done = []
    results = run_side_by_side([[sys.executable, wait, str(a), str(b)], [sys.executable, wait, str(b), str(a)]], 2,
                               cwd=tmp_path, env=dict(os.environ), check=_strict, done=done.append)
    assert [r.returncode for r in results] == [0, 0] and sorted(done) == [0, 1]
    # one at a time, in the order given: the second finds the first's file and writes its own
    order = tmp_path / "order.txt"
    append = _script(tmp_path, "append.py", "import sys\nopen(sys.argv[1], 'a').write(sys.argv[2])\n")
    run_side_by_side([[sys.executable, append, str(order), str(i)] for i in range(4)], 1,
                     cwd=tmp_path, env=dict(os.environ), check=_strict)
    assert order.read_text() == "0123"


def test_the_first_failure_kills_the_running_commands_and_starts_no_more(tmp_path):
    # left running, it would finish 20 s on, before the call could return
    slow = _script(tmp_path, "slow.py", "import pathlib, sys, time\npathlib.Path(sys.argv[1]).touch()\n"
                                        "time.sleep(20)\npathlib.Path(sys.argv[1] + '.finished').touch()\n")
    wait = _script(tmp_path, "wait.py", WAIT_FOR)
    fail = _script(tmp_path, "fail.py", WAIT_FOR + "sys.stderr.write('error: it broke\\n'); sys.exit(3)\n")
    commands = [[sys.executable, slow, str(tmp_path / "slow")],
                [sys.executable, fail, str(tmp_path / "failing"), str(tmp_path / "slow")],  # fails once slow started
                [sys.executable, wait, str(tmp_path / "queued"), str(tmp_path / "failing")]]
    with pytest.raises(RuntimeError, match="command 1 exited 3: error: it broke"):
        run_side_by_side(commands, 2, cwd=tmp_path, env=dict(os.environ), check=_strict)
    assert (tmp_path / "slow").exists() and not (tmp_path / "slow.finished").exists()
    assert not (tmp_path / "queued").exists()
