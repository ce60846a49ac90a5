"""Why graph_api and Keras part after a few ResNet50 training steps (docs/equivalence.md).

    PYTHONPATH=.:tests python docs/probes/resnet_three_steps.py

Three SGD steps (lr 1e-3, 64 px, batch 8) from the same weights, run five ways; every run is
compared with eager Keras after each step: max |difference| / max |update| per tensor.
"""
import keras
import numpy as np
import tensorflow as tf

from graph_api.graph import GraphConfig, build_train_graph
from keras_api.weights import graph_to_keras, keras_to_graph, keras_variables

from equivalence_helpers import CLASSES
from equivalence_helpers import batch as _batch
from equivalence_helpers import keras_model as _keras_model

v1 = tf.compat.v1
SIZE, STEPS, BATCH, LR = 64, 3, 8, 1e-3
KEYS = ("conv1_conv/kernel", "conv3_block1_1_conv/kernel", "conv5_block3_3_conv/kernel", "predictions/kernel",
        "conv1_bn/moving_mean", "conv5_block3_3_bn/moving_variance")
BATCHES = [_batch(SIZE, n=BATCH, seed=s) for s in range(STEPS)]


def _snapshot(model) -> dict:
    return {k: np.array(v.numpy()) for k, v in keras_variables(model).items()}


def keras_steps(eager: bool = True, input_offset: float = 0.0) -> tuple[list, list]:
    model = _keras_model("resnet50", SIZE)
    model.compile(optimizer=keras.optimizers.SGD(LR), run_eagerly=eager,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    states, losses = [], []
    for x, y in BATCHES:
        losses.append(float(model.train_on_batch(x + input_offset, y)))
        states.append(_snapshot(model))
    return states, losses


def graph_steps() -> tuple[list, list]:
    model = _keras_model("resnet50", SIZE)
    g = build_train_graph(GraphConfig(model="resnet50", image_shape=(SIZE, SIZE, 3), num_classes=CLASSES,
                                      feed="feed_dict", optimizer="sgd", learning_rate=LR))
    with g.graph.as_default():
        init = v1.global_variables_initializer()
    mirror = keras.models.clone_model(model)
    session = v1.Session(graph=g.graph)
    session.run(init)
    keras_to_graph(model, session, g.model_variables)
    states, losses = [], []
    for x, y in BATCHES:
        losses.append(float(session.run([g.train_op, g.loss], {g.images: x, g.labels: y})[1]))
        graph_to_keras(session, g.model_variables, mirror)
        states.append(_snapshot(mirror))
    return states, losses


def main() -> None:
    initial = _snapshot(_keras_model("resnet50", SIZE))
    reference, reference_losses = keras_steps()
    print("eager Keras losses", " ".join(f"{v:.7f}" for v in reference_losses))
    runs = {"eager Keras again": keras_steps(), "Keras under tf.function": keras_steps(eager=False),
            "eager Keras, inputs + 1e-6": keras_steps(input_offset=1e-6), "TF1 Session (graph_api)": graph_steps()}
    for name, (states, losses) in runs.items():
        print(f"\n{name}: losses", " ".join(f"{v:.7f}" for v in losses))
        for step in range(STEPS):
            cells = []
            for key in KEYS:
                update = np.abs(reference[step][key] - initial[key]).max()
                diff = np.abs(states[step][key] - reference[step][key]).max()
                cells.append(f"{key.split('/')[0]} {diff:.1e}/{update:.1e}")
            print(f"  step {step + 1}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
