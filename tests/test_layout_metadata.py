from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_pipeline.layout import SiteKey, parse_id_code, site_channel_path
from data_pipeline.metadata import (
    class_names_for,
    encode_labels,
    expand_sites,
    read_metadata,
    select,
    split_by_experiment,
    split_random,
)
from plumbing.errors import UserError


def test_parse_id_code_accepts_valid_and_names_the_bad_part():
    assert parse_id_code("HUVEC-24_4_O23") == ("HUVEC-24", 4, "O23")
    for bad, part in [("HUVEC-24_5_B02", "plate"), ("FOO-01_1_B02", "experiment"),
                      ("U2OS-01_1_A02", "well"), ("U2OS-01_1_B24", "well"), ("U2OS-01_1", "malformed")]:
        with pytest.raises(UserError, match=part):
            parse_id_code(bad)


def test_path_follows_kaggle_layout_and_rejects_bad_components(tmp_path):
    key = SiteKey("train", "U2OS-01", 2, "B02", 1)
    assert site_channel_path(tmp_path, key, 6) == tmp_path.resolve() / "train/U2OS-01/Plate2/B02_s1_w6.png"
    with pytest.raises(UserError, match="channel"):
        site_channel_path(tmp_path, key, 7)
    with pytest.raises(UserError, match="experiment"):
        site_channel_path(tmp_path, SiteKey("train", "../../etc", 1, "B02", 1), 1)
    with pytest.raises(UserError, match="dataset"):
        site_channel_path(tmp_path, SiteKey("..", "U2OS-01", 1, "B02", 1), 1)


def _write(root: Path, name: str, text: str) -> None:
    (root / name).write_text(text)


def test_metadata_combines_files_and_accepts_siRNA_spelling(tmp_path):
    _write(tmp_path, "train.csv", "id_code,experiment,plate,well,siRNA\nU2OS-01_1_B02,U2OS-01,1,B02,7\n"
           "HEPG2-01_1_B03,HEPG2-01,1,B03,3\n")
    _write(tmp_path, "train_controls.csv", "id_code,experiment,plate,well,sirna,well_type\n"
           "U2OS-01_1_B04,U2OS-01,1,B04,1138,negative_control\n")
    _write(tmp_path, "test.csv", "id_code,experiment,plate,well\nU2OS-02_1_B02,U2OS-02,1,B02\n")
    frame = read_metadata(tmp_path)
    assert list(frame["dataset"]) == ["train", "train", "train", "test"]
    assert list(frame["well_type"]) == ["treatment", "treatment", "negative_control", "treatment"]
    assert list(frame["cell_type"]) == ["U2OS", "HEPG2", "U2OS", "U2OS"]
    assert frame["sirna"].iloc[0] == 7 and pd.isna(frame["sirna"].iloc[3])
    u2os = select(frame, cell_types=["U2OS"])
    assert list(u2os["id_code"]) == ["U2OS-01_1_B02"]
    assert len(select(frame, cell_types=["U2OS"], include_controls=True)) == 2


@pytest.mark.parametrize("content, message", [
    ("id_code,experiment,plate\nU2OS-01_1_B02,U2OS-01,1\n", "missing column"),
    ("id_code,experiment,plate,well,sirna\nU2OS-01_1_B2,U2OS-01,1,B2,1\n", "malformed id_code"),
    ("id_code,experiment,plate,well,sirna\nXYZ-01_1_B02,XYZ-01,1,B02,1\n", "unknown experiment"),
    ("id_code,experiment,plate,well,sirna\nU2OS-01_1_B02,U2OS-01,2,B02,1\n", "does not match"),
    ("id_code,experiment,plate,well,sirna\nU2OS-01_1_B02,U2OS-01,1,B02,x\n", "integers"),
])
def test_malformed_csv_gives_one_clear_error_naming_the_file(tmp_path, content, message):
    _write(tmp_path, "train.csv", content)
    with pytest.raises(UserError, match=message) as info:
        read_metadata(tmp_path)
    assert "train.csv" in str(info.value) and "\n" not in str(info.value)


def test_missing_root_and_missing_train_csv(tmp_path):
    with pytest.raises(UserError, match="data root not found"):
        read_metadata(tmp_path / "nope")
    with pytest.raises(UserError, match="train.csv"):
        read_metadata(tmp_path)


def _frame(n_wells=40, experiments=("U2OS-01", "U2OS-02")):
    rows = [{"id_code": f"{e}_1_B{i + 2:02d}", "experiment": e, "plate": 1, "well": f"B{i + 2:02d}",
             "sirna": i % 5, "dataset": "train", "well_type": "treatment", "cell_type": "U2OS"}
            for e in experiments for i in range(n_wells // len(experiments))]
    frame = pd.DataFrame(rows)
    frame["sirna"] = frame["sirna"].astype("Int64")
    return frame


def test_random_split_is_reproducible_and_keeps_sites_of_a_well_together():
    sites = expand_sites(_frame())
    a, b = split_random(sites, 0.25, seed=1), split_random(sites, 0.25, seed=1)
    assert (a == b).all() and not (a == split_random(sites, 0.25, seed=2)).all()
    per_well = sites.assign(split=a).groupby("id_code")["split"].nunique()
    assert (per_well == 1).all()
    assert (a == "val").sum() == 2 * round(0.25 * 40)


def test_split_by_experiment_holds_out_whole_experiments():
    frame = _frame()
    split = split_by_experiment(frame, ["U2OS-02"])
    assert set(frame["experiment"][split == "val"]) == {"U2OS-02"}
    with pytest.raises(UserError, match="U2OS-09"):
        split_by_experiment(frame, ["U2OS-09"])


def test_label_encoding():
    frame = _frame(10)
    names = class_names_for(frame)
    assert names == [f"sirna_{i}" for i in range(5)]
    labels = encode_labels(frame, names)
    assert labels.dtype == np.int32 and list(labels[:5]) == [0, 1, 2, 3, 4]
    with pytest.raises(UserError, match="sirna_4"):
        encode_labels(frame, names[:4])
