"""One writer per folder: a run directory or an output folder is locked by the command writing
it, and a second command on it is refused in one line naming the holder.

The lock is `fcntl.flock` on ``<folder>/.lock``: the kernel releases it when its process ends,
however it ends (SIGKILL included), so a lock left by a dead process is taken over by the next
command. A writer holds it exclusively and records itself in the file (pid, host, command,
start); readers (predict, evaluate) hold it shared, so several may read a run at once but none
while it is written. The file is removed when the last holder releases it; `release_all` runs
before a command exits, also on the fast exit after a failure.
"""
from __future__ import annotations

import atexit
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from plumbing.errors import UserError, at_exit

LOCK_FILE = ".lock"
_HELD: dict[int, FolderLock] = {}


class FolderLock:
    """A held lock on one folder; `release()` gives it up."""

    def __init__(self, folder: Path, fd: int, shared: bool) -> None:
        self.folder, self.fd, self.shared = folder, fd, shared

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def release(self) -> None:
        if self.fd < 0:
            return
        try:  # the last holder (no one else has it, even shared) removes the file
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(self.path, self.fd):
                self.path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(self.fd)
            _HELD.pop(id(self), None)
            self.fd = -1

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _holder(fd: int) -> str:
    """Who holds the lock, as its record says."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        return "another process reading it (predict or evaluate)"
    return (f"{record.get('command', 'another command')} (pid {record.get('pid')} on {record.get('host')}, "
            f"since {record.get('started')})")


def hold(folder: str | os.PathLike, command: str, shared: bool = False) -> FolderLock:
    """Lock `folder` (it must exist) for this process: exclusively for a writer, `shared` for a
    reader -> the held lock. A UserError naming the holder if another process has it."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    for _ in range(3):  # the file can be removed by its last holder between open and lock
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if shared and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return FolderLock(folder, -1, shared)  # a run on read-only storage is read unlocked
            raise
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UserError(f"{folder}: in use by {holder}; wait for it to finish or stop it") from None
        if not _same_file(path, fd):
            os.close(fd)
            continue
        if not shared:  # a dead writer's record is replaced by this one
            record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                      "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        lock = FolderLock(folder, fd, shared)
        _HELD[id(lock)] = lock
        return lock
    raise UserError(f"{folder}: its lock file keeps being replaced; is another command starting there?")


def release(folder: str | os.PathLike) -> None:
    """Give up this process's lock on `folder`, if it holds one."""
    for lock in list(_HELD.values()):
        if lock.folder == Path(folder):
            lock.release()


def release_all() -> None:
    """Give up every lock this process holds (before it exits)."""
    for lock in list(_HELD.values()):
        lock.release()


def command_name() -> str:
    """This process's command as a person typed it, e.g. "python -m graph_api train"."""
    if sys.argv and sys.argv[0].endswith("__main__.py"):
        words = [a for a in sys.argv[1:2] if not a.startswith("-")]
        return " ".join(["python -m", Path(sys.argv[0]).parent.name, *words])
    return "python " + " ".join(Path(a).name for a in sys.argv[:1])


atexit.register(release_all)
at_exit(release_all)  # also before exit_process's fast exit after a failure
