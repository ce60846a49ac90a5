"""A synthetic RxRx1, written in the exact file layout and CSV schema of a release: Kaggle,
rxrx.ai RxRx1 v1.0 or WILDS (see `layout`).

Each site has cell-like content per channel (nuclei, ER, actin, nucleoli, mitochondria,
Golgi), a class signal (per-siRNA channel intensities and nucleus shape) that a CNN can
learn, per-experiment batch effects (channel gains, background, cell size by cell type)
that make cross-experiment validation hard as in the real data, and positive/negative
control wells. Everything derives from the seed: the same seed gives byte-identical files.
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data_pipeline.constants import (
    CELL_TYPES,
    CHANNELS,
    NEGATIVE_CONTROL_SIRNA,
    POSITIVE_CONTROL_SIRNAS,
    RAW_IMAGE_SIZE,
    WELL_COLUMNS,
    WELL_ROWS,
)
from data_pipeline.images import RGB_MAP, convert_tensor_to_rgb
from data_pipeline.layout import (
    LAYOUT_KAGGLE,
    LAYOUT_WILDS,
    LAYOUTS,
    RELEASE_METADATA,
    SiteKey,
    site_channel_path,
)
from data_pipeline.png import write_png8
from plumbing.atomic import atomic_path
from plumbing.errors import UserError

ALL_WELLS = tuple(f"{row}{col:02d}" for row in WELL_ROWS for col in WELL_COLUMNS)
# Typical (nucleus radius, cell radius, elongation) at 512 px, per cell type.
CELL_GEOMETRY = {"HEPG2": (8.0, 16.0, 1.1), "HUVEC": (8.5, 22.0, 1.8),
                 "RPE": (9.0, 24.0, 1.3), "U2OS": (10.0, 26.0, 1.2)}


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Defaults: a small U2OS set that trains in minutes on a CPU."""

    num_classes: int = 10
    cell_types: Sequence[str] = ("U2OS",)
    train_experiments: int = 2          # per cell type, numbered from 01
    test_experiments: int = 1           # per cell type, after the training ones
    plates: int = 1
    wells_per_plate: int = 24
    positive_controls: int = 2          # per plate
    negative_controls: int = 1          # per plate
    image_size: int = RAW_IMAGE_SIZE
    signal: float = 1.0                 # class-signal strength (0 = unlearnable)
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.num_classes <= 1108:
            raise UserError(f"num_classes {self.num_classes} must be in 1..1108")
        unknown = [c for c in self.cell_types if c not in CELL_TYPES]
        if unknown or not self.cell_types:
            raise UserError(f"unknown cell type {unknown[0] if unknown else '(none)'!r}: "
                            f"expected some of {CELL_TYPES}")
        if not 1 <= self.plates <= 4:
            raise UserError(f"plates {self.plates} must be in 1..4")
        controls = self.positive_controls + self.negative_controls
        if not controls < self.wells_per_plate <= len(ALL_WELLS):
            raise UserError(f"wells_per_plate {self.wells_per_plate} must exceed the "
                            f"{controls} control wells and be at most {len(ALL_WELLS)}")
        if self.positive_controls > len(POSITIVE_CONTROL_SIRNAS):
            raise UserError(f"at most {len(POSITIVE_CONTROL_SIRNAS)} positive controls per plate")
        if self.image_size < 32:
            raise UserError(f"image_size {self.image_size} must be at least 32")
        if self.train_experiments < 1 or self.test_experiments < 0:
            raise UserError("need at least one training experiment per cell type")


def _stable_seed(*parts) -> list[int]:
    return [zlib.crc32(str(p).encode()) for p in parts]


def plate_layout(config: SynthConfig) -> pd.DataFrame:
    """Every well of the data set: one row per well with its siRNA, dataset and well type."""
    rows = []
    for cell_type in config.cell_types:
        n_exp = config.train_experiments + config.test_experiments
        for e in range(1, n_exp + 1):
            experiment = f"{cell_type}-{e:02d}"
            dataset = "train" if e <= config.train_experiments else "test"
            for plate in range(1, config.plates + 1):
                rows.extend(_wells_of_plate(config, experiment, plate, dataset))
    return pd.DataFrame(rows)


def _wells_of_plate(config: SynthConfig, experiment: str, plate: int, dataset: str) -> list[dict]:
    rng = np.random.default_rng(_stable_seed(config.seed, "layout", experiment, plate))
    wells = list(ALL_WELLS[:config.wells_per_plate])
    n_treat = config.wells_per_plate - config.positive_controls - config.negative_controls
    sirnas = list(rng.permutation(np.resize(rng.permutation(config.num_classes), n_treat)))
    types = ["treatment"] * n_treat
    positives = rng.choice(POSITIVE_CONTROL_SIRNAS, config.positive_controls, replace=False)
    sirnas += list(positives) + [NEGATIVE_CONTROL_SIRNA] * config.negative_controls
    types += ["positive_control"] * config.positive_controls
    types += ["negative_control"] * config.negative_controls
    order = rng.permutation(len(wells))  # controls scattered over the plate
    return [{"id_code": f"{experiment}_{plate}_{wells[order[i]]}", "experiment": experiment,
             "plate": plate, "well": wells[order[i]], "sirna": int(sirnas[i]),
             "well_type": types[i], "dataset": dataset} for i in range(len(wells))]


def write_metadata(config: SynthConfig, root: Path, layout: pd.DataFrame, release: str = LAYOUT_KAGGLE) -> None:
    """The release's metadata: Kaggle's train.csv, train_controls.csv, test.csv,
    test_controls.csv, or RxRx1 v1.0 / WILDS's metadata.csv."""
    if release != LAYOUT_KAGGLE:
        _write_csv(release_metadata(config, layout, release), root / RELEASE_METADATA)
        return
    columns = ["id_code", "experiment", "plate", "well"]
    for dataset in ("train", "test"):
        part = layout[layout["dataset"] == dataset].sort_values("id_code")
        treatment = part[part["well_type"] == "treatment"]
        controls = part[part["well_type"] != "treatment"]
        # The Kaggle test.csv has no siRNA; test_controls.csv spells it "sirna" too.
        treat_cols = columns + (["sirna"] if dataset == "train" else [])
        _write_csv(treatment[treat_cols], root / f"{dataset}.csv")
        _write_csv(controls[columns + ["sirna", "well_type"]], root / f"{dataset}_controls.csv")


def release_metadata(config: SynthConfig, layout: pd.DataFrame, release: str) -> pd.DataFrame:
    """metadata.csv of RxRx1 v1.0 / WILDS: a row per site. WILDS validates on whole
    experiments: here the last training experiment of each cell type (when there are two)."""
    rows = []
    for well in layout.sort_values("id_code").itertuples(index=False):
        dataset = well.dataset
        if release == LAYOUT_WILDS and dataset == "train" and config.train_experiments > 1 \
                and well.experiment.endswith(f"-{config.train_experiments:02d}"):
            dataset = "val"
        name = "EMPTY" if well.sirna == NEGATIVE_CONTROL_SIRNA else f"s{20000 + well.sirna}"
        for site in (1, 2):
            rows.append({"site_id": f"{well.id_code}_{site}", "well_id": well.id_code,
                         "cell_type": well.experiment.split("-")[0], "dataset": dataset,
                         "experiment": well.experiment, "plate": well.plate, "well": well.well,
                         "site": site, "well_type": well.well_type, "sirna": name,
                         "sirna_id": well.sirna})
    return pd.DataFrame(rows)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, fsync=False) as tmp:
        frame.to_csv(tmp, index=False)


@dataclass
class _Effects:
    """Multiplicative per-channel gains and geometry that shape one site's rendering."""

    channel_gain: np.ndarray = field(default_factory=lambda: np.ones(6, np.float32))
    nucleus_scale: float = 1.0
    elongation: float = 1.0
    background: np.ndarray = field(default_factory=lambda: np.zeros(6, np.float32))


def class_effects(seed: int, sirna: int, signal: float) -> _Effects:
    """The class signal: the same for a siRNA in every experiment (controls included)."""
    if sirna == NEGATIVE_CONTROL_SIRNA:
        return _Effects()
    strength = signal * (2.0 if sirna in POSITIVE_CONTROL_SIRNAS else 1.0)
    rng = np.random.default_rng(_stable_seed(seed, "class", sirna))
    return _Effects(channel_gain=np.exp(rng.normal(0, 0.45 * strength, 6)).astype(np.float32),
                    nucleus_scale=float(np.exp(rng.normal(0, 0.18 * strength))),
                    elongation=float(1 + min(abs(rng.normal(0, 0.3 * strength)), 0.6)))


def experiment_effects(seed: int, experiment: str, plate: int) -> _Effects:
    """Batch effects: per-experiment channel gains/background, a small per-plate gain."""
    rng = np.random.default_rng(_stable_seed(seed, "experiment", experiment))
    gain = np.exp(rng.normal(0, 0.25, 6))
    background = rng.uniform(0, 3, 6)
    plate_rng = np.random.default_rng(_stable_seed(seed, "plate", experiment, plate))
    gain *= np.exp(plate_rng.normal(0, 0.05, 6))
    return _Effects(channel_gain=gain.astype(np.float32), background=background.astype(np.float32),
                    nucleus_scale=float(np.exp(rng.normal(0, 0.08))))


class SiteRenderer:
    """Renders (S, S, 6) uint8 sites; holds per-process noise and texture tiles."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.scale = size / RAW_IMAGE_SIZE
        rng = np.random.default_rng(_stable_seed(seed, "tiles", size))
        self.noise = rng.poisson(1.2, (6, size + size // 2, size + size // 2)).astype(np.float32)
        texture = rng.random((2 * size, 2 * size), dtype=np.float32)
        # Box-blur the texture a little so it looks granular rather than like pixel noise.
        texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)
                   + np.roll(texture, (1, 1), (0, 1))) / 4
        self.texture = (texture - texture.min()) / (texture.max() - texture.min())
        self.peak = np.array([0.6 * RGB_MAP[c]["range"][1] for c in CHANNELS], np.float32)

    def render(self, rng: np.random.Generator, cell_type: str, cls: _Effects, exp: _Effects) -> np.ndarray:
        """One site -> (S, S, 6) uint8."""
        return self.render_channels(rng, cell_type, cls, exp).transpose(1, 2, 0)

    def render_channels(self, rng: np.random.Generator, cell_type: str, cls: _Effects,
                        exp: _Effects) -> np.ndarray:
        """One site -> (6, S, S) uint8, channel-major so each PNG is written from a contiguous plane."""
        size, scale = self.size, self.scale
        nucleus_r, cell_r, elong = CELL_GEOMETRY[cell_type]
        nucleus_r *= scale * cls.nucleus_scale * exp.nucleus_scale
        cell_r *= scale
        elong *= cls.elongation
        half = int(np.ceil(cell_r * elong * 1.1)) + 1
        canvas = np.zeros((6, size + 2 * half, size + 2 * half), np.float32)
        n_cells = max(1, rng.poisson(40 * (size / RAW_IMAGE_SIZE) ** 2 * (26 * scale / max(cell_r, 1)) ** 2 / 1.3))
        centres = rng.integers(0, size, (n_cells, 2))
        stamps = self._stamps(rng, n_cells, half, nucleus_r, cell_r, elong)
        for (y, x), stamp in zip(centres, stamps):
            canvas[:, y:y + 2 * half + 1, x:x + 2 * half + 1] += stamp
        body = canvas[:, half:half + size, half:half + size]
        oy, ox = rng.integers(0, size // 2, 2)
        noise = self.noise[:, oy:oy + size, ox:ox + size]
        gain = (cls.channel_gain * exp.channel_gain * self.peak)[:, None, None]
        image = gain * body
        image += noise
        image += exp.background[:, None, None]
        np.clip(image, 0, 255, out=image)
        return image.astype(np.uint8)

    def _stamps(self, rng, n, half, nucleus_r, cell_r, elong) -> np.ndarray:
        """(n, 6, 2h+1, 2h+1) float32 stamps of n cells with random pose and brightness."""
        span = 2 * half + 1
        grid = np.arange(-half, half + 1, dtype=np.float32)
        angle = rng.uniform(0, np.pi, n).astype(np.float32)[:, None, None]
        cos, sin = np.cos(angle), np.sin(angle)
        yy, xx = grid[None, :, None], grid[None, None, :]
        along = (xx * cos + yy * sin) * (1 / elong)
        across = -xx * sin + yy * cos
        r = np.sqrt(along * along + across * across)
        nucleus = np.clip((nucleus_r + 0.75 - r) * (1 / 1.5), 0, 1)
        cell = np.clip((cell_r + 1.0 - r) * 0.5, 0, 1)
        rim = np.minimum(r * (1 / cell_r), 1)
        rim **= 4
        rim *= cell
        cyto = cell - nucleus
        ty, tx = rng.integers(0, self.size, 2)
        tex = self.texture[ty:ty + span, tx:tx + span][None]
        golgi_at = nucleus_r * 1.3
        along -= golgi_at * cos / elong
        across -= golgi_at * sin
        golgi = np.maximum(1 - (along * along + across * across) * (1 / (0.8 * nucleus_r) ** 2), 0)
        golgi *= golgi
        bright = np.exp(rng.normal(0, 0.2, (6, n, 1, 1))).astype(np.float32)
        out = np.empty((n, 6, span, span), np.float32)
        out[:, 0] = nucleus * (0.75 + 0.25 * tex) * bright[0]              # Hoechst: nuclei
        out[:, 1] = cyto * (0.8 - (0.5 / cell_r) * r) * bright[1]          # ConA: perinuclear ER
        out[:, 2] = (0.35 * tex * cyto + 0.8 * rim) * bright[2]            # Phalloidin: cortex
        out[:, 3] = (1.5 * tex ** 3 * nucleus + 0.15 * cyto) * bright[3]   # Syto14: nucleoli, RNA
        out[:, 4] = cyto * (tex * tex) * bright[4]                         # MitoTracker: granules
        out[:, 5] = (0.7 * golgi + 0.2 * rim) * bright[5]                  # WGA: Golgi, membrane
        return out


def site_rng(seed: int, key: SiteKey) -> np.random.Generator:
    return np.random.default_rng(_stable_seed(seed, "site", key.sample_id))


def generate(config: SynthConfig, root: str | os.PathLike,
             progress: Callable[[int], None] | None = None, release: str = LAYOUT_KAGGLE) -> pd.DataFrame:
    """Write the whole data set under `root` in the file layout of `release`; returns the well
    layout. Existing PNGs are overwritten. The pixels are the same in every layout (WILDS
    stores their rxrx1-utils composite)."""
    config.validate()
    if release not in LAYOUTS:
        raise UserError(f"unknown layout {release!r}: expected one of {', '.join(LAYOUTS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    layout = plate_layout(config)
    renderer = SiteRenderer(config.image_size, config.seed)
    for well in layout.itertuples(index=False):
        cls = class_effects(config.seed, well.sirna, config.signal)
        exp = experiment_effects(config.seed, well.experiment, well.plate)
        for site in (1, 2):
            key = SiteKey(well.dataset, well.experiment, well.plate, well.well, site)
            planes = renderer.render_channels(site_rng(config.seed, key), well.experiment.split("-")[0],
                                              cls, exp)
            if release == LAYOUT_WILDS:
                planes, channels = [convert_tensor_to_rgb(np.stack(planes, axis=-1))], [None]
            else:
                channels = CHANNELS
            for plane, channel in zip(planes, channels):
                path = site_channel_path(root, key, channel, release)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_png8(path, plane)
            if progress:
                progress(1)
    write_metadata(config, root, layout, release)
    return layout
