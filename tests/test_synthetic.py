import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_pipeline.images import load_site
from data_pipeline.layout import SiteKey
from data_pipeline.metadata import read_metadata
from data_pipeline.synthetic import SynthConfig, generate
from plumbing.errors import UserError

SMALL = SynthConfig(num_classes=3, train_experiments=1, test_experiments=1, wells_per_plate=6,
                    image_size=48, seed=11)


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_same_seed_gives_byte_identical_files(tmp_path):
    generate(SMALL, tmp_path / "a")
    generate(SMALL, tmp_path / "b")
    generate(SynthConfig(**{**SMALL.__dict__, "seed": 12}), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_layout_and_csv_schema_match_kaggle(synth_root):
    assert (pd.read_csv(synth_root / "train.csv").columns.tolist()
            == ["id_code", "experiment", "plate", "well", "sirna"])
    assert pd.read_csv(synth_root / "test.csv").columns.tolist() == ["id_code", "experiment", "plate", "well"]
    controls = pd.read_csv(synth_root / "train_controls.csv")
    assert set(controls["well_type"]) == {"positive_control", "negative_control"}
    assert set(controls.loc[controls.well_type == "negative_control", "sirna"]) == {1138}
    frame = read_metadata(synth_root)
    assert set(frame["dataset"]) == {"train", "test"}
    row = frame.iloc[0]
    site = load_site(synth_root, SiteKey(row.dataset, row.experiment, row.plate, row.well, 2), 64)
    assert site.shape == (64, 64, 6) and site.dtype == np.uint8
    assert (site.reshape(-1, 6).max(axis=0) > 20).all(), "every channel has visible cells"


def _channel_means(root, frame):
    return np.array([load_site(root, SiteKey(r.dataset, r.experiment, r.plate, r.well, s)).reshape(-1, 6)
                     .mean(axis=0) for r in frame.itertuples() for s in (1, 2)])


def test_class_signal_is_learnable_across_experiments(tmp_path):
    """A nearest-centroid classifier on channel means, fit on one experiment, beats chance
    on another, while a signal-free data set does not."""
    def accuracy(signal):
        config = SynthConfig(num_classes=4, train_experiments=2, test_experiments=0, wells_per_plate=44,
                             image_size=64, signal=signal, seed=5)
        root = tmp_path / f"s{signal}"
        generate(config, root)
        frame = read_metadata(root)
        frame = frame[frame.well_type == "treatment"]
        fit, held = frame[frame.experiment == "U2OS-01"], frame[frame.experiment == "U2OS-02"]
        x_fit, x_held = np.log(_channel_means(root, fit)), np.log(_channel_means(root, held))
        x_fit -= x_fit.mean(0)  # per-experiment normalisation removes the batch effect's mean
        x_held -= x_held.mean(0)
        y_fit, y_held = np.repeat(fit.sirna.to_numpy(int), 2), np.repeat(held.sirna.to_numpy(int), 2)
        centroids = np.stack([x_fit[y_fit == k].mean(0) for k in range(4)])
        predicted = np.argmin(((x_held[:, None] - centroids) ** 2).sum(-1), axis=1)
        return (predicted == y_held).mean()
    assert accuracy(1.0) > 0.6
    assert accuracy(0.0) < 0.5


def test_bad_config_is_refused():
    with pytest.raises(UserError, match="cell type"):
        SynthConfig(cell_types=("NEURON",)).validate()
    with pytest.raises(UserError, match="wells_per_plate"):
        SynthConfig(wells_per_plate=3).validate()
