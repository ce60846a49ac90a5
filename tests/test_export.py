"""`python -m keras_api from-graph`: a graph_api run becomes a Keras `.keras` / `.weights.h5`
that computes the graph's logits."""
import keras
import numpy as np
import pytest
from shard_helpers import feature_shards

from data_pipeline.dataset import read_batches, stored_order
from data_pipeline.shards import load_manifest

from conftest import assert_user_error, call_cli, run_cli

pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

def _val_images(manifest_path) -> np.ndarray:
    manifest = load_manifest(manifest_path)
    return next(read_batches(manifest, "val", [stored_order(manifest, "val")], 16))[0].astype(np.float32)


@pytest.mark.parametrize("model, weights", [("resnet50", "none"), ("vgg16_transfer", "hed")])
def test_graph_run_exported_to_keras_computes_the_graphs_logits(model, weights, shard_dir, tmp_path):
    from graph_api.inference import Predictor
    from keras_api.model import build_model
    from keras_api.weights import load_model_file, load_weights_file
    manifest = str(shard_dir / "manifest.json")
    run = tmp_path / "run"
    result = run_cli("graph_api", "train", "--model", model, "--manifest", manifest, "--out", str(run),
                     "--epochs", "2", "--steps-per-epoch", "1", "--batch-size", "8", "--weights", weights,
                     "--patience", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = (("m.keras", "final"), ("m.weights.h5", "best")) if model == "resnet50" else (("m.keras", "final"),)
    for out, checkpoint in outputs:
        result = run_cli("keras_api", "from-graph", "--run", str(run), "--out", str(tmp_path / out),
                         "--checkpoint", checkpoint)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"wrote {tmp_path / out}" in result.stdout
    x = _val_images(manifest)
    predictor = Predictor(run)
    want = predictor.logits_of(x)
    predictor.close()
    exported = load_model_file(tmp_path / "m.keras")
    got = exported(x, training=False).numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, want.std())
    # the weights are what makes them equal: a fresh initialisation does not
    assert not np.allclose(got, keras.models.clone_model(exported)(x, training=False).numpy(), atol=1e-3)
    if model == "resnet50":
        # with early stopping on, final holds the best epoch's weights: the best checkpoint's weights
        # file, loaded into a model built from the run's settings, gives the same logits
        fresh = build_model(model, x.shape[1:], want.shape[1], weights="none")
        load_weights_file(fresh, tmp_path / "m.weights.h5")
        np.testing.assert_allclose(fresh(x, training=False).numpy(), got, atol=1e-5)


def test_from_graph_refuses_bad_input_and_keeps_existing_files(tmp_path):
    keras_run = tmp_path / "keras"
    manifest = feature_shards(tmp_path, n_train=16, n_val=8)
    result = run_cli("keras_api", "train", "--model", "vgg16_head", "--manifest", str(manifest),
                     "--out", str(keras_run), "--epochs", "1", "--batch-size", "8")
    assert result.returncode == 0, result.stderr[-2000:]
    existing = tmp_path / "old.keras"
    existing.write_bytes(b"previous contents")
    cases = [(("--run", str(keras_run), "--out", str(existing)), f"error: {keras_run}: trained with keras_api"),
             (("--run", str(tmp_path / "nothing"), "--out", str(existing)), "error: "),
             (("--run", str(keras_run), "--out", str(tmp_path / "m.h5")), f"error: {tmp_path / 'm.h5'}: expected")]
    for args, message in cases:
        assert assert_user_error(call_cli("keras_api", "from-graph", *args), "").startswith(message)
    assert existing.read_bytes() == b"previous contents"
