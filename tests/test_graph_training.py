import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from shard_helpers import feature_shards

from data_pipeline.shards import load_manifest
from graph_api.graph import FEEDS, GraphConfig, build_train_graph
from graph_api.inference import Predictor
from graph_api.trainer import TrainOptions, train
from graph_api.vgg16_transfer import vgg16_base
from graph_api.weights import check_checkpoint, load_keras_weights
from plumbing.errors import UserError

from conftest import assert_user_error, call_cli, checkpoint_tensors

v1 = tf.compat.v1


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return feature_shards(tmp_path_factory.mktemp("features"))


def _head(seed=0, **kw):
    return GraphConfig(model="vgg16_head", seed=seed, **kw)


def _final_weights(run_dir):
    return checkpoint_tensors(run_dir / "final")


@pytest.mark.slow
def test_training_lowers_loss_and_beats_chance(features, tmp_path):
    history = train(_head(learning_rate=1e-4), str(features), tmp_path / "run",
                    TrainOptions(epochs=3, batch_size=16, tensorboard=False))
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.5  # 4 classes: chance is 0.25
    for name in ("history.csv", "history.json", "history.png", "run_config.json"):
        assert (tmp_path / "run" / name).exists()


@pytest.mark.slow
def test_resume_after_interruption_matches_uninterrupted_run(features, tmp_path):
    options = dict(batch_size=16, steps_per_epoch=3, tensorboard=False)
    train(_head(seed=4), str(features), tmp_path / "full", TrainOptions(epochs=3, **options))
    train(_head(seed=4), str(features), tmp_path / "cut", TrainOptions(epochs=1, **options))  # "killed" after 1
    history = train(_head(seed=4), str(features), tmp_path / "cut", TrainOptions(epochs=3, **options))
    full, resumed = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "cut")
    assert full.keys() == resumed.keys() and "fc1/kernel" in full
    for name in full:
        np.testing.assert_array_equal(full[name], resumed[name], err_msg=name)
    assert len(history["loss"]) == 3


@pytest.mark.parametrize("feed", list(FEEDS))
def test_a_feed_builds_the_input_its_record_says(feed, features):
    """Placeholders fed by the loop, or an iterator inside the graph reading the shards."""
    shape = tuple(load_manifest(str(features))["image_shape"])
    g = build_train_graph(_head(feed=feed, image_shape=shape), str(features), batch_size=8)
    ops = {op.type for op in g.graph.get_operations()}
    placeholders = {"dataset": False, "feed_dict": True}[feed]
    assert FEEDS[feed].placeholders == placeholders
    assert ("IteratorGetNext" in ops) != placeholders and (g.train_init is None) == placeholders
    assert g.images.op.type == ("Placeholder" if placeholders else "IteratorGetNext")


def test_an_unknown_feed_or_variable_update_is_one_error_naming_the_choices(features):
    for changes, message in (({"feed": "queue"}, "unknown feed 'queue': expected one of dataset, feed_dict"),
                             ({"variable_update": "mirrored"},
                              "unknown variable update 'mirrored': expected one of parameter_server, replicated")):
        with pytest.raises(UserError) as err:
            build_train_graph(_head(**changes), str(features), batch_size=8)
        assert err.value.message == message


def test_nchw_where_nothing_pools_it_is_refused_before_a_file_is_read_or_written(features, tmp_path, monkeypatch):
    """A machine whose kernels pool channels-last data only (Eigen's CPU kernels) refuses
    NCHW by its flag for training and by the run's file for inference, before either starts."""
    import graph_api.model
    train(_head(), str(features), tmp_path / "run", TrainOptions(epochs=1, batch_size=16, steps_per_epoch=1,
                                                                 tensorboard=False))
    (tmp_path / "run" / "run_config.json").write_text(
        (tmp_path / "run" / "run_config.json").read_text().replace('"NHWC"', '"NCHW"'))
    monkeypatch.setattr(graph_api.model, "pools_channels_first", lambda: False)
    with pytest.raises(UserError, match="^--data-format: NCHW runs on a GPU or on oneDNN's CPU kernels"):
        train(_head(data_format="NCHW"), str(tmp_path / "no-manifest.json"), tmp_path / "nchw",
              TrainOptions(epochs=1, tensorboard=False))
    assert not (tmp_path / "nchw").exists()
    with pytest.raises(UserError, match="run_config.json: NCHW runs on a GPU"):
        Predictor(tmp_path / "run")


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(features, tmp_path):
    options = dict(batch_size=16, steps_per_epoch=2, tensorboard=False)
    train(_head(optimizer="sgd"), str(features), tmp_path / "run", TrainOptions(epochs=1, **options))
    before = _final_weights(tmp_path / "run")
    with pytest.raises(UserError, match="loss became (nan|inf).*last good checkpoint"):
        train(_head(learning_rate=float("inf"), optimizer="sgd"), str(features), tmp_path / "run",
              TrainOptions(epochs=3, **options))
    ckpt = v1.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert ckpt.endswith("ckpt-1")
    assert np.array_equal(tf.train.load_checkpoint(ckpt).get_tensor("fc1/kernel"), before["fc1/kernel"])


def test_early_stopping_restores_best_epoch(features, tmp_path):
    history = train(_head(learning_rate=3e-3), str(features), tmp_path / "run",
                    TrainOptions(epochs=6, batch_size=16, patience=1, min_delta=10.0, tensorboard=False))
    state = history["early_stopping"]
    assert state["best_epoch"] == 0 and state["stopped_epoch"] == 1 and len(history["loss"]) == 2
    best = tf.train.load_checkpoint(v1.train.latest_checkpoint(str(tmp_path / "run" / "best")))
    final = _final_weights(tmp_path / "run")
    np.testing.assert_array_equal(best.get_tensor("fc2/kernel"), final["fc2/kernel"])


def test_keras_weight_files_load_by_name(tmp_path):
    """A Keras VGG16 base saved in both Keras formats loads into the graph and gives Keras's features."""
    keras.utils.set_random_seed(1)
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    model.save(tmp_path / "legacy.h5")
    model.save_weights(tmp_path / "k3.weights.h5")
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    expected = model.predict(x, verbose=0)
    for path in (tmp_path / "legacy.h5", tmp_path / "k3.weights.h5"):
        with tf.Graph().as_default(), v1.Session() as session:
            images = v1.placeholder(tf.float32, (None, 32, 32, 3))
            feats = vgg16_base(images)
            session.run(v1.global_variables_initializer())
            assert len(load_keras_weights(session, v1.global_variables(), path)) == 13
            np.testing.assert_allclose(session.run(feats, {images: x}), expected, atol=1e-4)


def test_mismatched_weights_file_names_layer_and_shapes(tmp_path):
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, name="block1_conv1")])
    model.save(tmp_path / "wrong.h5")
    with tf.Graph().as_default(), v1.Session() as session:
        vgg16_base(v1.placeholder(tf.float32, (None, 32, 32, 3)))
        session.run(v1.global_variables_initializer())
        with pytest.raises(UserError, match=r"block1_conv1 kernel has shape \(3, 3, 3, 8\), the graph expects "
                                            r"\(3, 3, 3, 64\)"):
            load_keras_weights(session, v1.global_variables(), tmp_path / "wrong.h5", ["block1_conv1"])
        with pytest.raises(UserError, match="no weights for layer.*block1_conv2"):
            load_keras_weights(session, v1.global_variables(), tmp_path / "wrong.h5")
        with pytest.raises(UserError, match="weights file not found"):
            load_keras_weights(session, v1.global_variables(), tmp_path / "missing.h5")


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(features, tmp_path):
    train(_head(), str(features), tmp_path / "head", TrainOptions(epochs=1, batch_size=16, steps_per_epoch=1,
                                                                 tensorboard=False))
    g = build_train_graph(GraphConfig(model="resnet50", image_shape=(32, 32, 3), num_classes=4, feed="feed_dict"))
    with g.graph.as_default():
        with pytest.raises(UserError, match="checkpoint of another model: missing .*conv1"):
            check_checkpoint(v1.train.latest_checkpoint(str(tmp_path / "head" / "checkpoints")),
                             v1.global_variables())


def _one_step_run_and_relabelled_manifest(features, run_dir, class_names, name):
    """A one-step training run on `features`, and a copy of its manifest with other classes."""
    train(_head(), str(features), run_dir, TrainOptions(epochs=1, batch_size=16, steps_per_epoch=1,
                                                        tensorboard=False))
    other = json.loads(features.read_text())
    other["class_names"] = class_names
    (features.parent / name).write_text(json.dumps(other))
    return features.parent / name


@pytest.mark.slow
def test_predict_and_evaluate_refuse_a_manifest_with_other_classes(features, tmp_path):
    other = _one_step_run_and_relabelled_manifest(features, tmp_path / "run",
                                                  ["sirna_9", "sirna_8", "sirna_7", "sirna_6"], "other.json")
    result = call_cli("graph_api", "evaluate", "--run", str(tmp_path / "run"), "--manifest",
                     str(other), "--split", "val")
    assert "classes differ" in assert_user_error(result, "class 0 is sirna_9 here, sirna_0 in the model")
    predictor = Predictor(tmp_path / "run")
    probabilities = predictor.probabilities_of(np.zeros((3, 2, 2, 512), np.float32))
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
    with pytest.raises(UserError, match="the model takes"):
        predictor.probabilities_of(np.zeros((1, 7, 7, 512), np.float32))
    predictor.close()


def test_same_run_dir_with_other_classes_is_refused(features, tmp_path):
    other = _one_step_run_and_relabelled_manifest(features, tmp_path / "run", ["a", "b", "c", "d"], "other2.json")
    with pytest.raises(UserError, match="different class_names"):
        train(_head(), str(other), tmp_path / "run", TrainOptions(epochs=1))


def _tf1_rule(name: str, steps: int, lr: float = 0.1) -> list[float]:
    """w after each step on loss w^2 (gradient 2w) from w = 1, by the rules TF1's optimizers
    document: momentum 0.9; RMSProp (decay 0.9, mean square starting at 1, epsilon 1e-10);
    Adam (beta1 0.9, beta2 0.999, epsilon 1e-8 in the epsilon-hat form)."""
    w, slot, square, out = 1.0, 0.0, 1.0 if name == "tf1_rmsprop" else 0.0, []
    for t in range(1, steps + 1):
        g = 2 * w
        if name == "tf1_momentum":
            slot = 0.9 * slot + g
            w -= lr * slot
        elif name == "tf1_rmsprop":
            square = 0.9 * square + 0.1 * g * g
            w -= lr * g / np.sqrt(square + 1e-10)
        else:
            slot, square = 0.9 * slot + 0.1 * g, 0.999 * square + 0.001 * g * g
            w -= lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * slot / (np.sqrt(square) + 1e-8)
        out.append(w)
    return out


@pytest.mark.parametrize("name", ["tf1_adam", "tf1_momentum", "tf1_rmsprop"])
def test_tf1_optimizers_follow_their_rules(name):
    from graph_api.optimizers import minimize
    graph = tf.Graph()
    with graph.as_default():
        w = tf.compat.v1.get_variable("w", (), tf.float32, initializer=tf.compat.v1.constant_initializer(1.0))
        train = minimize(w * w, [w], tf.constant(0.1), name)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            steps = [(session.run(train), float(session.run(w)))[1] for _ in range(3)]
    np.testing.assert_allclose(steps, _tf1_rule(name, 3), rtol=1e-5)
