"""Both APIs' `train` refuse numbers that cannot describe a training run, before touching any file."""
import pytest

from graph_api.cli import build_parser as graph_parser
from keras_api.cli import build_parser as keras_parser

BASE = ["train", "--model", "vgg16_head", "--manifest", "m.json", "--out", "run"]


@pytest.mark.parametrize("make_parser", [graph_parser, keras_parser])
@pytest.mark.parametrize("flag, value", [("--learning-rate", "nan"), ("--learning-rate", "inf"),
                                         ("--learning-rate", "-1e-3"), ("--batch-size", "0"),
                                         ("--epochs", "-1"), ("--steps-per-epoch", "0"), ("--min-delta", "-1")])
def test_bad_training_numbers_are_refused_by_name(make_parser, flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        make_parser().parse_args(BASE + [flag, value])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {flag}: ")


@pytest.mark.parametrize("make_parser", [graph_parser, keras_parser])
def test_good_training_numbers_pass(make_parser):
    args = make_parser().parse_args(BASE + ["--learning-rate", "0", "--batch-size", "4", "--epochs", "2"])
    assert (args.learning_rate, args.batch_size, args.epochs) == (0.0, 4, 2)
