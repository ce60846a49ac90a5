"""``python -m graph_api train | extract-features | predict | evaluate`` (TF1 Session)."""
from __future__ import annotations

import argparse
from typing import Sequence

from data_pipeline import model_cli


def cmd_train(args) -> None:
    from .graph import GraphConfig
    from data_pipeline.train_options import TrainOptions
    from .trainer import train
    config = GraphConfig(model=args.model, precision=args.precision, bn_mode=args.bn_mode,
                         data_format=args.data_format, optimizer=args.optimizer,
                         learning_rate=args.learning_rate, feed=args.feed, seed=args.seed)
    options = TrainOptions.from_args(args)
    history = train(config, args.manifest, args.out, options)
    if history["val_accuracy"]:
        print(f"done: best {options.monitor} at epoch {history['early_stopping']['best_epoch'] + 1}; "
              f"curves in {args.out}/history.png")


def _predictor(run_dir: str):
    from .inference import Predictor
    return Predictor(run_dir)


def _extract():
    from .inference import extract_features
    return extract_features


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bn-mode", choices=("keras", "debiased", "fused"), default="keras")
    p.add_argument("--feed", choices=("dataset", "feed_dict"), default="dataset")
    p.add_argument("--data-format", choices=("NHWC", "NCHW"), default="NHWC")


def build_parser() -> argparse.ArgumentParser:
    commands = {"train": cmd_train, "extract-features": model_cli.extract_command(_extract),
                "predict": model_cli.predictor_command(_predictor, model_cli.run_predict),
                "evaluate": model_cli.predictor_command(_predictor, model_cli.run_evaluate)}
    return model_cli.build_parser("python -m graph_api", __doc__.splitlines()[0], commands, _train_arguments)


def main(argv: Sequence[str] | None = None) -> int:
    return model_cli.main_with_errors(build_parser(), argv, lambda args: args.func(args))
