"""Build HDF5 shards from RxRx1 PNGs: planned, parallel (processes), resumable.

A build plan assigns every (well, site) to a shard. Shard files carry a tag of the plan's
fingerprint in their names, so a build never overwrites the shards of the manifest already
in ``--out``: the new manifest replaces it only when every shard is written, and a failed
build leaves the previous one byte-identical. Finished shards are journalled in
``manifest.json.partial`` with their SHA-256; a rerun after a kill skips every journalled
shard whose file still verifies, deletes stale temporary files, and builds the rest.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import signal
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from data_pipeline.constants import (
    DEFAULT_IMAGE_SIZE,
    IMAGE_MODE_RGB,
    SHARD_SCHEMA_VERSION,
)
from data_pipeline.images import load_site, sample_channels, site_side, site_to_sample
from data_pipeline.layout import LAYOUT_WILDS, SiteKey, detect_layout
from data_pipeline.metadata import (
    LABELLED_POOL,
    class_names_for,
    encode_labels,
    read_sites,
    select,
    split_by_experiment,
    split_random,
)
from data_pipeline.shards import (
    MANIFEST_NAME,
    publish_manifest,
    sha256_file,
    tagged_name,
    write_shard,
)
from plumbing import locks
from plumbing.atomic import TMP_MARK, write_json
from plumbing.errors import UserError

JOURNAL_NAME = MANIFEST_NAME + ".partial"
# Test hooks: simulate a kill (SIGKILL, no clean-up) at a chosen point of a build.
KILL_AFTER_ENV = "DATA_PIPELINE_TEST_KILL_AFTER_SHARDS"
KILL_BEFORE_RENAME_ENV = "DATA_PIPELINE_TEST_KILL_BEFORE_RENAME"
# Splits of sites kept out of training and validation: their labels need not be in the class list.
HELD_OUT_SPLITS = ("test", "id_test")


@dataclass(frozen=True)
class ShardJob:
    """One shard to build: its file name, split and the samples it holds."""

    file: str
    split: str
    samples: tuple  # of (dataset, experiment, plate, well, site, id_code, label)


@dataclass
class BuildOptions:
    root: str
    out_dir: str
    image_mode: str = IMAGE_MODE_RGB
    image_size: int = DEFAULT_IMAGE_SIZE
    shard_size: int = 256
    workers: int = 1
    skip_bad: bool = False
    source: dict = field(default_factory=dict)
    raw_size: int | None = None    # every site's PNG side; a site of another size is refused
    layout: str | None = None      # of `root` (layout.LAYOUTS); detected from the files if None


def plan_shards(sites: pd.DataFrame, class_names: list[str], shard_size: int, seed: int = 0) -> list[ShardJob]:
    """Sites (one row per well and site, with a `split` column) -> shard jobs. Each split is
    stored in a seeded random order (a permutation of its id order), so neighbouring samples,
    and the blocks the reader shuffles, are random draws rather than neighbouring wells."""
    if shard_size < 1:
        raise UserError(f"shard size {shard_size} must be at least 1")
    test_rows = sites["split"].isin(HELD_OUT_SPLITS).to_numpy()
    encode_labels(sites[~test_rows], class_names)  # raises if a train/val class is not listed
    labels = encode_labels(sites, class_names, unknown_as_unlabelled=True)
    frame = sites.assign(label=labels).sort_values(["split", "id_code", "site"], kind="stable")
    jobs = []
    for split, part in frame.groupby("split", sort=True):
        rows = [(r.dataset, r.experiment, int(r.plate), r.well, int(r.site), r.id_code, int(r.label))
                for r in part.itertuples(index=False)]
        order = np.random.default_rng([seed, zlib.crc32(split.encode())]).permutation(len(rows))
        rows = [rows[i] for i in order]
        n_shards = -(-len(rows) // shard_size)
        for i in range(n_shards):
            jobs.append(ShardJob(f"{split}-{i:05d}-of-{n_shards:05d}.h5", split,
                                 tuple(rows[i * shard_size:(i + 1) * shard_size])))
    return jobs


def plan_fingerprint(jobs: list[ShardJob], options: BuildOptions, class_names: list[str]) -> str:
    """Hash of everything that determines the shards' content, to match a journal to a plan."""
    payload = json.dumps([[j.file, j.split, j.samples] for j in jobs] + [
        options.image_mode, options.image_size, class_names, SHARD_SCHEMA_VERSION,
        str(Path(options.root).resolve()), options.skip_bad, options.layout])
    return hashlib.sha256(payload.encode()).hexdigest()


def build_one_shard(job: ShardJob, options: BuildOptions, class_names: list[str], tag: str = "") -> dict:
    """Load, convert and write one shard as `job.file` tagged with `tag`; returns its
    manifest record (runs in a worker)."""
    images, kept, skipped = [], [], []
    for sample in job.samples:
        dataset, experiment, plate, well, site, id_code, label = sample
        try:
            site_image = load_site(options.root, SiteKey(dataset, experiment, plate, well, site),
                                   options.raw_size, options.layout)
        except UserError as err:
            if not options.skip_bad:
                raise
            skipped.append({"sample_id": f"{id_code}_s{site}", "reason": err.message})
            continue
        images.append(site_to_sample(site_image, options.image_mode, options.image_size))
        kept.append(sample)
    name = tagged_name(job.file, tag) if tag else job.file
    record = {"file": name, "split": job.split, "count": len(kept), "skipped": skipped}
    if not kept:
        record["file"] = None
        return record
    attrs = {"image_mode": options.image_mode, "class_names": class_names, "split": job.split,
             "source": options.source}
    hook = _kill_self if os.environ.get(KILL_BEFORE_RENAME_ENV) else None
    record["sha256"] = write_shard(
        Path(options.out_dir) / name, np.stack(images), [s[6] for s in kept],
        [s[5] for s in kept], [s[4] for s in kept], attrs, before_rename=hook)
    return record


def _first_site_size(jobs: list[ShardJob], options: BuildOptions) -> int | None:
    """The side of the first readable site's PNGs: the size every other site must have
    (resampling one site of another resolution silently would mix two scales)."""
    for job in jobs:
        for dataset, experiment, plate, well, site, _id, _label in job.samples[:8]:
            try:
                return site_side(options.root, SiteKey(dataset, experiment, plate, well, site), options.layout)
            except UserError:
                continue
    return None


def _kill_self(_path=None) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _finished_records(out_dir: Path, fingerprint: str) -> dict[str, dict]:
    """Journalled (or previously manifested) shards of this plan whose files still verify."""
    found: dict[str, dict] = {}
    for name in (MANIFEST_NAME, JOURNAL_NAME):
        try:
            saved = json.loads((out_dir / name).read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if saved.get("plan_fingerprint") != fingerprint:
            continue
        for record in saved.get("jobs", []):
            if record["file"] is None or _file_matches(out_dir / record["file"], record["sha256"]):
                found[record["job"]] = record
    return found


def _file_matches(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def _remove_stale_temporaries(out_dir: Path) -> None:
    for stale in out_dir.glob(f"*{TMP_MARK}*"):
        stale.unlink(missing_ok=True)


@contextlib.contextmanager
def _single_threaded_blas():
    """Workers inherit this environment: one BLAS thread each, as the processes already
    fill the cores (two 2-thread BLAS pools on 2 cores ran ~30% slower)."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build_shards(jobs: list[ShardJob], class_names: list[str], options: BuildOptions,
                 progress: Callable[[int], None] | None = None) -> dict:
    """Build every job not already finished; write and return the manifest."""
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with locks.hold(out_dir, locks.command_name()):  # one build into a folder at a time
        return _build_locked(jobs, class_names, options, out_dir, progress)


def _build_locked(jobs: list[ShardJob], class_names: list[str], options: BuildOptions, out_dir: Path,
                  progress: Callable[[int], None] | None) -> dict:
    _remove_stale_temporaries(out_dir)
    if options.layout is None:
        options = replace(options, layout=detect_layout(options.root))
    fingerprint = plan_fingerprint(jobs, options, class_names)
    done = _finished_records(out_dir, fingerprint)
    todo = [job for job in jobs if job.file not in done]
    if options.raw_size is None and todo:
        options = replace(options, raw_size=_first_site_size(todo, options))
    if progress:
        progress(sum(len(job.samples) for job in jobs if job.file in done))
    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)

    def commit(job: ShardJob, record: dict) -> None:
        done[job.file] = dict(record, job=job.file)
        write_json(out_dir / JOURNAL_NAME, {"plan_fingerprint": fingerprint, "jobs": list(done.values())})
        if progress:
            progress(len(job.samples))
        if kill_after and len(done) >= kill_after:
            _kill_self()

    if options.workers <= 1:
        for job in todo:
            commit(job, build_one_shard(job, options, class_names, fingerprint))
    else:
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold TF threads
        with _single_threaded_blas(), ProcessPoolExecutor(options.workers, mp_context=context) as pool:
            futures = {pool.submit(build_one_shard, job, options, class_names, fingerprint): job for job in todo}
            for future in as_completed(futures):
                commit(futures[future], future.result())
    manifest = make_manifest(jobs, done, class_names, options, fingerprint)
    publish_manifest(out_dir, manifest)
    (out_dir / JOURNAL_NAME).unlink(missing_ok=True)
    manifest["resumed_shards"] = len(jobs) - len(todo)
    return manifest


def make_manifest(jobs, done, class_names, options: BuildOptions, fingerprint: str) -> dict:
    records = [done[job.file] for job in jobs]
    channels = sample_channels(options.image_mode)
    shards = [{k: r[k] for k in ("file", "split", "count", "sha256")} for r in records if r["file"]]
    splits: dict[str, int] = {}
    for shard in shards:
        splits[shard["split"]] = splits.get(shard["split"], 0) + shard["count"]
    return {
        "schema_version": SHARD_SCHEMA_VERSION,
        "image_mode": options.image_mode,
        "image_shape": [options.image_size, options.image_size, channels],
        "dtype": "uint8",
        "class_names": class_names,
        "splits": splits,
        "shards": shards,
        "skipped": [s for r in records for s in r["skipped"]],
        "source": options.source,
        "plan_fingerprint": fingerprint,
        "jobs": records,
    }


def select_sites(root: str | os.PathLike, *, cell_types=None, experiments=None,
                 include_controls: bool = False, include_test: bool = False,
                 val_fraction: float = 0.2, val_experiments=None, seed: int = 0,
                 official_split: bool = False, layout: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Metadata of any known layout (`layout`, detected if None) -> one row per site with a
    `split` column, and the class list of the selection. The labelled pool (Kaggle and RxRx1
    v1.0 "train"; WILDS "train" and "val") is split at random per well or by
    `val_experiments`; `official_split` keeps WILDS's own train / val / test / id_test instead."""
    frame, layout = read_sites(root, layout)
    pool = LABELLED_POOL[layout]
    if official_split:
        return _official_split(frame, layout, cell_types=cell_types, experiments=experiments,
                               include_controls=include_controls, include_test=include_test,
                               val_experiments=val_experiments)
    datasets = pool + ("test",) if include_test else pool
    chosen = select(frame, cell_types=cell_types, experiments=experiments, datasets=datasets,
                    include_controls=include_controls)
    train_part = chosen[chosen["dataset"].isin(pool)]
    classes = _training_classes(train_part)
    split = (split_by_experiment(train_part, val_experiments) if val_experiments
             else split_random(train_part, val_fraction, seed))
    chosen = chosen.assign(split="test")
    chosen.loc[train_part.index, "split"] = split
    return chosen.drop(columns=["official_split"], errors="ignore"), classes


def _training_classes(train_part: pd.DataFrame) -> list[str]:
    """The class list of the rows a model trains on; UserError if there are none."""
    if train_part.empty:
        raise UserError("the selection has no training rows")
    return class_names_for(train_part)


def _official_split(frame: pd.DataFrame, layout: str, *, cell_types, experiments, include_controls,
                    include_test, val_experiments) -> tuple[pd.DataFrame, list[str]]:
    if layout != LAYOUT_WILDS:
        raise UserError(f"--official-split: only the WILDS layout has an official split; this root "
                        f"is in the {layout} layout")
    if val_experiments:
        raise UserError("--official-split: the official split fixes the validation experiments; "
                        "drop --val-experiments")
    chosen = select(frame, cell_types=cell_types, experiments=experiments,
                    datasets=("train", "val", "test"), include_controls=include_controls)
    chosen = chosen.assign(split=chosen.pop("official_split"))
    if not include_test:
        chosen = chosen[~chosen["split"].isin(HELD_OUT_SPLITS)].reset_index(drop=True)
    return chosen, _training_classes(chosen[chosen["split"] == "train"])
