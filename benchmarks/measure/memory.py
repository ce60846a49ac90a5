"""Peak resident memory of one configuration in a worker that runs several one after another.

`getrusage`'s ``ru_maxrss`` is the process's high-water mark since it started, so a later
configuration would inherit an earlier one's peak. Linux resets the mark (``VmHWM``) to the
current resident size on writing 5 to ``/proc/self/clear_refs``; the worker does so before each
configuration and reads ``VmHWM`` after it. Elsewhere the process-wide figure is all there is,
and the record says so (`scope`).
"""
from __future__ import annotations

import gc
import resource
from dataclasses import dataclass
from pathlib import Path

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class PeakMemory:
    """What a configuration's record says about memory (MiB)."""
    peak_mb: float             # the high-water mark of resident memory over `scope`
    start_mb: float | None     # resident memory when the configuration started (None: unknown)
    scope: str                 # "configuration" or "process so far"


def _status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` field in MiB (kB there), None where there is none."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def start_configuration() -> float | None:
    """Reset the resident high-water mark to the current size -> that size (MiB), or None where
    the OS cannot reset it."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return None
    return _status_mb("VmRSS")


def configuration_peak(start_mb: float | None) -> PeakMemory:
    """The peak since `start_configuration` when its reset worked (`start_mb` not None), else
    the process's."""
    peak = _status_mb("VmHWM") if start_mb is not None else None
    if peak is None:
        return PeakMemory(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, None, "process so far")
    # The mark is reset to the resident size at the reset; `start_mb`, read just after, can be a
    # page or two higher and is a size the configuration had, so the peak is at least that.
    return PeakMemory(max(peak, start_mb), start_mb, "configuration")


# TensorFlow registers the gradient of every graph-mode `tf.custom_gradient` call (graph_api's
# batch norm, Keras's loss in a traced step) process-wide under a fresh name and never removes
# it; the registered function closes over that call's tensors, so it keeps their whole graph (a
# Session's graph, a traced train step) alive after its model is gone. Left there, every
# configuration of a worker would run beside the graphs of those before it, each full collection
# of the garbage collector walking them.
CUSTOM_GRADIENT_PREFIX = "CustomGradient-"


def _gradient_registry() -> dict:
    from tensorflow.python.framework import ops  # late: the worker sets the process state first
    return ops._gradient_registry._registry


def custom_gradients() -> frozenset[str]:
    """The names of the custom gradients registered so far."""
    return frozenset(name for name in _gradient_registry() if name.startswith(CUSTOM_GRADIENT_PREFIX))


def release_graphs(before: frozenset[str]) -> int:
    """Unregister the custom gradients registered since `before` (`custom_gradients`), so that
    the graphs they held can be collected -> how many. Only for graphs that will not be
    differentiated again: a configuration's, once it is done."""
    registry = _gradient_registry()
    added = custom_gradients() - before
    for name in added:
        del registry[name]
    return len(added)


def settle() -> None:
    """Between configurations: collect what the last one left, then move everything that lives
    on (the libraries' objects, the process's own) out of the collector's walks (`gc.freeze`), so
    that the next configuration's clean-up walks only what it made, not every object of TensorFlow
    and Keras again."""
    gc.collect()
    gc.freeze()
