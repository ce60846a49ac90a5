"""Atomic file writes: every writer in the project goes through `atomic_path`.

A file is written under a temporary name in its final folder, flushed to disk and renamed
over the final name, so a reader never sees half a file and a failed write leaves the
previous file byte-identical. Temporary names contain ``TMP_MARK``; a resumed build
removes leftovers by that mark.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def temp_path(path: str | os.PathLike, keep_suffix: bool = False) -> Path:
    """The temporary name for `path`: ``<name>.tmp-<pid>``, or ``<stem>.tmp-<pid><suffix>``
    with `keep_suffix` for writers that choose the format by extension (matplotlib, Keras)."""
    path = Path(path)
    if not keep_suffix:
        return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    suffix = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    stem = path.name[:len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f"{stem}{TMP_MARK}{os.getpid()}{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to `path`,
    on any exception it is removed and `path` is left as it was."""
    path = Path(path)
    tmp = temp_path(path, keep_suffix)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None and err.errno:  # e.g. h5py's: the OS's reason, but no file named
            raise OSError(err.errno, os.strerror(err.errno), str(path)) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _as_json(value: Any) -> Any:
    """A typed record's JSON form: its `to_dict()`."""
    if callable(getattr(value, "to_dict", None)):
        return value.to_dict()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """`payload` as indented, key-sorted JSON, written atomically; typed records inside it are
    written as their `to_dict()`."""
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=_as_json) + "\n").encode())
