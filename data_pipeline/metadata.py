"""RxRx1 metadata (textbook P3.2-P3.23): read, validate, combine, select, encode, split.

`read_sites` gives one row per imaged site (the unit stored in shards) with the columns
``id_code, experiment, plate, well, sirna, dataset, well_type, cell_type, site`` from any
layout `layout.detect_layout` knows; WILDS adds ``official_split``. The Kaggle CSVs hold a
row per well (`read_metadata`), which `expand_sites` turns into its two sites; the RxRx1 v1.0
and WILDS ``metadata.csv`` hold a row per site (`read_release_metadata`), whose ``sirna_id``
(0-1138, numbered as Kaggle's ``sirna``) becomes ``sirna``.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from data_pipeline.layout import (
    LAYOUT_KAGGLE,
    LAYOUT_WILDS,
    RELEASE_METADATA,
    detect_layout,
    int_or_none,
    parse_id_code,
    validate_experiment,
)
from plumbing.errors import UserError

METADATA_FILES = {
    # file name: (dataset, default well_type, has sirna)
    "train.csv": ("train", "treatment", True),
    "train_controls.csv": ("train", None, True),
    "test.csv": ("test", "treatment", False),
    "test_controls.csv": ("test", None, True),
}
BASE_COLUMNS = ("id_code", "experiment", "plate", "well")
WELL_TYPES = ("treatment", "positive_control", "negative_control")
COLUMNS = ("id_code", "experiment", "plate", "well", "sirna", "dataset", "well_type", "cell_type")
RELEASE_COLUMNS = ("well_id", "experiment", "plate", "well", "site", "dataset", "well_type", "sirna_id")
# Datasets each release's metadata.csv uses, and those whose rows form the labelled pool a
# build splits into train/val (WILDS moved four experiments from train to its own "val").
RELEASE_DATASETS = {"rxrx1": ("train", "test"), "wilds": ("train", "val", "test")}
LABELLED_POOL = {"kaggle": ("train",), "rxrx1": ("train",), "wilds": ("train", "val")}
MAX_SIRNA_ID = 1138


def read_metadata_file(path: str | os.PathLike, dataset: str, default_well_type: str | None,
                       has_sirna: bool) -> pd.DataFrame:
    """Read one RxRx1 CSV and check its schema; the siRNA column may be `sirna` or `siRNA`."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"id_code": str, "experiment": str, "well": str})
    except FileNotFoundError:
        raise UserError(f"{path}: metadata file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyUserError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    frame = frame.rename(columns={"siRNA": "sirna"})
    required = list(BASE_COLUMNS) + (["sirna"] if has_sirna else [])
    if default_well_type is None:
        required.append("well_type")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame[required].isna().any().any():
        bad = frame[frame[required].isna().any(axis=1)].index[0]
        raise UserError(f"{path}: empty value in row {bad + 2}")
    _validate_rows(frame, path)
    if has_sirna:
        try:
            frame["sirna"] = frame["sirna"].astype("int64")
        except (TypeError, ValueError):
            raise UserError(f"{path}: column sirna must hold integers") from None
        frame["sirna"] = frame["sirna"].astype("Int64")
    else:
        frame["sirna"] = pd.array([pd.NA] * len(frame), dtype="Int64")
    if default_well_type is not None:
        frame["well_type"] = default_well_type
    unknown = sorted(set(frame["well_type"]) - set(WELL_TYPES))
    if unknown:
        raise UserError(f"{path}: unknown well_type {unknown[0]!r}")
    frame["plate"] = frame["plate"].astype("int64")
    frame["dataset"] = dataset
    frame["cell_type"] = frame["experiment"].str.split("-").str[0]
    return frame[list(COLUMNS)]


def _validate_rows(frame: pd.DataFrame, path: Path) -> None:
    for row_number, row in enumerate(frame.itertuples(index=False), start=2):
        try:
            experiment, plate, well = parse_id_code(row.id_code)
            validate_experiment(row.experiment)
        except UserError as err:
            raise UserError(f"{path}, row {row_number}: {err.message}") from None
        if (experiment, plate, well) != (row.experiment, int_or_none(row.plate), row.well):
            raise UserError(f"{path}, row {row_number}: id_code {row.id_code!r} does not match "
                            f"experiment/plate/well {row.experiment}/{row.plate}/{row.well}")


def read_metadata(root: str | os.PathLike) -> pd.DataFrame:
    """Combine every RxRx1 metadata CSV found under `root` into one frame (train.csv required)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: data root not found")
    if not (root / "train.csv").is_file():
        raise UserError(f"{root / 'train.csv'}: metadata file not found")
    frames = [read_metadata_file(root / name, *spec)
              for name, spec in METADATA_FILES.items() if (root / name).is_file()]
    combined = pd.concat(frames, ignore_index=True)
    duplicated = combined["id_code"].duplicated()
    if duplicated.any():
        raise UserError(f"{root}: id_code {combined['id_code'][duplicated].iloc[0]!r} "
                        "appears in more than one metadata row")
    return combined


def read_release_metadata(path: str | os.PathLike, layout: str) -> pd.DataFrame:
    """An RxRx1 v1.0 / WILDS ``metadata.csv`` -> one row per site (see the module docstring).
    WILDS rows get ``official_split``: its ``dataset``, except training experiments' site 2,
    which WILDS holds out as ``id_test``."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"well_id": str, "experiment": str, "well": str, "dataset": str,
                                         "well_type": str})
    except FileNotFoundError:
        raise UserError(f"{path}: metadata file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyUserError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    missing = [c for c in RELEASE_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame[list(RELEASE_COLUMNS)].isna().any().any():
        bad = frame[frame[list(RELEASE_COLUMNS)].isna().any(axis=1)].index[0]
        raise UserError(f"{path}: empty value in row {bad + 2}")
    frame = frame.rename(columns={"well_id": "id_code"})
    _validate_rows(frame, path)
    for column, low, high in (("site", 1, 2), ("sirna_id", 0, MAX_SIRNA_ID)):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = ~values.between(low, high) | (values != values.round())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(f"{path}, row {row + 2}: {column} {str(frame[column].iloc[row])!r} must be an "
                            f"integer in {low}..{high}")
        frame[column] = values.astype("int64")
    for column, allowed in (("dataset", RELEASE_DATASETS[layout]), ("well_type", WELL_TYPES)):
        unknown = sorted(set(frame[column]) - set(allowed))
        if unknown:
            raise UserError(f"{path}: unknown {column} {unknown[0]!r} (the {layout} layout has "
                            f"{', '.join(allowed)})")
    duplicated = frame.duplicated(["id_code", "site"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise UserError(f"{path}: site {row.id_code}_s{row.site} appears in more than one row")
    frame["sirna"] = frame["sirna_id"].astype("Int64")
    frame["plate"] = frame["plate"].astype("int64")
    frame["cell_type"] = frame["experiment"].str.split("-").str[0]
    columns = list(COLUMNS) + ["site"]
    if layout == LAYOUT_WILDS:
        held_out = (frame["dataset"] == "train") & (frame["site"] == 2)
        frame["official_split"] = frame["dataset"].where(~held_out, "id_test")
        columns.append("official_split")
    return frame[columns].reset_index(drop=True)


def read_sites(root: str | os.PathLike, layout: str | None = None) -> tuple[pd.DataFrame, str]:
    """Every imaged site listed under `root` (one row each) and the layout it was read as
    (detected from the files unless given)."""
    layout = layout or detect_layout(root)
    if layout == LAYOUT_KAGGLE:
        return expand_sites(read_metadata(root)), layout
    return read_release_metadata(Path(root) / RELEASE_METADATA, layout), layout


def select(frame: pd.DataFrame, *, cell_types: Iterable[str] | None = None,
           experiments: Iterable[str] | None = None, datasets: Iterable[str] = ("train",),
           include_controls: bool = False) -> pd.DataFrame:
    """Rows of the given cell types / experiments / datasets (the textbook's U2OS subset)."""
    mask = frame["dataset"].isin(list(datasets))
    if cell_types:
        cell_types = list(cell_types)
        unknown = sorted(set(cell_types) - set(frame["cell_type"]))
        if unknown:
            raise UserError(f"cell type {unknown[0]!r} is not in the metadata")
        mask &= frame["cell_type"].isin(cell_types)
    if experiments:
        experiments = list(experiments)
        unknown = sorted(set(experiments) - set(frame["experiment"]))
        if unknown:
            raise UserError(f"experiment {unknown[0]!r} is not in the metadata")
        mask &= frame["experiment"].isin(experiments)
    if not include_controls:
        mask &= frame["well_type"] == "treatment"
    selected = frame[mask].reset_index(drop=True)
    if selected.empty:
        raise UserError("the selection matches no metadata rows")
    return selected


def expand_sites(frame: pd.DataFrame, sites: Sequence[int] = (1, 2)) -> pd.DataFrame:
    """One row per (well, site): the unit that becomes one image in a shard."""
    expanded = frame.loc[frame.index.repeat(len(sites))].reset_index(drop=True)
    expanded["site"] = np.tile(np.asarray(sites, dtype=np.int64), len(frame))
    return expanded


def class_name(sirna: int) -> str:
    return f"sirna_{int(sirna)}"


def class_names_for(frame: pd.DataFrame) -> list[str]:
    """Sorted class list of the labelled rows (by siRNA number)."""
    sirnas = sorted(int(s) for s in frame["sirna"].dropna().unique())
    if not sirnas:
        raise UserError("the selection has no labelled rows to derive classes from")
    return [class_name(s) for s in sirnas]


def encode_labels(frame: pd.DataFrame, class_names: Sequence[str],
                  unknown_as_unlabelled: bool = False) -> np.ndarray:
    """Sparse int32 labels (index into `class_names`); -1 for unlabelled (test) rows.

    A class missing from `class_names` is an error, or -1 with `unknown_as_unlabelled`
    (for the test set, whose control siRNAs need not occur in training).
    """
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.full(len(frame), -1, dtype=np.int32)
    for i, sirna in enumerate(frame["sirna"]):
        if pd.isna(sirna):
            continue
        name = class_name(sirna)
        if name not in index and unknown_as_unlabelled:
            continue
        if name not in index:
            raise UserError(f"class {name} of {frame['id_code'].iloc[i]} is not in the class list")
        labels[i] = index[name]
    return labels




def split_random(frame: pd.DataFrame, val_fraction: float, seed: int) -> pd.Series:
    """'train'/'val' per row, drawn per well so both sites of a well land in one split."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"validation fraction {val_fraction} must be in [0, 1)")
    wells = np.array(sorted(frame["id_code"].unique()))
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(wells)))
    val_wells = set(rng.permutation(wells)[:n_val])
    return frame["id_code"].map(lambda w: "val" if w in val_wells else "train").rename("split")


def split_by_experiment(frame: pd.DataFrame, val_experiments: Iterable[str]) -> pd.Series:
    """'val' for the rows of the named experiments, as RxRx1's test set differs by experiment."""
    val_experiments = set(val_experiments)
    unknown = sorted(val_experiments - set(frame["experiment"]))
    if unknown:
        raise UserError(f"validation experiment {unknown[0]!r} is not in the selection")
    return frame["experiment"].map(lambda e: "val" if e in val_experiments else "train").rename("split")
