"""Run as a script: one training step at global batch 8 on 2 logical CPU devices and on one,
from the same weights, in one API (argv[1]: graph | keras); prints the largest difference of
any updated variable as JSON. A process of its own: logical devices must be configured before
TensorFlow's runtime starts."""
from __future__ import annotations

import json
import sys

import numpy as np
import tensorflow as tf

from api_runs.devices import local_devices

DEVICES = tuple(local_devices(2))
RNG = np.random.default_rng(0)
IMAGES = RNG.normal(size=(8, 28, 28, 1)).astype(np.float32)
LABELS = RNG.integers(0, 10, 8).astype(np.int32)
SHAPES = {"dense/kernel": (784, 128), "dense/bias": (128,), "prediction/kernel": (128, 10), "prediction/bias": (10,)}
START = {name: RNG.normal(size=shape).astype(np.float32) * 0.05 for name, shape in SHAPES.items()}


def graph_step(devices: tuple, variable_update: str, optimizer: str) -> dict:
    from graph_api.graph import GraphConfig, build_train_graph
    v1 = tf.compat.v1
    config = GraphConfig(model="mlp", image_shape=(28, 28, 1), num_classes=10, feed="feed_dict",
                         optimizer=optimizer, learning_rate=0.05, devices=devices, variable_update=variable_update)
    g = build_train_graph(config, None, 8)
    with g.graph.as_default(), v1.Session(graph=g.graph) as session:
        session.run(v1.global_variables_initializer())
        for var in g.model_variables:
            var.load(START[var.op.name], session)
        if g.sync_op is not None:
            session.run(g.sync_op)
        for _ in range(2):
            session.run(g.train_op, {g.images: IMAGES, g.labels: LABELS})
        values = {v.op.name: session.run(v) for v in v1.global_variables() if v.op.name.split("/")[-1] in
                  ("kernel", "bias")}
    return values


def keras_step(devices: tuple, optimizer: str) -> dict:
    import keras

    from keras_api.distribute import build_before_fit, make_strategy, scope
    from keras_api.model import build_model
    from keras_api.optimizers import make_optimizer
    strategy = make_strategy(devices, None)
    with scope(strategy):
        model = build_model("mlp", (28, 28, 1), 10)
        model.compile(optimizer=make_optimizer(optimizer, 0.05),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        for layer in ("dense", "prediction"):
            model.get_layer(layer).set_weights([START[f"{layer}/kernel"], START[f"{layer}/bias"]])
    dataset = tf.data.Dataset.from_tensors((IMAGES, LABELS)).repeat(2)
    build_before_fit(model, strategy, dataset)
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    return {f"{layer}/{w}": v for layer in ("dense", "prediction")
            for w, v in zip(("kernel", "bias"), model.get_layer(layer).get_weights())}


def largest_gap(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in b)


if __name__ == "__main__":
    report = {}
    if sys.argv[1] == "graph":
        from graph_api.graph import use_tf1_runtime
        use_tf1_runtime()
        for optimizer in ("sgd", "rmsprop"):
            one = graph_step((), "parameter_server", optimizer)
            for update in ("parameter_server", "replicated"):
                towers = graph_step(DEVICES, update, optimizer)
                report[f"{update}/{optimizer}"] = largest_gap(one, {k: towers[k] for k in SHAPES})
                report[f"{update}/{optimizer}/moved"] = largest_gap(START, {k: towers[k] for k in SHAPES})
                if update == "replicated":
                    report[f"copies/{optimizer}"] = largest_gap(
                        {k: towers[k] for k in SHAPES}, {k: towers[f"replica_1/{k}"] for k in SHAPES})
    else:
        for optimizer in ("sgd", "rmsprop"):
            one = keras_step((), optimizer)
            mirrored = keras_step(DEVICES, optimizer)
            report[f"mirrored/{optimizer}"] = largest_gap(one, mirrored)
            report[f"mirrored/{optimizer}/moved"] = largest_gap(START, mirrored)
    print("RESULT " + json.dumps(report))
