"""``python -m keras_api train | extract-features | predict | evaluate | from-graph`` (Keras fit)."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from api_runs import cli as model_cli
from api_runs.train_options import TrainOptions
from plumbing.errors import main_with_errors


def cmd_train(args) -> None:
    from keras_api.trainer import KerasConfig, train  # imports Keras: only once the flags are parsed
    devices, cluster = model_cli.placement(args)
    config = KerasConfig(model=args.model, precision=args.precision, optimizer=args.optimizer,
                         learning_rate=args.learning_rate, loss=args.loss, jit_compile=args.jit_compile,
                         seed=args.seed, dropout=args.dropout, devices=devices)
    options = TrainOptions.from_args(args)
    model_cli.print_done(train(config, args.manifest, args.out, options, cluster), args.out, options.monitor)


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loss", choices=("sparse", "categorical"), default="sparse",
                   help="sparse labels, or one-hot labels with categorical cross-entropy (the textbook's)")
    p.add_argument("--jit-compile", action="store_true", help="XLA (Keras 3 turns it on only on GPUs)")


def cmd_from_graph(args) -> None:
    from keras_api.weights import export_graph_run  # imports Keras, as cmd_train
    path = export_graph_run(args.run, args.out, args.checkpoint)
    print(f"wrote {path} from the {args.checkpoint} checkpoint of {args.run}")


def _from_graph_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run directory written by python -m graph_api train")
    p.add_argument("--out", required=True, help="model.keras (architecture + weights) or model.weights.h5")
    p.add_argument("--checkpoint", choices=("final", "best"), default="final",
                   help="final (the best epoch when early stopping restored it) or best")


def build_parser() -> argparse.ArgumentParser:
    extra = {"from-graph": ("a graph_api run -> a Keras .keras or .weights.h5", _from_graph_arguments,
                            cmd_from_graph)}
    return model_cli.api_parser("keras_api", __doc__.splitlines()[0], cmd_train, _train_arguments, extra)


def main(argv: Sequence[str] | None = None) -> int:
    return main_with_errors(build_parser(), argv, lambda args: args.func(args))
