"""The overhead study's small models compute the same thing in the TF1 graph, Keras 3 and
Keras 2 (tf-keras): the same loss from the same weights (inference tower) and the same first
update of every weight."""
import numpy as np
import pytest
import tensorflow as tf

from graph_api.graph import GraphConfig, build_train_graph
from keras_api.small_models import build_small_model
from model_contract.small_models import SMALL_MODELS

v1 = tf.compat.v1


def _data(name: str, batch: int = 6):
    spec, rng = SMALL_MODELS[name], np.random.default_rng(0)
    if spec.input_dtype == "int32":
        x = rng.integers(0, spec.vocabulary, (batch,) + spec.input_shape).astype(np.int32)
    else:
        x = rng.random((batch,) + spec.input_shape, dtype=np.float32)
    return x, rng.integers(0, spec.num_classes, (batch,) + spec.label_shape).astype(np.int32)


def _graph_step(name: str, optimizer: str, x, y):
    """(initial weights by layer/weight, loss of the inference tower, weights after one step)
    of the TF1 graph."""
    g = build_train_graph(GraphConfig(model=name, image_shape=SMALL_MODELS[name].input_shape,
                                      num_classes=SMALL_MODELS[name].num_classes, optimizer=optimizer,
                                      learning_rate=0.05 if optimizer == "sgd" else 1e-3, feed="feed_dict"))
    with g.graph.as_default(), v1.Session(graph=g.graph) as session:
        session.run(v1.global_variables_initializer())
        variables = {v.op.name: v for v in v1.trainable_variables()}
        before = session.run(variables)
        loss = session.run(g.eval_loss, {g.images: x, g.labels: y})
        session.run(g.train_op, {g.images: x, g.labels: y})
        return before, loss, session.run(variables)


def _keras_step(model, k, optimizer: str, weights: dict, x, y):
    ordered = [weights[f"{layer.name}/{w}"] for layer in model.layers
               for w in (("embeddings",) if layer.name == "embedding" else ("kernel", "bias")) if layer.weights]
    model.set_weights(ordered)
    opt = k.optimizers.SGD(0.05) if optimizer == "sgd" else k.optimizers.RMSprop(1e-3, rho=0.9, epsilon=1e-7)
    model.compile(optimizer=opt, loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = float(model.evaluate(x, y, batch_size=len(x), verbose=0))
    model.train_on_batch(x, y)
    return loss, model.get_weights(), ordered


@pytest.mark.parametrize("name, optimizer", [("mlp", "rmsprop"), ("trivial", "sgd"), ("embedding", "sgd")])
def test_graph_keras3_and_keras2_agree_on_the_loss_and_one_update(name, optimizer):
    import keras
    import tf_keras
    x, y = _data(name)
    before, graph_loss, after = _graph_step(name, optimizer, x, y)
    for k in (keras, tf_keras):
        loss, updated, start = _keras_step(build_small_model(name, keras_module=k), k, optimizer, before, x, y)
        assert loss == pytest.approx(float(graph_loss), rel=1e-5), k.__name__
        expected = [after[key] for key in before]  # the same order as `start`
        for got, want, was in zip(updated, expected, start):
            step = np.abs(want - was).max()
            assert step > 0 and np.abs(got - want).max() <= 1e-5 * step + 1e-7, (k.__name__, name)


def test_graph_applies_embedding_gradients_sparsely_under_sgd():
    """SGD writes only the looked-up rows (a scatter), as Keras 3 does; RMSprop's rule decays
    every row's velocity, so it is dense in both APIs."""
    x, y = _data("embedding")
    for optimizer, sparse in (("sgd", True), ("rmsprop", False)):
        g = build_train_graph(GraphConfig(model="embedding", image_shape=(50,), num_classes=1000,
                                          optimizer=optimizer, feed="feed_dict"))
        scatters = {op.type for op in g.graph.get_operations() if "ScatterSub" in op.type}
        assert bool(scatters) == sparse, optimizer
