"""TensorFlow's C++ log level for a command, set before TensorFlow is imported.

On a machine with no NVIDIA driver, TensorFlow's CUDA probe logs
``E0000 ... failed call to cuInit`` at ERROR level although nothing failed; a user reads it
as an error. Where no driver is present, the C++ log level is raised to 3 (errors hidden:
real failures still reach Python as exceptions and are reported by the command); elsewhere
it is 2 (warnings hidden), the level every command used before. A level the user set wins.
"""
from __future__ import annotations

import os
import sys
import tempfile

_DRIVER_FILES = ("/dev/nvidiactl", "/proc/driver/nvidia/version")


def nvidia_driver_present() -> bool:
    return any(os.path.exists(path) for path in _DRIVER_FILES)


def quiet_tensorflow_logs() -> str:
    """Set TF_CPP_MIN_LOG_LEVEL unless set already; returns the level in force."""
    return os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if nvidia_driver_present() else "3")


# What TensorFlow's C++ side prints on import before its log level applies: notices, not errors.
_IMPORT_NOTICES = ("All log messages before absl::InitializeLog() is called",
                   "oneDNN custom operations are on",
                   "Could not find cuda drivers on your machine",
                   "This TensorFlow binary is optimized to use available CPU instructions",
                   "To enable the following instructions:")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its start-up notices (the three above) held back; anything else
    it prints on import is passed on. File descriptor 2 is redirected to a temporary file
    meanwhile, because those lines come from C++ before Python's logging exists."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                # a line cut short (the capture could not grow: a full disk) is dropped, not passed on
                if line.endswith("\n") and not any(notice in line for notice in _IMPORT_NOTICES):
                    sys.stderr.write(line)
            sys.stderr.flush()
