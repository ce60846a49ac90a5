"""What every mode hands the worker: a synchronous step, how to close it, and the facts it
observed (updates applied, XLA compiled, thread pools), read once the timed steps are done."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Step:
    run: Callable[[], object]                          # one step; returns when its work is done
    close: Callable[[], None] = lambda: None
    facts: Callable[[], dict] = field(default=lambda: {})


COMPUTE_OPS = ("MatMul", "BatchMatMulV2", "Conv2D", "DepthwiseConv2dNative")


def graph_compute_dtypes(graph) -> list[str]:
    """The dtypes (attr `T`) the graph's matrix products and convolutions compute in: what a
    precision policy changed, read from the graph that ran."""
    return sorted({op.get_attr("T").name for op in graph.get_operations() if op.type in COMPUTE_OPS})


def model_compute_dtypes(model) -> list[str]:
    """The compute dtypes of a Keras model's layers that hold a kernel (nested models included)."""
    return sorted({layer.compute_dtype for layer in model._flatten_layers(include_self=False, recursive=True)
                   if hasattr(layer, "kernel")})


def scatter_ops(graph) -> list[str]:
    """Op types with "Scatter" in a graph (a Session's or a traced function's) and the functions
    it calls: how sparse (IndexedSlices) gradients are applied, if they are."""
    types = {op.type for op in graph.get_operations()}
    for function in graph._functions.values():  # nested bodies (e.g. the optimizer's)
        types |= {node.op for node in function.definition.node_def}
    return sorted(t for t in types if "Scatter" in t)


def timed_steps(step: Callable[[], object], total: int) -> list[float]:
    """Wall time (s) of each of `total` calls of `step`."""
    times = []
    for _ in range(total):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times
