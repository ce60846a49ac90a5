"""The error contract of every command: one exception type for user errors, the argparse
types that range-check flags, and the wrapper that turns an error into one line.

A wrong path, a corrupt file or a bad flag value ends a command with one line
``error: <file or flag>: <what>`` and exit status 2, never a bare traceback.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, Sequence


class DataError(Exception):
    """Bad input named in one line: which file or value, and what is wrong with it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # keep it picklable across worker processes
        return (type(self), (self.message,))


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (epochs, batch size, steps, repeats)."""
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
