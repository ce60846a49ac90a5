"""Predict and evaluate with a trained run, the same for both APIs.

`PredictorBase` holds what both APIs' Predictors share (the run's classes, the input-shape
check, top-k names); `run_predict` and `run_evaluate` are the two commands' bodies.
"""
from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence

import numpy as np

from api_runs.run_files import load_run_config
from data_pipeline.images import as_model_input, load_site, site_to_sample
from data_pipeline.layout import SiteKey, detect_layout, parse_id_code
from data_pipeline.shards import load_manifest, read_split
from plumbing.atomic import atomic_write_bytes
from plumbing.errors import UserError


def softmax(logits: np.ndarray) -> np.ndarray:
    """(N, C) logits -> (N, C) float32 probabilities (shifted by the row maximum: no overflow)."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) sparse softmax cross-entropy in nats of (N, C) logits: the loss both APIs train
    with (`tf.nn.sparse_softmax_cross_entropy_with_logits`, Keras's from_logits=True)."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return log_norm - shifted[np.arange(len(labels)), labels]


def class_mismatch(manifest: dict, model_classes: list[str]) -> str:
    """The message for a manifest whose classes are not the model's: names the first difference."""
    theirs = manifest["class_names"]
    first = next((i for i, (a, b) in enumerate(zip(theirs, model_classes)) if a != b),
                 min(len(theirs), len(model_classes)))
    a = theirs[first] if first < len(theirs) else "(none)"
    b = model_classes[first] if first < len(model_classes) else "(none)"
    return (f"{manifest['_path']}: classes differ from the model's ({len(theirs)} vs {len(model_classes)}; "
            f"class {first} is {a} here, {b} in the model)")


class PredictorBase:
    """What both APIs' Predictors share: the run's classes, shape check, top-k names.

    A subclass sets ``self.run`` (run_config.json) and implements `_logits`; the softmax and
    the loss are computed here, once for both APIs, from the float32 logits.
    """

    run: dict

    def _load_run(self, run_dir, api: str) -> dict:
        """run_config.json of `run_dir`, refused if another API trained it."""
        self.run = load_run_config(run_dir)
        if self.run.get("api") != api:
            raise UserError(f"{run_dir}: trained with {self.run.get('api')}_api, not {api}_api; "
                            f"use python -m {self.run.get('api')}_api")
        return self.run

    def check_classes(self, manifest: dict) -> None:
        if manifest["class_names"] != self.run["class_names"]:
            raise UserError(class_mismatch(manifest, self.run["class_names"]))

    def logits_of(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, H, W, C) model input -> (N, classes) float32 logits."""
        if tuple(images.shape[1:]) != tuple(self.run["image_shape"]):
            raise UserError(f"input of shape {tuple(images.shape[1:])}, the model takes "
                            f"{tuple(self.run['image_shape'])}")
        return np.concatenate([np.asarray(self._logits(images[i:i + batch_size]), np.float32)
                               for i in range(0, len(images), batch_size)])

    def probabilities_of(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, H, W, C) model input -> (N, classes) softmax probabilities."""
        return softmax(self.logits_of(images, batch_size))

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def top_k(self, probabilities: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        order = np.argsort(-probabilities, axis=1)[:, :k]
        names = self.run["class_names"]
        return [[(names[j], float(p[j])) for j in row] for row, p in zip(order, probabilities)]

    def close(self) -> None:
        pass


def read_samples(manifest: dict, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All samples of a split -> (model input, labels, sample ids)."""
    data = read_split(manifest, split)
    ids = [f"{i.decode()}_s{s}" for i, s in zip(data["id_codes"], data["sites"])]
    return as_model_input(data["images"]), data["labels"], ids


def site_input(args, image_shape: Sequence[int], image_mode: str) -> np.ndarray:
    """One site from PNGs -> (1, H, W, C) model input, made as the shards were."""
    experiment, plate, well = parse_id_code(args.id_code)
    site = load_site(args.root, SiteKey(args.dataset, experiment, plate, well, args.site),
                     layout=detect_layout(args.root))
    return as_model_input(site_to_sample(site, image_mode, int(image_shape[0]))[None])


def predictions_csv(ids: list[str], top: list, labels: np.ndarray, class_names: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["sample_id", "true_class", "predicted_class", "probability", "top_k"])
    for sample, row, label in zip(ids, top, labels):
        truth = class_names[label] if label >= 0 else ""
        writer.writerow([sample, truth, row[0][0], f"{row[0][1]:.6f}",
                         ";".join(f"{n}:{p:.4f}" for n, p in row)])
    return buffer.getvalue().encode()


def run_predict(args, predictor) -> None:
    """predict: one site (prints top-k) or a split (CSV). `predictor` has the Predictor API."""
    run = predictor.run
    if args.id_code:
        if not args.root:
            raise UserError("--id-code needs --root")
        image_mode = run.get("image_mode", "rgb224")
        top = predictor.top_k(predictor.probabilities_of(site_input(args, run["image_shape"], image_mode)),
                              args.top_k)[0]
        for name, p in top:
            print(f"{name}\t{p:.4f}")
        return
    if not args.manifest:
        raise UserError("give --manifest (a split) or --root and --id-code (one site)")
    manifest = load_manifest(args.manifest)
    predictor.check_classes(manifest)
    images, labels, ids = read_samples(manifest, args.split)
    top = predictor.top_k(predictor.probabilities_of(images), args.top_k)
    data = predictions_csv(ids, top, labels, run["class_names"])
    if args.out:
        atomic_write_bytes(args.out, data)
        print(f"wrote {len(ids)} predictions to {args.out}")
    else:
        sys.stdout.write(data.decode())


def run_evaluate(args, predictor) -> float:
    manifest = load_manifest(args.manifest)
    predictor.check_classes(manifest)
    images, labels, _ = read_samples(manifest, args.split)
    if (labels < 0).all():
        raise UserError(f"{args.manifest}: split {args.split!r} has no labels to evaluate against")
    logits = predictor.logits_of(images)
    known = labels >= 0
    accuracy = float((logits.argmax(1)[known] == labels[known]).mean())
    loss = float(cross_entropy(logits[known], labels[known]).mean())
    print(f"{args.split}: {int(known.sum())} samples, accuracy {accuracy:.4f}, loss {loss:.4f}")
    return accuracy
