"""The named parts a step's wall time is accounted in (`benchmarks.measure.accounting` measures
them, `benchmarks.analyse.gap` compares them): time inside ops, the runtime with no op running,
host time outside ops by where it is spent, and the residual no profiler saw."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostPart:
    """A named part of the host time: the Python source files whose own time belongs to it."""
    name: str
    label: str
    paths: tuple[str, ...]


# The first part whose path a function's file contains takes its own time; a function in no
# part's files (numpy, builtins, a user's callback) takes its callers' part.
HOST_PARTS = (
    HostPart("callbacks", "callbacks and progress", ("keras/src/callbacks/", "keras/src/utils/progbar",
                                                     "tf_keras/src/callbacks", "tf_keras/src/utils/generic_utils")),
    HostPart("data", "data adapter and iterator", ("keras/src/trainers/data_adapters/", "keras/src/trainers/epoch_",
                                                   "tf_keras/src/engine/data_adapter", "tensorflow/python/data/")),
    HostPart("dispatch", "tf.function dispatch and tracing", ("tensorflow/python/eager/polymorphic_function/",
                                                              "tensorflow/core/function/", "func_graph.py")),
    HostPart("session", "Session.run feed and fetch handling", ("tensorflow/python/client/",)),
    HostPart("optimizer", "optimizer update in Python", ("keras/src/optimizers/", "tf_keras/src/optimizers/")),
    HostPart("keras", "Keras's per-call set-up and loop", ("keras/src/", "tf_keras/src/")),
    HostPart("tf_python", "TensorFlow's Python (op wrappers, eager dispatch)", ("tensorflow/python/",)),
    HostPart("harness", "the harness's loop (timer, next batch)", ("benchmarks/",)),
)
OTHER = HostPart("other", "other Python", ())
PROFILER = "profiler"  # cProfile's own time inside the functions it times (calibrated per call)
# The parts of every accounting, in the order the report stacks them.
PART_LABELS = {"ops": "inside ops (busy)", "waiting": "runtime, no op running",
               **{p.name: p.label for p in HOST_PARTS}, OTHER.name: OTHER.label,
               PROFILER: "the profiler's own time", "residual": "residual (not seen)"}
