"""The weights bridge between the two APIs, by the naming contract `<layer>/<weight>`, and
the checks of Keras's own weight files (`.keras`, `.weights.h5`, BackupAndRestore backups).

Keras model -> graph variables (in a TF1 Session) and back, and a graph run's checkpoint ->
a Keras ``.keras`` / ``.weights.h5`` (`export_graph_run`, ``python -m keras_api from-graph``).
Works on names alone, so it needs nothing from `graph_api`.
Mismatched names or shapes are refused with a message naming them. Call these outside a
``with graph.as_default()`` block: Keras variables are eager and cannot be read inside one.
"""
from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from api_runs.run_files import load_run_config
from keras_api.model import build_model  # registers CaffePreprocessing, which a saved model may hold
from plumbing.atomic import atomic_path
from plumbing.errors import UserError

v1 = tf.compat.v1
# Graph-only state that has no Keras counterpart.
GRAPH_ONLY = ("optimizer/", "global_step", "/biased", "/local_step", "epochs_done")


def leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer with no sub-layers, nested models flattened (VGG16's base inside the Sequential)."""
    leaves = []
    for layer in model.layers:
        leaves.extend(leaf_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return leaves


def keras_variables(model: keras.Model) -> dict[str, keras.Variable]:
    """'<layer>/<weight>' -> Keras variable, for every weight of the model."""
    found = {}
    for layer in leaf_layers(model):
        for var in layer.weights:
            found[f"{layer.name}/{var.name}"] = var
    return found


def _contract_name(graph_name: str) -> str:
    return "/".join(graph_name.split("/")[-2:])


def _match(keras_vars: dict, graph_names: dict[str, list], what: str) -> None:
    missing = sorted(set(graph_names) - set(keras_vars))
    extra = sorted(set(keras_vars) - set(graph_names))
    if missing or extra:
        raise UserError(f"{what}: names differ: only in the graph {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                        f"only in Keras {extra[:3]}{'...' if len(extra) > 3 else ''}")
    for name, shape in graph_names.items():
        if list(keras_vars[name].shape) != list(shape):
            raise UserError(f"{what}: {name} has shape {tuple(keras_vars[name].shape)} in Keras, "
                            f"{tuple(shape)} in the graph")


def graph_model_variables(variables: list[tf.Variable]) -> dict[str, tf.Variable]:
    return {_contract_name(v.op.name): v for v in variables if not any(p in v.op.name for p in GRAPH_ONLY)}


def keras_to_graph(model: keras.Model, session: v1.Session, variables: list[tf.Variable]) -> int:
    """Load the Keras model's weights into the graph's variables; returns how many."""
    graph_vars = graph_model_variables(variables)
    keras_vars = keras_variables(model)
    _match(keras_vars, {n: v.shape.as_list() for n, v in graph_vars.items()}, "Keras model -> graph")
    # Feeding each initializer its value adds no ops to the graph (what Variable.load did).
    feed = {var.initializer.inputs[1]: np.asarray(keras_vars[name].numpy(), np.float32)
            for name, var in graph_vars.items()}
    session.run([var.initializer for var in graph_vars.values()], feed)
    return len(graph_vars)


def graph_to_keras(session: v1.Session, variables: list[tf.Variable], model: keras.Model) -> int:
    """Copy the graph's variable values into the Keras model; returns how many."""
    graph_vars = graph_model_variables(variables)
    keras_vars = keras_variables(model)
    _match(keras_vars, {n: v.shape.as_list() for n, v in graph_vars.items()}, "graph -> Keras model")
    values = session.run(graph_vars)
    for name, value in values.items():
        keras_vars[name].assign(value)
    return len(values)


def load_graph_checkpoint(checkpoint: str, model: keras.Model) -> int:
    """A graph checkpoint's model variables -> `model`'s weights, by the naming contract;
    returns how many tensors were copied. Names or shapes that differ are refused."""
    try:
        reader = tf.train.load_checkpoint(checkpoint)
        shapes = dict(tf.train.list_variables(checkpoint))
    except (tf.errors.OpError, ValueError) as err:
        raise UserError(f"{checkpoint}: unreadable checkpoint ({str(err).splitlines()[0]})") from None
    names = {_contract_name(n): n for n in shapes if not any(p in n for p in GRAPH_ONLY)}
    keras_vars = keras_variables(model)
    _match(keras_vars, {short: shapes[full] for short, full in names.items()}, f"{checkpoint} -> Keras")
    for short, full in names.items():
        keras_vars[short].assign(reader.get_tensor(full))
    return len(names)


MODEL_FILE_SUFFIXES = (".keras", ".weights.h5")


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> Path:
    """`model.save` (.keras) or `save_weights` (.weights.h5) to a temporary name, then rename:
    a crash mid-write leaves the previous file intact (Keras's own save writes in place)."""
    path = Path(path)
    with atomic_path(path, keep_suffix=True) as tmp:
        (model.save_weights if path.name.endswith(".weights.h5") else model.save)(tmp)
    return path


def export_graph_run(run_dir: str | os.PathLike, out_path: str | os.PathLike, checkpoint: str = "final") -> Path:
    """A graph_api run -> a Keras model file: `.keras` (architecture and weights, loads with
    `keras.models.load_model`) or `.weights.h5` (weights of `keras_api.build_model` with the
    run's model, input shape, classes, precision and preprocessing). ``checkpoint``: the run's
    ``final`` (best epoch restored when early stopping was on) or ``best`` checkpoint."""
    out_path = Path(out_path)
    if not out_path.name.endswith(MODEL_FILE_SUFFIXES):
        raise UserError(f"{out_path}: expected a name ending in .keras or .weights.h5")
    run = load_run_config(run_dir)
    if run.get("api") != "graph":
        raise UserError(f"{run_dir}: trained with {run.get('api')}_api, not graph_api; its final.keras "
                        "already is a Keras model")
    found = tf.train.latest_checkpoint(str(Path(run_dir) / checkpoint))
    if found is None:
        raise UserError(f"{Path(run_dir) / checkpoint}: no checkpoint (did training finish?)")
    config = run["graph_config"]
    model = build_model(run["model"], tuple(run["image_shape"]), len(run["class_names"]),
                        precision=config["precision"], weights="none", preprocessing=config["preprocessing"],
                        **({"dropout": config["dropout"]} if "dropout" in config else {}))
    load_graph_checkpoint(found, model)
    return save_model_atomic(model, out_path)


def load_model_file(path: str | os.PathLike) -> keras.Model:
    """A `.keras` file -> model for inference: its layers and weights, with Keras's safe mode
    on (Lambda layers are refused), not compiled (a training's optimizer state is not loaded:
    a mixed-precision run's loss-scale optimizer comes back as its inner one, and Keras would
    warn that the saved optimizer's variables do not fit it)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except ValueError as err:
        text = str(err)
        if "safe_mode" in text or "Lambda" in text:
            raise UserError(f"{path}: contains a Lambda layer (arbitrary code); refused in safe mode") from None
        raise UserError(f"{path}: not a loadable .keras model ({text.splitlines()[0][:200]})") from None
    except (OSError, KeyError, TypeError, zipfile.BadZipFile) as err:  # a .keras file is a zip archive
        raise UserError(f"{path}: not a loadable .keras model ({str(err).splitlines()[0][:200]})") from None


def load_layer_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """The weights of `model`'s layers from a `.weights.h5` or `.keras` file; the optimizer's
    state stays the model's own. Keras's `load_weights` also loads the file's optimizer state
    when the variable counts match (a resumed run would continue from an older epoch's Adam
    moments and step count) and warns that it skipped it when they do not (an optimizer not yet
    built): neither is wanted where only the layers' weights are."""
    optimizer = getattr(model, "optimizer", None)
    kept = [(v, v.numpy()) for v in optimizer.variables] if optimizer is not None else []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)
    for variable, value in kept:
        variable.assign(value)


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Load the layers' weights of a `.weights.h5` (or `.keras`) file into `model` (its
    optimizer's state is left as it is); a file of another model is refused by name."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: weights file not found")
    try:
        load_layer_weights(model, path)
    except (ValueError, OSError, KeyError) as err:
        first = str(err).splitlines()[0][:240]
        raise UserError(f"{path}: weights do not fit model {model.name!r} ({first})") from None
    return model


def backup_problem(weights: Path, metadata: Path) -> str | None:
    """Why a BackupAndRestore backup (weights + metadata) cannot be resumed from, or None."""
    try:
        backup_epoch(metadata)
        with h5py.File(weights, "r") as handle:  # read every array: a truncated file fails here
            handle.visititems(lambda _name, node: node[()] if isinstance(node, h5py.Dataset) else None)
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{weights}: unreadable backup ({str(err).splitlines()[0][:160]})"
    return None


def backup_epoch(metadata: Path) -> int:
    """Epochs done per BackupAndRestore's training_metadata.json."""
    return int(json.loads(metadata.read_text())["epoch"])
