"""VGG16-Cell-Transfer and ResNet50 as TensorFlow 1.x static graphs (`tf.compat.v1`).

What other packages call: `build_model` (a model into the default graph), the training graph
(`GraphConfig`, `build_train_graph`, `placeholders`, `loss_and_accuracy`), the runtime
(`use_tf1_runtime`, `runtime_facts`), the devices a traced step ran on (`executed_devices`) and a
cluster worker's steps (`worker_session`, `start_updates`, `wait_for_chief`, `serve_parameters`).
Each is imported on first use, so the command line starts quickly and its log level can be set
before TensorFlow loads.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "build_model": "model",
    "GraphConfig": "graph", "build_train_graph": "graph", "placeholders": "graph", "loss_and_accuracy": "graph",
    "use_tf1_runtime": "graph", "runtime_facts": "graph",
    "executed_devices": "distribute",
    "worker_session": "cluster_loop", "start_updates": "cluster_loop", "wait_for_chief": "cluster_loop",
    "serve_parameters": "cluster_loop",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
