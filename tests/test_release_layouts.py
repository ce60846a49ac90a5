"""The three RxRx1 layouts build reads (Kaggle, rxrx.ai RxRx1 v1.0, WILDS): detected from the
files, read into the same sites and pixels, WILDS's official split, and their bad inputs."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_pipeline.build import BuildOptions, build_shards, plan_shards, select_sites
from data_pipeline.layout import LAYOUTS, detect_layout
from data_pipeline.metadata import read_release_metadata, read_sites
from data_pipeline.shards import load_manifest, read_split
from data_pipeline.synthetic import SynthConfig, generate
from plumbing.errors import UserError

from conftest import assert_user_error, run_cli

SMALL = SynthConfig(num_classes=3, train_experiments=2, test_experiments=1, plates=1,
                    wells_per_plate=8, image_size=48, seed=5)


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    for layout in LAYOUTS:
        generate(SMALL, base / layout, release=layout)
    return {layout: base / layout for layout in LAYOUTS}


def _build(root: Path, out: Path, mode: str = "rgb224", **select) -> dict:
    sites, classes = select_sites(root, include_test=True, **select)
    options = BuildOptions(root=str(root), out_dir=str(out), image_mode=mode, image_size=24, shard_size=64)
    build_shards(plan_shards(sites, classes, 64), classes, options)
    return load_manifest(out / "manifest.json")


def _samples(manifest: dict, split: str) -> dict[str, np.ndarray]:
    data = read_split(manifest, split)
    ids = [f"{i.decode()}_s{s}" for i, s in zip(data["id_codes"], data["sites"])]
    return dict(zip(ids, data["images"]))


def test_layout_is_detected_from_the_files(roots, tmp_path):
    assert {layout: detect_layout(root) for layout, root in roots.items()} == {name: name for name in LAYOUTS}
    both = tmp_path / "both"
    shutil.copytree(roots["kaggle"], both)
    shutil.copy(roots["rxrx1"] / "metadata.csv", both)
    with pytest.raises(UserError, match="both train.csv"):
        detect_layout(both)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(roots["rxrx1"] / "metadata.csv", bare)
    with pytest.raises(UserError, match=r"images/U2OS-01/Plate1/\w+_s1_w1.png .*and .*_s1.png"):
        detect_layout(bare)
    with pytest.raises(UserError, match="no train.csv"):
        detect_layout(tmp_path)


def test_every_layout_lists_the_same_sites_with_the_same_labels(roots):
    frames = {layout: read_sites(root)[0] for layout, root in roots.items()}
    columns = ["id_code", "site", "experiment", "plate", "well", "sirna", "well_type", "cell_type"]
    kaggle = frames["kaggle"].sort_values(["id_code", "site"])[columns].reset_index(drop=True)
    unlabelled = kaggle["sirna"].isna()  # Kaggle's test.csv has no siRNA; the releases label their test sets
    assert unlabelled.any() and set(frames["kaggle"].loc[frames["kaggle"]["sirna"].isna(), "dataset"]) == {"test"}
    for layout in ("rxrx1", "wilds"):
        other = frames[layout].sort_values(["id_code", "site"])[columns].reset_index(drop=True)
        assert other["sirna"].notna().all()
        pd.testing.assert_frame_equal(kaggle[~unlabelled], other[~unlabelled], check_dtype=False)
        pd.testing.assert_frame_equal(kaggle.drop(columns="sirna"), other.drop(columns="sirna"), check_dtype=False)
    # WILDS moves the last training experiment to its own "val" dataset
    assert set(frames["wilds"].loc[frames["wilds"]["dataset"] == "val", "experiment"]) == {"U2OS-02"}


def test_the_same_site_gives_the_same_shard_sample_in_every_layout(roots, tmp_path):
    built = {layout: _build(root, tmp_path / layout) for layout, root in roots.items()}
    assert {layout: m["splits"] for layout, m in built.items()} == {name: built["kaggle"]["splits"] for name in LAYOUTS}
    for split in ("train", "val", "test"):
        reference = _samples(built["kaggle"], split)
        for layout in ("rxrx1", "wilds"):
            samples = _samples(built[layout], split)
            assert samples.keys() == reference.keys()
            assert all(np.array_equal(samples[k], reference[k]) for k in reference), (layout, split)
    raw = {layout: _build(roots[layout], tmp_path / f"raw-{layout}", "raw6") for layout in ("kaggle", "rxrx1")}
    first, second = (_samples(m, "train") for m in raw.values())
    assert all(np.array_equal(first[k], second[k]) for k in first) and next(iter(first.values())).shape[-1] == 6


def test_wilds_official_split_keeps_its_train_val_test_and_id_test(roots, tmp_path):
    manifest = _build(roots["wilds"], tmp_path / "official", official_split=True)
    metadata = read_release_metadata(roots["wilds"] / "metadata.csv", "wilds")
    treatment = metadata[metadata["well_type"] == "treatment"]
    expected = {
        "train": treatment[(treatment["dataset"] == "train") & (treatment["site"] == 1)],
        "id_test": treatment[(treatment["dataset"] == "train") & (treatment["site"] == 2)],
        "val": treatment[treatment["dataset"] == "val"],
        "test": treatment[treatment["dataset"] == "test"],
    }
    assert set(manifest["splits"]) == set(expected)
    for split, rows in expected.items():
        assert sorted(_samples(manifest, split)) == sorted(f"{r.id_code}_s{r.site}" for r in rows.itertuples())
    # labels of every official split are kept (WILDS labels its test sets)
    assert (read_split(manifest, "test")["labels"] >= 0).all()


@pytest.mark.parametrize("row_edit, message", [
    ({"sirna_id": 2000}, "sirna_id .2000. must be an integer in 0..1138"),
    ({"dataset": "val"}, "unknown dataset 'val'"),
    ({"site": 3}, "site .3. must be an integer"),
    ({"well_id": "U2OS-01_2_B02"}, "does not match"),
])
def test_bad_release_metadata_names_the_file_and_row(roots, tmp_path, row_edit, message):
    frame = pd.read_csv(roots["rxrx1"] / "metadata.csv")
    for column, value in row_edit.items():
        frame[column] = frame[column].astype(object)
        frame.loc[3, column] = value
    frame.to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(UserError, match=message) as info:
        read_release_metadata(tmp_path / "metadata.csv", "rxrx1")
    assert "metadata.csv" in str(info.value)


def test_duplicated_site_is_refused(roots, tmp_path):
    frame = pd.read_csv(roots["wilds"] / "metadata.csv")
    pd.concat([frame, frame.iloc[[5]]]).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(UserError, match="appears in more than one row"):
        read_release_metadata(tmp_path / "metadata.csv", "wilds")


@pytest.mark.slow
def test_cli_reads_each_layout_and_refuses_what_a_layout_cannot_give(roots, tmp_path):
    help_text = run_cli("data_pipeline", "build", "--help").stdout
    assert all(layout in help_text for layout in LAYOUTS) and "--official-split" in help_text
    result = run_cli("data_pipeline", "synth", "--out", str(tmp_path / "w"), "--layout", "wilds", "--size", "32",
                     "--wells", "6", "--classes", "2")
    assert result.returncode == 0 and "wilds layout" in result.stdout, result.stderr
    result = run_cli("data_pipeline", "build", "--root", str(tmp_path / "w"), "--out", str(tmp_path / "s"),
                     "--size", "16", "--official-split", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert load_manifest(tmp_path / "s" / "manifest.json")["source"]["layout"] == "wilds"
    result = run_cli("data_pipeline", "show", "--root", str(roots["wilds"]), "--id-code", "U2OS-01_1_B02",
                     "--out", str(tmp_path / "site.png"))
    assert result.returncode == 0 and (tmp_path / "site.png").stat().st_size > 0, result.stderr
    for args, culprit in [
        (("--root", str(roots["wilds"]), "--mode", "raw6"), "--mode raw6"),
        (("--root", str(roots["kaggle"]), "--official-split"), "--official-split"),
        (("--root", str(roots["wilds"]), "--official-split", "--val-experiments", "U2OS-01"), "--official-split"),
    ]:
        assert_user_error(run_cli("data_pipeline", "build", *args, "--out", str(tmp_path / "never")), culprit)
        assert not (tmp_path / "never").exists()
