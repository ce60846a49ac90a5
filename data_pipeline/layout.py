"""The RxRx1 file layouts: validated identifiers and the paths built from them.

Three releases are read, told apart by their files (`detect_layout`):

- ``kaggle``: the Kaggle competition (``train.csv``, ``train_controls.csv``, ``test.csv``,
  ``test_controls.csv``); images ``<root>/<dataset>/<experiment>/Plate<p>/<well>_s<site>_w<ch>.png``.
- ``rxrx1``: the rxrx.ai RxRx1 v1.0 release (``metadata.csv``, one row per site); images
  ``<root>/images/<experiment>/Plate<p>/<well>_s<site>_w<ch>.png``.
- ``wilds``: WILDS ``rxrx1_v1.0`` (the same ``metadata.csv`` with its own train/val/test);
  one 3-channel RGB composite per site, ``<root>/images/<experiment>/Plate<p>/<well>_s<site>.png``.

Every component is validated before a path is built, and the final path is checked to
stay inside the data root, so a crafted id_code cannot read files elsewhere.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.constants import CHANNELS, PLATES, SITES
from plumbing.errors import UserError

EXPERIMENT_RE = re.compile(r"^(HEPG2|HUVEC|RPE|U2OS)-(\d{2})$")
WELL_RE = re.compile(r"^[B-O](0[2-9]|1\d|2[0-3])$")
DATASETS = ("train", "test")
LAYOUT_KAGGLE, LAYOUT_RXRX1, LAYOUT_WILDS = "kaggle", "rxrx1", "wilds"
LAYOUTS = {
    LAYOUT_KAGGLE: "Kaggle competition: train.csv ..., <dataset>/<exp>/Plate<p>/<well>_s<site>_w<ch>.png",
    LAYOUT_RXRX1: "rxrx.ai RxRx1 v1.0: metadata.csv, images/<exp>/Plate<p>/<well>_s<site>_w<ch>.png",
    LAYOUT_WILDS: "WILDS rxrx1_v1.0: metadata.csv, RGB images/<exp>/Plate<p>/<well>_s<site>.png",
}
RELEASE_METADATA = "metadata.csv"
KAGGLE_METADATA = "train.csv"


@dataclass(frozen=True)
class SiteKey:
    """One imaged site: a well of a plate of an experiment, site 1 or 2."""

    dataset: str
    experiment: str
    plate: int
    well: str
    site: int

    @property
    def id_code(self) -> str:
        return f"{self.experiment}_{self.plate}_{self.well}"

    @property
    def sample_id(self) -> str:
        return f"{self.id_code}_s{self.site}"


def validate_experiment(experiment: str) -> str:
    if not isinstance(experiment, str) or not EXPERIMENT_RE.match(experiment):
        raise UserError(f"unknown experiment {experiment!r}: expected HEPG2|HUVEC|RPE|U2OS-NN")
    return experiment


def validate_plate(plate) -> int:
    try:
        value = int(plate)
    except (TypeError, ValueError):
        raise UserError(f"bad plate {plate!r}: expected 1-4") from None
    if value not in PLATES or str(plate).strip() not in (str(value), f"{value}.0"):
        raise UserError(f"bad plate {plate!r}: expected 1-4")
    return value


def validate_well(well: str) -> str:
    if not isinstance(well, str) or not WELL_RE.match(well):
        raise UserError(f"bad well {well!r}: expected B02..O23")
    return well


def validate_site(site) -> int:
    if site not in SITES:
        raise UserError(f"bad site {site!r}: expected 1 or 2")
    return int(site)


def validate_channel(channel) -> int:
    if channel not in CHANNELS:
        raise UserError(f"bad channel {channel!r}: expected 1-6")
    return int(channel)


def parse_id_code(id_code: str) -> tuple[str, int, str]:
    """Split ``<experiment>_<plate>_<well>`` into validated parts."""
    parts = id_code.split("_") if isinstance(id_code, str) else []
    if len(parts) != 3:
        raise UserError(f"malformed id_code {id_code!r}: expected <experiment>_<plate>_<well>")
    try:
        return validate_experiment(parts[0]), validate_plate(parts[1]), validate_well(parts[2])
    except UserError as err:
        raise UserError(f"malformed id_code {id_code!r}: {err.message}") from None


def site_channel_path(root: str | os.PathLike, key: SiteKey, channel: int | None,
                      layout: str = LAYOUT_KAGGLE) -> Path:
    """Path of one channel's PNG (channel None: the WILDS RGB composite of the site);
    raises UserError if any component is invalid."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    validate_experiment(key.experiment)
    plate = validate_plate(key.plate)
    well = validate_well(key.well)
    site = validate_site(key.site)
    if layout == LAYOUT_KAGGLE:
        if key.dataset not in DATASETS:
            raise UserError(f"bad dataset {key.dataset!r}: expected one of {DATASETS}")
        base = key.dataset
    else:
        base = "images"
    if layout == LAYOUT_WILDS:
        name = f"{well}_s{site}.png"
    else:
        name = f"{well}_s{site}_w{validate_channel(channel)}.png"
    root_path = Path(root).resolve()
    path = (root_path / base / key.experiment / f"Plate{plate}" / name).resolve()
    if root_path not in path.parents:
        raise UserError(f"path for {key.sample_id} leaves the data root {root_path}")
    return path


def detect_layout(root: str | os.PathLike) -> str:
    """Which release `root` holds: ``train.csv`` means Kaggle; ``metadata.csv`` means RxRx1
    v1.0 or WILDS, told apart by the first site's image files (six channels or one RGB)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: data root not found")
    kaggle, release = (root / KAGGLE_METADATA).is_file(), (root / RELEASE_METADATA).is_file()
    if kaggle and release:
        raise UserError(f"{root}: holds both {KAGGLE_METADATA} (Kaggle) and {RELEASE_METADATA} "
                        "(RxRx1 v1.0 / WILDS); keep one release per data root")
    if kaggle:
        return LAYOUT_KAGGLE
    if not release:
        raise UserError(f"{root}: no {KAGGLE_METADATA} (Kaggle layout) or {RELEASE_METADATA} "
                        "(RxRx1 v1.0 / WILDS layout) found")
    key = _first_release_site(root / RELEASE_METADATA)
    wilds = site_channel_path(root, key, None, LAYOUT_WILDS)
    rxrx1 = site_channel_path(root, key, 1, LAYOUT_RXRX1)
    if wilds.is_file():
        return LAYOUT_WILDS
    if rxrx1.is_file():
        return LAYOUT_RXRX1
    raise UserError(f"{root}: first site of {RELEASE_METADATA} has no image: looked for "
                    f"{rxrx1.relative_to(root.resolve())} (RxRx1 v1.0) and "
                    f"{wilds.relative_to(root.resolve())} (WILDS)")


def _first_release_site(path: Path) -> SiteKey:
    """The first data row of a metadata.csv as a SiteKey (read with the csv module: a
    detection need not parse the whole file)."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            row = next(reader, None)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: not a readable CSV ({err})") from None
    if row is None:
        raise UserError(f"{path}: no data rows")
    missing = [c for c in ("experiment", "plate", "well", "site") if c not in row]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    try:
        return SiteKey("train", validate_experiment(row["experiment"]), validate_plate(row["plate"]),
                       validate_well(row["well"]), validate_site(int_or_none(row["site"])))
    except UserError as err:
        raise UserError(f"{path}, row 2: {err.message}") from None


def int_or_none(text) -> int | None:
    """`text` as an int, or None if it is not one (for validation messages)."""
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
