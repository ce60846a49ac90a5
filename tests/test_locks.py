"""One writer per folder: a second command on a run directory or an output folder is refused
in one line naming the holder; a lock left by a killed process is taken over; readers share.

Each holder is a child process that takes the lock and says so before the test goes on, so no
test depends on how fast a process starts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from shard_helpers import feature_shards

from plumbing import locks
from plumbing.errors import UserError

from conftest import REPO, assert_user_error, file_tree, run_cli

pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

HOLDER = textwrap.dedent("""
    import sys
    from plumbing import locks
    locks.hold(sys.argv[1], "python -m graph_api train", shared=sys.argv[2] == "shared")
    print("held", flush=True)
    sys.stdin.readline()  # until the test closes stdin, or kills this process
""")


class Holder:
    """A child process holding `folder`'s lock (exclusive, or shared)."""

    def __init__(self, folder: Path, shared: bool = False) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), "shared" if shared else "writer"],
                                     cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


@pytest.fixture
def holder():
    made = []
    yield lambda folder, shared=False: made.append(Holder(folder, shared)) or made[-1]
    for h in made:
        h.close()


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, holder):
    h = holder(tmp_path)
    with pytest.raises(UserError) as err:
        locks.hold(tmp_path, "python -m keras_api train")
    assert err.value.message.startswith(f"{tmp_path}: in use by python -m graph_api train (pid {h.proc.pid} on ")
    h.close()  # released: the file is gone and the folder is free again
    assert not (tmp_path / locks.LOCK_FILE).exists()
    with locks.hold(tmp_path, "python -m keras_api train"):
        assert json.loads((tmp_path / locks.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / locks.LOCK_FILE).exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, holder):
    h = holder(tmp_path)
    h.kill()  # SIGKILL: no clean-up ran, the file still names the dead process
    assert json.loads((tmp_path / locks.LOCK_FILE).read_text())["pid"] == h.proc.pid
    with locks.hold(tmp_path, "python -m graph_api train"):
        assert json.loads((tmp_path / locks.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / locks.LOCK_FILE).exists()


def test_readers_share_and_exclude_a_writer(tmp_path, holder):
    holder(tmp_path, shared=True)
    with locks.hold(tmp_path, "evaluate", shared=True):  # a second reader at the same time
        with pytest.raises(UserError, match="in use by another process reading it"):
            locks.hold(tmp_path, "train")
    other = tmp_path / "other"
    other.mkdir()
    writer = holder(other)
    with pytest.raises(UserError, match=f"pid {writer.proc.pid}"):
        locks.hold(other, "evaluate", shared=True)


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return feature_shards(tmp_path_factory.mktemp("lock-features"), n_train=16, n_val=8)



@pytest.mark.parametrize("api", ["graph_api", "keras_api"])
@pytest.mark.parametrize("held_by", ["writer", "reader"])
def test_train_into_a_run_another_process_uses_is_one_line(api, held_by, features, tmp_path, holder):
    """A second train, or a train into a run another process is evaluating from: refused before
    anything is written, in one line naming the folder; the run stays as it was."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text("{}")
    h = holder(run, shared=held_by == "reader")
    before = file_tree(run)
    result = run_cli(api, "train", "--model", "vgg16_head", "--manifest", str(features),
                     "--out", str(run), "--epochs", "1", "--batch-size", "8")
    line = assert_user_error(result, f"error: {run}: in use by ", unchanged={run: before})
    assert (f"pid {h.proc.pid}" in line) == (held_by == "writer")


def test_build_into_a_folder_being_built_is_one_line(synth_root, tmp_path, holder):
    out = tmp_path / "shards"
    out.mkdir()
    holder(out)
    result = run_cli("data_pipeline", "build", "--root", str(synth_root), "--out", str(out), "--size", "32")
    assert_user_error(result, f"error: {out}: in use by ")
    assert sorted(p.name for p in out.iterdir()) == [locks.LOCK_FILE]


def test_a_finished_train_and_predict_leave_no_lock_behind(features, tmp_path):
    run = tmp_path / "run"
    trained = run_cli("graph_api", "train", "--model", "vgg16_head", "--manifest", str(features),
                      "--out", str(run), "--epochs", "1", "--batch-size", "8")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert not (run / locks.LOCK_FILE).exists()
    evaluated = run_cli("graph_api", "evaluate", "--run", str(run), "--manifest", str(features),
                        "--split", "val")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert not (run / locks.LOCK_FILE).exists()
