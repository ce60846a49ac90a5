"""Weights I/O for the graph: Keras weight files by layer name, checkpoint compatibility.

Keras files come in two layouts. Legacy HDF5 (`keras.applications` downloads such as
``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, ``model.save("x.h5")``) lists
`layer_names` and, per layer, its weights in order. Keras 3 ``.weights.h5`` names layers
by class and position (``layers/conv2d_3/vars/0``); those map onto the graph's layers of
the same kind in construction order, which is Keras's order by construction of both models.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

from data_pipeline.shards import open_h5
from plumbing.errors import UserError

v1 = tf.compat.v1
WEIGHT_ORDER = {"conv2d": ("kernel", "bias"), "dense": ("kernel", "bias"),
                "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance")}


def graph_layers(variables: list[tf.Variable]) -> OrderedDict[str, dict[str, tf.Variable]]:
    """Layer name -> {weight name: variable}, in construction order (outer scopes stripped)."""
    layers: OrderedDict[str, dict[str, tf.Variable]] = OrderedDict()
    for var in variables:
        parts = var.op.name.split("/")
        layers.setdefault(parts[-2], {})[parts[-1]] = var
    return layers


def layer_kind(weights: dict) -> str:
    if "gamma" in weights:
        return "batch_normalization"
    return "conv2d" if weights["kernel"].shape.rank == 4 else "dense"


def read_keras_weights(path: str | os.PathLike) -> OrderedDict[str, list[np.ndarray]]:
    """Layer name (legacy) or Keras 3 auto name -> its weight arrays in Keras order."""
    path = Path(path)
    with open_h5(path, "weights file") as handle:
        if "layers" in handle and "layer_names" not in handle.attrs:
            return _read_keras3(handle["layers"])
        root = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in root.attrs:
            raise UserError(f"{path}: not a Keras weights file (no layer_names, no layers/ group)")
        layers = OrderedDict()
        for name in root.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else str(name)
            group = root[name]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
            if names:
                layers[name] = [np.asarray(group[n]) for n in names]
        return layers


def _read_keras3(group: h5py.Group) -> OrderedDict[str, list[np.ndarray]]:
    layers = OrderedDict()
    for name in group:
        if "vars" in group[name] and len(group[name]["vars"]):
            vars_ = group[name]["vars"]
            layers[name] = [np.asarray(vars_[str(i)]) for i in range(len(vars_))]
    return layers


def keras3_names(layers: OrderedDict[str, dict]) -> dict[str, str]:
    """Graph layer name -> the auto name Keras 3 gives it in a .weights.h5 (conv2d, conv2d_1, ...)."""
    counts: dict[str, int] = {}
    names = {}
    for layer, weights in layers.items():
        kind = layer_kind(weights)
        i = counts.get(kind, 0)
        names[layer] = kind if i == 0 else f"{kind}_{i}"
        counts[kind] = i + 1
    return names


def load_keras_weights(session: v1.Session, variables: list[tf.Variable], path: str | os.PathLike,
                       layers_required: list[str] | None = None) -> list[str]:
    """Assign a Keras weights file to the graph variables by layer name; returns the layers loaded.

    `layers_required` (default: every graph layer) must all be present in the file; a
    shape mismatch names the layer and both shapes.
    """
    stored = read_keras_weights(path)
    layers = graph_layers(variables)
    if not any(name in stored for name in layers):  # a Keras 3 file: names by kind and position
        auto = keras3_names(layers)
        stored = OrderedDict((layer, stored[auto[layer]]) for layer in layers if auto[layer] in stored)
    required = layers_required if layers_required is not None else list(layers)
    missing = [name for name in required if name not in stored]
    if missing:
        raise UserError(f"{path}: no weights for layer(s) {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''} (is it a file of this model?)")
    loaded = []
    for name, weights in layers.items():
        if name not in stored:
            continue
        order = WEIGHT_ORDER[layer_kind(weights)]
        arrays = stored[name]
        if len(arrays) != len(order):
            raise UserError(f"{path}: layer {name} has {len(arrays)} weights, the graph expects {len(order)}")
        for weight, array in zip(order, arrays):
            var = weights[weight]
            if tuple(array.shape) != tuple(var.shape.as_list()):
                raise UserError(f"{path}: layer {name} {weight} has shape {tuple(array.shape)}, "
                                f"the graph expects {tuple(var.shape.as_list())}")
            # Feeding the initializer its value adds no ops to the graph (what Variable.load did).
            session.run(var.initializer, {var.initializer.inputs[1]: array.astype(np.float32)})
        loaded.append(name)
    return loaded


def check_checkpoint(checkpoint: str, variables: list[tf.Variable]) -> None:
    """UserError naming missing/extra variables or shape mismatches before a restore."""
    try:
        stored = dict(tf.train.list_variables(checkpoint))
    except (tf.errors.OpError, ValueError) as err:
        raise UserError(f"{checkpoint}: unreadable checkpoint ({str(err).splitlines()[0]})") from None
    wanted = {v.op.name: v.shape.as_list() for v in variables}
    missing = sorted(set(wanted) - set(stored))
    slots = r"(optimizer|global_step|_power|RMSProp|Momentum|Adam)"
    extra = sorted(n for n in set(stored) - set(wanted) if not re.search(slots, n))
    if missing or extra:
        raise UserError(f"{checkpoint}: checkpoint of another model: missing {missing[:3]}"
                        f"{'...' if len(missing) > 3 else ''}, extra {extra[:3]}{'...' if len(extra) > 3 else ''}")
    for name, shape in wanted.items():
        if list(stored[name]) != shape:
            raise UserError(f"{checkpoint}: variable {name} has shape {stored[name]}, the graph expects {shape}")


def saved_checkpoints(directory: str | os.PathLike) -> list[str]:
    """Checkpoint prefixes in `directory`, newest (highest step) first, found from their
    ``.index`` files rather than the ``checkpoint`` state file, so a run directory that
    was moved or copied (or whose state file is lost) still finds them."""
    def step(index: Path) -> int:
        tail = index.name[:-len(".index")].rsplit("-", 1)
        return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else 0
    indexes = sorted(Path(directory).glob("*.index"), key=step, reverse=True)
    return [str(index)[:-len(".index")] for index in indexes]


def verify_checkpoint(checkpoint: str, variables: list[tf.Variable]) -> None:
    """`check_checkpoint`, then read every tensor (each carries a CRC32C), so a truncated or
    corrupt checkpoint is named before a restore half-loads it."""
    check_checkpoint(checkpoint, variables)
    try:
        reader = tf.train.load_checkpoint(checkpoint)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError) as err:  # IndexError: a truncated data file
        raise UserError(f"{checkpoint}: unreadable checkpoint ({str(err).splitlines()[0][:200]})") from None
