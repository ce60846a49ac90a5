"""``python -m graph_api train | extract-features | predict | evaluate`` (TF1 Session)."""
from __future__ import annotations

import argparse
from typing import Sequence

from data_pipeline import model_cli


def cmd_train(args) -> None:
    from .graph import GraphConfig
    from .trainer import TrainOptions, train
    config = GraphConfig(model=args.model, precision=args.precision, bn_mode=args.bn_mode,
                         data_format=args.data_format, optimizer=args.optimizer,
                         learning_rate=args.learning_rate, feed=args.feed, seed=args.seed)
    options = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch,
                           patience=args.patience, min_delta=args.min_delta, resume=not args.no_resume,
                           weights=args.weights)
    history = train(config, args.manifest, args.out, options)
    if history["val_accuracy"]:
        print(f"done: best {options.monitor} at epoch {history['early_stopping']['best_epoch'] + 1}; "
              f"curves in {args.out}/history.png")


def cmd_extract(args) -> None:
    from .inference import extract_features
    manifest = extract_features(args.manifest, args.out, args.weights, args.batch_size)
    print(f"wrote {len(manifest['shards'])} feature shards {manifest['image_shape']} to {args.out}")


def _with_predictor(run):
    def command(args) -> None:
        from .inference import Predictor
        predictor = Predictor(args.run)
        try:
            run(args, predictor)
        finally:
            predictor.close()
    return command


cmd_predict = _with_predictor(model_cli.run_predict)
cmd_evaluate = _with_predictor(model_cli.run_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m graph_api", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model in a TF1 Session")
    model_cli.add_train_arguments(p)
    p.add_argument("--bn-mode", choices=("keras", "debiased", "fused"), default="keras")
    p.add_argument("--feed", choices=("dataset", "feed_dict"), default="dataset")
    p.add_argument("--data-format", choices=("NHWC", "NCHW"), default="NHWC")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("extract-features", help="frozen VGG16 base over shards -> 7x7x512 feature shards")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_extract)
    p = sub.add_parser("predict", help="top-k classes for one site or a split")
    model_cli.add_predict_arguments(p)
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("evaluate", help="accuracy on a split")
    model_cli.add_evaluate_arguments(p)
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return model_cli.main_with_errors(build_parser(), argv, lambda args: args.func(args))
