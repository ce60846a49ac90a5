"""``python -m graph_api train | extract-features | predict | evaluate`` (TF1 Session)."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from api_runs import cli as model_cli
from api_runs.devices import PARAMETER_SERVER, VARIABLE_UPDATES
from api_runs.train_options import TrainOptions
from model_contract.batch_norm_modes import BN_MODES, KERAS_BN
from plumbing.errors import main_with_errors


def cmd_train(args) -> None:
    from graph_api.graph import GraphConfig  # late: imports TensorFlow once the flags are parsed
    from graph_api.trainer import train  # as GraphConfig
    devices, cluster = model_cli.placement(args)
    config = GraphConfig(model=args.model, precision=args.precision, bn_mode=args.bn_mode,
                         data_format=args.data_format, optimizer=args.optimizer,
                         learning_rate=args.learning_rate, feed=args.feed, seed=args.seed,
                         dropout=args.dropout, devices=devices, variable_update=args.variable_update)
    options = TrainOptions.from_args(args)
    model_cli.print_done(train(config, args.manifest, args.out, options, cluster), args.out, options.monitor)


def _train_arguments(p: argparse.ArgumentParser) -> None:
    from graph_api.graph import DATASET, FEEDS  # late: as GraphConfig (main has imported it)
    p.add_argument("--bn-mode", choices=tuple(BN_MODES), default=KERAS_BN.name)
    p.add_argument("--feed", choices=tuple(FEEDS), default=DATASET.name)
    p.add_argument("--data-format", choices=("NHWC", "NCHW"), default="NHWC")
    p.add_argument("--variable-update", choices=tuple(VARIABLE_UPDATES), default=PARAMETER_SERVER.name,
                   help="with --devices: one copy of the variables on the CPU, or a copy per device with "
                        "gradients all-reduced by collective ops")


def build_parser() -> argparse.ArgumentParser:
    return model_cli.api_parser("graph_api", __doc__.splitlines()[0], cmd_train, _train_arguments)


def main(argv: Sequence[str] | None = None) -> int:
    from graph_api.graph import hide_tf1_deprecation_notices  # imports TensorFlow, after __main__ set its log level
    hide_tf1_deprecation_notices()
    return main_with_errors(build_parser(), argv, lambda args: args.func(args))
