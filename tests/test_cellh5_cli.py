import h5py
import numpy as np
import pytest

from data_pipeline.cellh5 import export_cell_h5, import_cell_h5
from data_pipeline.shards import load_manifest, verify_manifest
from plumbing.errors import UserError

from conftest import assert_user_error, run_cli


def test_cell_h5_round_trip(shard_dir, tmp_path):
    counts = export_cell_h5(shard_dir / "manifest.json", tmp_path / "cell.h5")
    manifest = load_manifest(shard_dir / "manifest.json")
    assert counts == {"train": manifest["splits"]["train"], "val": manifest["splits"]["val"]}
    with h5py.File(tmp_path / "cell.h5", "r") as handle:
        assert handle["x_train"].dtype == np.uint8
        y_train = handle["y_train"][:]  # one-hot rows in class order, as pd.get_dummies gives
        assert y_train.dtype == np.uint8 and y_train.shape == (counts["train"], len(manifest["class_names"]))
        assert (y_train.sum(axis=1) == 1).all()
        x_val = handle["x_val"][:]
    imported = import_cell_h5(tmp_path / "cell.h5", tmp_path / "shards", shard_size=500)
    verify_manifest(load_manifest(tmp_path / "shards" / "manifest.json"))
    assert imported["splits"] == counts and imported["class_names"] == manifest["class_names"]
    val_shard = next(r["file"] for r in imported["shards"] if r["split"] == "val")
    with h5py.File(tmp_path / "shards" / val_shard, "r") as handle:
        np.testing.assert_array_equal(handle["images"][:], x_val)


def test_textbook_int8_images_are_restored_losslessly(tmp_path):
    x = np.resize(np.array([0, 127, 128, 200, 255], np.uint8), (2, 4, 4, 3))  # values over 127 wrap in int8
    with h5py.File(tmp_path / "cell.h5", "w") as handle:
        handle["x_train"] = x.view(np.int8)
        handle["x_val"] = x.view(np.int8)
        handle["y_train"] = np.eye(2, dtype=np.float32)  # one-hot, as some book code writes
        handle["y_val"] = np.array([1, 0])
        handle["classes"] = np.array([b"sirna_1", b"sirna_2"])
    imported = import_cell_h5(tmp_path / "cell.h5", tmp_path / "shards")
    with h5py.File(tmp_path / "shards" / imported["shards"][0]["file"], "r") as handle:
        np.testing.assert_array_equal(handle["images"][:], x)
        assert handle["labels"][:].tolist() == [0, 1]


def test_cell_h5_missing_dataset_is_named(tmp_path):
    with h5py.File(tmp_path / "cell.h5", "w") as handle:
        handle["x_train"] = np.zeros((1, 4, 4, 3), np.uint8)
    with pytest.raises(UserError, match="missing dataset.*y_train"):
        import_cell_h5(tmp_path / "cell.h5", tmp_path / "shards")


def test_show_writes_a_png_and_bad_ids_exit_2(synth_root, tmp_path):
    import pandas as pd
    id_code = pd.read_csv(synth_root / "train.csv")["id_code"][0]
    out = tmp_path / "site.png"
    ok = run_cli("data_pipeline", "show", "--root", str(synth_root), "--id-code", id_code, "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = run_cli("data_pipeline", "show", "--root", str(synth_root), "--id-code", "U2OS-01_9_B02",
                  "--out", str(tmp_path / "x.png"))
    assert_user_error(bad, "U2OS-01_9_B02", line="error: malformed id_code 'U2OS-01_9_B02': bad plate '9': expected 1-4")
    assert not (tmp_path / "x.png").exists()


def test_synth_cli_and_bad_arguments(tmp_path):
    ok = run_cli("data_pipeline", "synth", "--out", str(tmp_path / "d"), "--classes", "2", "--wells", "5",
                 "--experiments", "1", "--test-experiments", "0", "--size", "32")
    assert ok.returncode == 0, ok.stderr
    assert "20 sites" not in ok.stdout and "10 sites" in ok.stdout
    bad = run_cli("data_pipeline", "synth", "--out", str(tmp_path / "e"), "--cell-types", "NEURON")
    assert_user_error(bad, "unknown cell type 'NEURON'")
    assert not (tmp_path / "e").exists()
    unknown = run_cli("data_pipeline", "frobnicate")
    assert unknown.returncode == 2 and "frobnicate" in unknown.stderr and "Traceback" not in unknown.stderr


def test_the_books_own_code_trains_on_our_cell_h5(shard_dir, tmp_path):
    """The textbook's loader (P3.26) and its VGG16-transfer head compile and fit (P3.31-P3.33),
    written as the book writes them, plain Keras and h5py, run unchanged on an exported cell.h5."""
    import keras
    export_cell_h5(shard_dir / "manifest.json", tmp_path / "cell.h5")
    with h5py.File(tmp_path / "cell.h5", "r") as f:  # P3.26
        X_train, Y_train = f["x_train"][:], f["y_train"][:]
        X_val, Y_val = f["x_val"][:], f["y_val"][:]
        classes = f["classes"][:]
    conv_base = keras.applications.VGG16(weights=None, include_top=False, input_shape=X_train.shape[1:])  # P3.31
    conv_base.trainable = False
    model = keras.Sequential([conv_base,
                              keras.layers.Conv2D(64, (1, 1), activation="relu"),
                              keras.layers.Flatten(),
                              keras.layers.Dense(2048, activation="relu"),
                              keras.layers.Dropout(0.5),
                              keras.layers.Dense(2048, activation="relu"),
                              keras.layers.Dropout(0.5),
                              keras.layers.Dense(len(classes), activation="softmax")])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-4),  # P3.32
                  loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(X_train / 255.0, Y_train, batch_size=32, epochs=1,  # P3.33
                        validation_data=(X_val / 255.0, Y_val), verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "val_accuracy" in history.history
    assert Y_train.shape == (len(X_train), len(classes))
