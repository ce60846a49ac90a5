"""``python -m keras_api train | extract-features | predict | evaluate`` (Keras fit)."""
from __future__ import annotations

import argparse
from typing import Sequence

from data_pipeline import model_cli


def cmd_train(args) -> None:
    from data_pipeline.train_options import TrainOptions
    from .trainer import KerasConfig, train
    config = KerasConfig(model=args.model, precision=args.precision, optimizer=args.optimizer,
                         learning_rate=args.learning_rate, loss=args.loss, jit_compile=args.jit_compile,
                         seed=args.seed)
    history = train(config, args.manifest, args.out, TrainOptions.from_args(args))
    if history["val_accuracy"] and history["early_stopping"]["best_epoch"] is not None:
        print(f"done: best val_loss at epoch {history['early_stopping']['best_epoch'] + 1}; "
              f"curves in {args.out}/history.png")


def _predictor(run_dir: str):
    from .inference import Predictor
    return Predictor(run_dir)


def _extract():
    from .inference import extract_features
    return extract_features


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loss", choices=("sparse", "categorical"), default="sparse",
                   help="sparse labels, or one-hot labels with categorical cross-entropy (the textbook's)")
    p.add_argument("--jit-compile", action="store_true", help="XLA (Keras 3 turns it on only on GPUs)")


def build_parser() -> argparse.ArgumentParser:
    commands = {"train": cmd_train, "extract-features": model_cli.extract_command(_extract),
                "predict": model_cli.predictor_command(_predictor, model_cli.run_predict),
                "evaluate": model_cli.predictor_command(_predictor, model_cli.run_evaluate)}
    return model_cli.build_parser("python -m keras_api", __doc__.splitlines()[0], commands, _train_arguments)


def main(argv: Sequence[str] | None = None) -> int:
    return model_cli.main_with_errors(build_parser(), argv, lambda args: args.func(args))
