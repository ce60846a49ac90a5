"""The RxRx1 file layout: validated identifiers and the paths built from them.

Real layout (Kaggle release): ``<root>/<dataset>/<experiment>/Plate<p>/<well>_s<site>_w<channel>.png``.
Every component is validated before a path is built, and the final path is checked to
stay inside the data root, so a crafted id_code cannot read files elsewhere.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .constants import CHANNELS, PLATES, SITES
from .errors import DataError

EXPERIMENT_RE = re.compile(r"^(HEPG2|HUVEC|RPE|U2OS)-(\d{2})$")
WELL_RE = re.compile(r"^[B-O](0[2-9]|1\d|2[0-3])$")
DATASETS = ("train", "test")


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
        raise DataError(f"unknown experiment {experiment!r}: expected HEPG2|HUVEC|RPE|U2OS-NN")
    return experiment


def validate_plate(plate) -> int:
    try:
        value = int(plate)
    except (TypeError, ValueError):
        raise DataError(f"bad plate {plate!r}: expected 1-4") from None
    if value not in PLATES or str(plate).strip() not in (str(value), f"{value}.0"):
        raise DataError(f"bad plate {plate!r}: expected 1-4")
    return value


def validate_well(well: str) -> str:
    if not isinstance(well, str) or not WELL_RE.match(well):
        raise DataError(f"bad well {well!r}: expected B02..O23")
    return well


def validate_site(site) -> int:
    if site not in SITES:
        raise DataError(f"bad site {site!r}: expected 1 or 2")
    return int(site)


def validate_channel(channel) -> int:
    if channel not in CHANNELS:
        raise DataError(f"bad channel {channel!r}: expected 1-6")
    return int(channel)


def parse_id_code(id_code: str) -> tuple[str, int, str]:
    """Split ``<experiment>_<plate>_<well>`` into validated parts."""
    parts = id_code.split("_") if isinstance(id_code, str) else []
    if len(parts) != 3:
        raise DataError(f"malformed id_code {id_code!r}: expected <experiment>_<plate>_<well>")
    try:
        return validate_experiment(parts[0]), validate_plate(parts[1]), validate_well(parts[2])
    except DataError as err:
        raise DataError(f"malformed id_code {id_code!r}: {err.message}") from None


def site_channel_path(root: str | os.PathLike, key: SiteKey, channel: int) -> Path:
    """Path of one channel's PNG; raises DataError if any component is invalid."""
    if key.dataset not in DATASETS:
        raise DataError(f"bad dataset {key.dataset!r}: expected one of {DATASETS}")
    validate_experiment(key.experiment)
    plate = validate_plate(key.plate)
    well = validate_well(key.well)
    site = validate_site(key.site)
    channel = validate_channel(channel)
    root_path = Path(root).resolve()
    path = (root_path / key.dataset / key.experiment / f"Plate{plate}"
            / f"{well}_s{site}_w{channel}.png").resolve()
    if root_path not in path.parents:
        raise DataError(f"path for {key.sample_id} leaves the data root {root_path}")
    return path
