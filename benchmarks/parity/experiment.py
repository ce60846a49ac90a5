"""Training parity: do graph_api and keras_api reach the same results, or are Keras's worse?

Two experiments, each run through the real command lines (``python -m graph_api train``, on
the TF1 runtime, and ``python -m keras_api train``), one fresh process per run:

* **same start**: both APIs from one initial weights file (`--init-weights`, written here
  from Keras's initialisation), the same batch order (`--seed`), dropout off (masks cannot be
  shared across APIs). The per-epoch curves must agree within a stated tolerance: losses
  within ``tolerance x ln(classes)`` (the loss of a uniform guess), accuracies within
  ``max(tolerance, 2 / samples)``.
* **independent seeds**: N seeds per API, each with its own initialisation, dropout masks and
  order. Final validation accuracy and loss are compared with an equivalence test (TOST,
  Welch, alpha 0.05) against stated margins.

Results go to ``parity.json``, ``parity.md`` and ``parity.png`` in the output directory; the
benchmark report (`report.md`) includes the section when the file is there.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from api_runs.run_files import load_training_manifest
from benchmarks.analyse.stats import tost
from benchmarks.measure.runner import REPO, machine_info, worker_env
from benchmarks.present.parity import (
    FINAL_METRICS,
    GRAPH,
    KERAS,
    PARITY_JSON,
    parity_curves,
    parity_markdown,
)
from data_pipeline import num_batches
from data_pipeline.shards import split_records
from plumbing.atomic import atomic_write_bytes, write_json
from plumbing.errors import UserError
from plumbing.processes import Finished, default_jobs, run_side_by_side
from plumbing.progress import Progress

APIS = (GRAPH, KERAS)
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")


@dataclass
class ParityConfig:
    manifest: str
    out: str = "reports/latest"
    model: str = "vgg16_head"
    seeds: int = 5
    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 1e-4
    optimizer: str = "rmsprop"
    weights: str = "none"           # the VGG16 base of vgg16_transfer
    tolerance: float = 0.02         # same start: curves agree within this (see the module docstring)
    margin_accuracy: float = 0.05   # seeds: equivalent if the mean final val accuracies differ less
    margin_loss: float = 0.10       # ... and the mean final val losses (nats)
    alpha: float = 0.05
    jobs: int = field(default_factory=default_jobs)  # trainings at a time (they are not timed)


def _train_command(api: str, config: ParityConfig, out: Path, seed: int, extra: list[str]) -> list[str]:
    """One training run through the API's command line, writing `out`/history.json."""
    return [sys.executable, "-m", f"{api}_api", "train", "--model", config.model, "--manifest", config.manifest,
            "--out", str(out), "--epochs", str(config.epochs), "--batch-size", str(config.batch_size),
            "--learning-rate", str(config.learning_rate), "--optimizer", config.optimizer, "--seed", str(seed),
            "--weights", config.weights, "--no-resume", *extra]


def _trained(runs: list[tuple[str, int, Path, list[str]]], config: ParityConfig, env: dict) -> list[dict]:
    """The training runs (api, seed, out, extra arguments), `config.jobs` at a time -> each one's
    history, in order; the first that fails stops the others and is raised as one line."""
    bar = Progress(len(runs), "parity runs")

    def check(index: int, finished: Finished) -> None:
        if finished.returncode != 0:
            api, seed = runs[index][:2]
            lines = [line for line in finished.stderr.strip().splitlines() if line.strip()] or ["no output"]
            reason = lines[-1].removeprefix("error: ")
            raise UserError(reason if finished.returncode == 2 else
                            f"{api}_api train (seed {seed}) failed: {reason[:300]}")

    run_side_by_side([_train_command(api, config, out, seed, extra) for api, seed, out, extra in runs], config.jobs,
                     cwd=REPO, env=env, check=check, done=lambda index: bar(1))
    bar.close()
    return [json.loads((out / "history.json").read_text()) for _, _, out, _ in runs]


def _initial_weights(config: ParityConfig, manifest: dict, path: Path) -> Path:
    """Keras's initialisation of the model (seed 0, dropout off) as a .weights.h5 both APIs start from."""
    import keras  # late: the parent loads Keras only for the initial weights

    import keras_api  # as keras
    keras.utils.set_random_seed(0)
    model = keras_api.build_model(config.model, tuple(manifest["image_shape"]), len(manifest["class_names"]),
                                  weights=config.weights, dropout=0.0)
    return keras_api.save_model_atomic(model, path)


def curve_gaps(graph: dict, keras: dict, num_classes: int, samples: dict[str, int], tolerance: float) -> dict:
    """Per curve: the largest |graph - keras| over epochs, the tolerance it is held to, and whether it holds."""
    gaps = {}
    for key in CURVES:
        a, b = np.asarray(graph[key], float), np.asarray(keras[key], float)
        if a.size != b.size or a.size == 0:
            raise UserError(f"same-start runs have {a.size} and {b.size} epochs of {key}")
        bound = (tolerance * math.log(num_classes) if "loss" in key
                 else max(tolerance, 2.0 / samples["val" if key.startswith("val") else "train"]))
        worst = float(np.abs(a - b).max())
        gaps[key] = {"max_gap": worst, "tolerance": bound, "holds": worst <= bound}
    return gaps


def run_parity(config: ParityConfig) -> dict:
    """Both experiments -> the parity record (also written to `config.out`/parity.json)."""
    if config.seeds < 2:
        raise UserError(f"--seeds: the equivalence test needs at least 2 seeds per API, got {config.seeds}")
    manifest = load_training_manifest(config.manifest, config.model)
    out = Path(config.out)
    work = out / "parity-runs"
    work.mkdir(parents=True, exist_ok=True)
    classes = len(manifest["class_names"])
    samples = {"train": num_batches(manifest, "train", config.batch_size, True) * config.batch_size,
               "val": sum(record["count"] for record in split_records(manifest, "val"))}
    if samples["val"] == 0:
        raise UserError(f"{config.manifest}: no val split to compare the APIs on")
    env = worker_env()
    init = _initial_weights(config, manifest, work / "initial.weights.h5")
    same = [(api, 0, work / f"same-start-{api}", ["--init-weights", str(init), "--dropout", "0"]) for api in APIS]
    seeded = [(api, seed, work / f"seed{seed}-{api}", []) for seed in range(1, config.seeds + 1) for api in APIS]
    trained = _trained(same + seeded, config, env)
    histories = {"same_start": dict(zip(APIS, trained[:len(APIS)])),
                 "seeds": {api: [h for (run_api, *_), h in zip(seeded, trained[len(APIS):]) if run_api == api]
                           for api in APIS}}
    finals = {api: {m: [h[m][-1] for h in histories["seeds"][api]] for m in FINAL_METRICS} for api in APIS}
    margins = {"val_accuracy": config.margin_accuracy, "val_loss": config.margin_loss}
    record = {"config": asdict(config), "machine": machine_info(), "num_classes": classes, "samples": samples,
              "same_start": {"curves": histories["same_start"],
                             "gaps": curve_gaps(histories["same_start"][GRAPH], histories["same_start"][KERAS],
                                                classes, samples, config.tolerance)},
              "seeds": {"final": finals,
                        "tost": {m: tost(finals[GRAPH][m], finals[KERAS][m], margins[m], config.alpha)
                                 for m in FINAL_METRICS},
                        "curves": {api: [{k: h[k] for k in CURVES} for h in histories["seeds"][api]]
                                   for api in APIS}}}
    write_json(out / PARITY_JSON, record)
    return record


def write_parity_report(record: dict, out_dir: str | Path) -> Path:
    """parity.md and parity.png into `out_dir` -> parity.md's path."""
    out = Path(out_dir)
    parity_curves(record, out / "parity.png")
    path = out / "parity.md"
    atomic_write_bytes(path, "\n".join(["# Training parity of graph_api and keras_api", ""] +
                                       parity_markdown(record)[2:]).encode())
    return path
