"""keras_api trainer, callbacks, save/load, predict/evaluate and their bad-input cases."""
import json
import warnings

import keras
import numpy as np
import pytest
from shard_helpers import feature_shards

from api_runs.train_options import TrainOptions
from keras_api.inference import Predictor
from keras_api.trainer import KerasConfig, train
from keras_api.weights import load_model_file, load_weights_file, save_model_atomic
from plumbing.errors import UserError

from conftest import assert_user_error, call_cli, run_cli

pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return feature_shards(tmp_path_factory.mktemp("kfeatures"))


def _head(**kw):
    return KerasConfig(model="vgg16_head", **kw)


def _weights(path):
    model = keras.models.load_model(path)
    return {f"{layer.name}/{w.name}": np.asarray(w) for layer in model.layers for w in layer.weights}


def test_fit_lowers_loss_beats_chance_and_writes_run_files(features, tmp_path):
    history = train(_head(learning_rate=1e-4, loss="categorical"), str(features), tmp_path / "run",
                    TrainOptions(epochs=3, batch_size=16))
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.5  # 4 classes: chance is 0.25
    assert all(rate > 0 for rate in history["images_per_sec"])
    for name in ("history.csv", "history.json", "history.png", "epochs.csv", "best.keras", "final.keras",
                 "final.weights.h5", "run_config.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert any((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents*"))
    assert not list((tmp_path / "run").glob("*.tmp-*"))


def test_backup_and_restore_resumes_at_the_right_epoch(features, tmp_path):
    options = dict(batch_size=16, steps_per_epoch=3, tensorboard=False)
    train(_head(seed=4), str(features), tmp_path / "cut", TrainOptions(epochs=1, **options))  # "killed" after 1
    metadata = json.loads((tmp_path / "cut" / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 1
    history = train(_head(seed=4), str(features), tmp_path / "cut", TrainOptions(epochs=3, **options))
    assert len(history["loss"]) == 3
    rows = (tmp_path / "cut" / "epochs.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"]  # epochs 2 and 3 only were run again


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_backup(features, tmp_path):
    options = dict(batch_size=16, steps_per_epoch=2, tensorboard=False)
    train(_head(optimizer="sgd"), str(features), tmp_path / "run", TrainOptions(epochs=1, **options))
    backup = tmp_path / "run" / "backup" / "latest.weights.h5"
    before = backup.read_bytes()
    with pytest.raises(UserError, match="loss became NaN/Inf in epoch 2.*last good backup"):
        train(_head(learning_rate=float("inf"), optimizer="sgd"), str(features), tmp_path / "run",
              TrainOptions(epochs=3, **options))
    assert backup.read_bytes() == before


def test_early_stopping_restores_best_epoch(features, tmp_path):
    history = train(_head(learning_rate=3e-3), str(features), tmp_path / "run",
                    TrainOptions(epochs=6, batch_size=16, patience=1, min_delta=10.0, tensorboard=False))
    state = history["early_stopping"]
    assert state["best_epoch"] == 0 and state["stopped_epoch"] == 1 and len(history["loss"]) == 2
    best, final = _weights(tmp_path / "run" / "best.keras"), _weights(tmp_path / "run" / "final.keras")
    np.testing.assert_array_equal(best["fc2/kernel"], final["fc2/kernel"])


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    path = save_model_atomic(model, tmp_path / "m.keras")
    before = path.read_bytes()
    model.save = lambda *_: (_ for _ in ()).throw(OSError("disk full"))  # a crash mid-save
    with pytest.raises(OSError):
        save_model_atomic(model, path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_lambda_layers_are_refused_in_safe_mode(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(UserError, match="Lambda layer.*safe mode"):
        load_model_file(tmp_path / "lambda.keras")
    with pytest.raises(UserError, match="model file not found"):
        load_model_file(tmp_path / "missing.keras")


def test_layer_weights_and_an_inference_model_load_without_the_files_optimizer_state(tmp_path):
    """A mixed-precision head saved with its Adam state (moments, step count, loss scale):
    its layers' weights load into the model trained on without replacing that model's
    optimizer state, and the file loads for inference with no optimizer, silently."""
    from keras_api import build_model
    from keras_api.trainer import compile_model
    from keras_api.weights import load_layer_weights
    images, labels = np.random.default_rng(0).normal(size=(8, 2, 2, 512)).astype(np.float32), np.arange(8) % 4
    model = compile_model(build_model("vgg16_head", (2, 2, 512), 4, precision="mixed_float16"),
                          _head(optimizer="adam"))
    model.fit(images, labels, batch_size=4, verbose=0)
    save_model_atomic(model, tmp_path / "best.keras")
    best = [np.asarray(w) for w in model.weights]
    model.fit(images, labels, batch_size=4, verbose=0)
    state = [np.asarray(v) for v in model.optimizer.variables]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras's note that it skipped an optimizer's variables
        load_layer_weights(model, tmp_path / "best.keras")
        loaded = load_model_file(tmp_path / "best.keras")
    assert int(model.optimizer.iterations) == 4
    for variable, before in zip(model.optimizer.variables, state, strict=True):
        np.testing.assert_array_equal(variable, before, err_msg=variable.path)
    for weight, saved in zip(model.weights, best, strict=True):
        np.testing.assert_array_equal(weight, saved, err_msg=weight.path)
    assert getattr(loaded, "optimizer", None) is None and loaded.get_layer("fc1").compute_dtype == "float16"


def test_weights_of_another_model_and_missing_weights_are_refused(tmp_path):
    from keras_api import build_model
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc1")])
    other.save_weights(tmp_path / "other.weights.h5")
    head = build_model("vgg16_head", (2, 2, 512), 4)
    with pytest.raises(UserError, match="other.weights.h5: weights do not fit model 'vgg16_head'"):
        load_weights_file(head, tmp_path / "other.weights.h5")
    with pytest.raises(UserError, match="weights file not found"):
        load_weights_file(head, tmp_path / "missing.weights.h5")
    with pytest.raises(UserError, match="VGG16 weights file not found"):
        build_model("vgg16_transfer", (32, 32, 3), 4, weights=str(tmp_path / "none.h5"))


def test_cli_train_evaluate_predict_and_other_classes(features, tmp_path):
    run = tmp_path / "run"
    result = run_cli("keras_api", "train", "--model", "vgg16_head", "--manifest", str(features), "--out", str(run),
                     "--epochs", "1", "--batch-size", "16", "--learning-rate", "1e-4")
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli("keras_api", "evaluate", "--run", str(run), "--manifest", str(features), "--split", "val")
    assert result.returncode == 0 and "val: 48 samples, accuracy" in result.stdout
    result = run_cli("keras_api", "predict", "--run", str(run), "--manifest", str(features), "--split", "val",
                     "--out", str(tmp_path / "p.csv"))
    assert result.returncode == 0 and len((tmp_path / "p.csv").read_text().splitlines()) == 49
    other = json.loads(features.read_text())
    other["class_names"] = ["sirna_9", "sirna_8", "sirna_7", "sirna_6"]
    (tmp_path / "other.json").write_text(json.dumps(other))
    result = call_cli("keras_api", "evaluate", "--run", str(run), "--manifest", str(tmp_path / "other.json"))
    assert_user_error(result, "class 0 is sirna_9 here, sirna_0 in the model")
    result = call_cli("graph_api", "evaluate", "--run", str(run), "--manifest", str(features))
    assert_user_error(result, "trained with keras_api")
    predictor = Predictor(run)
    np.testing.assert_allclose(predictor.probabilities_of(np.zeros((3, 2, 2, 512), np.float32)).sum(1), 1.0,
                               rtol=1e-5)


def test_extract_features_cli_writes_feature_shards(shard_dir, tmp_path):
    result = run_cli("keras_api", "extract-features", "--manifest", str(shard_dir / "manifest.json"),
                     "--out", str(tmp_path / "feats"), "--weights", "none", "--batch-size", "8")
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "feats" / "manifest.json").read_text())
    source = json.loads((shard_dir / "manifest.json").read_text())
    assert manifest["image_mode"] == "vgg16_features" and manifest["image_shape"] == [1, 1, 512]
    assert sum(s["count"] for s in manifest["shards"]) == sum(s["count"] for s in source["shards"])
    assert "randomly initialised" in result.stderr


def test_best_checkpoint_is_the_epoch_early_stopping_restores(features, tmp_path):
    """Validation loss falls every epoch, but never by more than min_delta: the best epoch is
    the first, for early stopping, restore_best_weights and best.keras alike (the graph's rule)."""
    history = train(_head(learning_rate=1e-4), str(features), tmp_path / "run",
                    TrainOptions(epochs=3, batch_size=16, patience=5, min_delta=10.0, tensorboard=False))
    assert history["val_loss"][0] > history["val_loss"][1] > history["val_loss"][2]  # the case this tests
    assert history["early_stopping"]["best_epoch"] == 0
    best, final = _weights(tmp_path / "run" / "best.keras"), _weights(tmp_path / "run" / "final.keras")
    for name in best:
        np.testing.assert_array_equal(best[name], final[name], err_msg=name)
