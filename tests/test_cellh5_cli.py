import h5py
import numpy as np
import pytest

from data_pipeline.cellh5 import export_cell_h5, import_cell_h5
from data_pipeline.shards import load_manifest, read_split, verify_manifest
from plumbing.errors import UserError

from conftest import assert_user_error, run_cli


def test_cell_h5_round_trip(shard_dir, tmp_path):
    counts = export_cell_h5(shard_dir / "manifest.json", tmp_path / "cell.h5")
    manifest = load_manifest(shard_dir / "manifest.json")
    assert counts == {"train": manifest["splits"]["train"], "val": manifest["splits"]["val"]}
    source = {split: read_split(manifest, split) for split in ("train", "val")}
    with h5py.File(tmp_path / "cell.h5", "r") as handle:
        assert handle["x_train"].dtype == np.uint8
        y_train = handle["y_train"][:]  # one-hot rows in class order, as pd.get_dummies gives
        assert y_train.dtype == np.uint8 and y_train.shape == (counts["train"], len(manifest["class_names"]))
        assert (y_train.sum(axis=1) == 1).all()
        exported = {split: (handle[f"x_{split}"][:], handle[f"y_{split}"][:]) for split in ("train", "val")}
    for split, (x, y) in exported.items():  # the shards' images and labels, in the manifest's order
        np.testing.assert_array_equal(x, source[split]["images"])
        np.testing.assert_array_equal(y.argmax(1), source[split]["labels"])
    # back through the command: the same images and labels in shards that verify
    result = run_cli("data_pipeline", "import-cell-h5", str(tmp_path / "cell.h5"), "--out", str(tmp_path / "shards"),
                     "--shard-size", "500")
    assert result.returncode == 0, result.stderr
    imported = load_manifest(tmp_path / "shards" / "manifest.json")
    verify_manifest(imported)
    assert imported["splits"] == counts and imported["class_names"] == manifest["class_names"]
    for split in ("train", "val"):
        back = read_split(imported, split)
        np.testing.assert_array_equal(back["images"], source[split]["images"])
        np.testing.assert_array_equal(back["labels"], source[split]["labels"])


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
    # what the book's loader read is our data: our class names, our labels as its one-hot rows
    manifest = load_manifest(shard_dir / "manifest.json")
    assert [c.decode() for c in classes] == manifest["class_names"]
    np.testing.assert_array_equal(Y_val.argmax(1), read_split(manifest, "val")["labels"])
    np.testing.assert_array_equal(X_val, read_split(manifest, "val")["images"])


def test_build_selects_cell_types_and_splits_by_fraction_and_seed(tmp_path):
    root = tmp_path / "rxrx1"
    made = run_cli("data_pipeline", "synth", "--out", str(root), "--classes", "2", "--wells", "12",
                   "--experiments", "1", "--test-experiments", "0", "--size", "32", "--cell-types", "HEPG2,U2OS")
    assert made.returncode == 0, made.stderr

    def build(name, *flags):
        built = run_cli("data_pipeline", "build", "--root", str(root), "--out", str(tmp_path / name), "--size", "32",
                        "--workers", "1", *flags)
        assert built.returncode == 0, built.stderr
        manifest = load_manifest(tmp_path / name / "manifest.json")
        ids = {}
        for record in manifest["shards"]:
            with h5py.File(tmp_path / name / record["file"], "r") as handle:
                for i in handle["id_codes"][:]:
                    ids[i.decode()] = record["split"]
        return ids

    both, hepg2 = build("both"), build("hepg2", "--cell-types", "HEPG2")
    assert {i.split("-")[0] for i in both} == {"HEPG2", "U2OS"} and {i.split("-")[0] for i in hepg2} == {"HEPG2"}
    # a per-well random split: --val-fraction sets the share of wells, --seed which ones
    half, other_seed = build("half", "--val-fraction", "0.5"), build("seed1", "--seed", "1")
    assert _val_share(both) < 0.35 and 0.35 < _val_share(half) < 0.65
    assert {i for i in both if both[i] == "val"} != {i for i in both if other_seed[i] == "val"}
    assert abs(_val_share(other_seed) - _val_share(both)) < 0.15


def _val_share(splits: dict[str, str]) -> float:
    return sum(split == "val" for split in splits.values()) / len(splits)
