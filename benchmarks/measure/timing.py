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


def runtime_functions() -> frozenset[str]:
    """The names of the functions the eager runtime holds: every traced function it was handed
    (a tf.function's steps and the functions they call)."""
    from tensorflow.python.eager import context  # late: the worker set the process state first
    return frozenset(context.context().list_function_names())


def xla_compiled_since(before: frozenset[str]) -> bool:
    """Whether a function the runtime was handed after `before` is one XLA must compile
    (`jit_compile`): read from the functions that ran, not from a setting."""
    from tensorflow.python.eager import context  # late: the worker set the process state first
    ctx = context.context()
    return any(ctx.get_function_def(name).attr["_XlaMustCompile"].b for name in runtime_functions() - before)


def graph_op_types(graph) -> set[str]:
    """The op types of a graph (a Session's or a traced function's) and of the functions it calls."""
    types = {op.type for op in graph.get_operations()}
    for function in graph._functions.values():  # nested bodies (e.g. the optimizer's)
        types |= {node.op for node in function.definition.node_def}
    return types


def runtime_op_types(before: frozenset[str]) -> set[str]:
    """The op types of the functions the eager runtime was handed after `before` (nested ones
    are handed to it as functions of their own)."""
    from tensorflow.python.eager import context  # late: the worker set the process state first
    ctx = context.context()
    return {node.op for name in runtime_functions() - before for node in ctx.get_function_def(name).node_def}


def kernel_facts(types: set[str]) -> dict[str, list[str]]:
    """What a step's op types say about two kernels a comparison turns on: how sparse
    (IndexedSlices) gradients are applied, if they are, and whether batch norm is one fused kernel."""
    return {"sparse_update_ops": sorted(t for t in types if "Scatter" in t),
            "fused_batch_norm_ops": sorted(t for t in types if t.startswith("FusedBatchNorm"))}


def timed_steps(step: Callable[[], object], total: int) -> list[float]:
    """Wall time (s) of each of `total` calls of `step`."""
    times = []
    for _ in range(total):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times
