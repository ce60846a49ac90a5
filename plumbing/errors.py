"""The error contract of every command: one exception type for user errors, the argparse
types that range-check flags, and the wrapper that turns an error into one line.

A wrong path, a corrupt file or a bad flag value ends a command with one line
``error: <file or flag>: <what>`` and exit status 2, never a bare traceback.
"""
from __future__ import annotations

import argparse
import collections
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence


class UserError(Exception):
    """Bad input named in one line: which file or value, and what is wrong with it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # keep it picklable across worker processes
        return (type(self), (self.message,))


# UserErrors raised where TensorFlow wraps them (inside `tf.numpy_function`, as an opaque
# UnknownError): recorded when raised, so the command can report the original one line.
_raised_in_tensorflow: collections.deque[UserError] = collections.deque(maxlen=32)


def record_for_tensorflow(err: UserError) -> UserError:
    """Remember `err` (raised in code TensorFlow calls) and return it, for `raise record_for_tensorflow(...)`."""
    _raised_in_tensorflow.append(err)
    return err


def user_error_behind(err: BaseException) -> UserError | None:
    """The recorded UserError whose message the (TensorFlow op) error `err` carries, or None."""
    text = str(err)
    return next((recorded for recorded in reversed(_raised_in_tensorflow) if recorded.message in text), None)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error line: ``error: --flag: what`` and exit status 2,
    without the usage block (``--help`` shows it). Sub-command parsers inherit it."""

    def error(self, message: str):
        print(f"error: {message.removeprefix('argument ')}", file=sys.stderr)
        sys.exit(2)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (epochs, batch size, steps, repeats)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (patience, warm-up steps)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (learning rate, min delta); NaN and inf are refused."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1) (a dropout rate)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


_EXIT_HOOKS: list[Callable[[], None]] = []


def at_exit(hook: Callable[[], None]) -> None:
    """Run `hook` in `exit_process`, before the process ends (also on its fast exit)."""
    _EXIT_HOOKS.append(hook)


def exit_process(code: int) -> None:
    """End a command with `code`. After a failure in a process that runs TensorFlow, end it
    at once: input-pipeline threads blocked on a failed iterator can keep the interpreter
    from exiting. Every file is written atomically, so nothing is left half-written."""
    for hook in _EXIT_HOOKS:
        hook()
    sys.stdout.flush()
    sys.stderr.flush()
    if code != 0 and "tensorflow" in sys.modules:
        os._exit(code)
    sys.exit(code)


def command_listing(parser: argparse.ArgumentParser) -> str | None:
    """`parser`'s usage and its sub-commands with their help, as ``git`` prints them when given
    no command; None for a parser without sub-commands."""
    commands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not commands:
        return None
    rows = [(choice.dest, choice.help or "") for choice in commands[0]._choices_actions]
    width = max(len(name) for name, _ in rows)
    lines = [f"usage: {parser.prog} <command> [options]", "", parser.description or "", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in rows]
    lines += ["", f"'{parser.prog} <command> --help' shows a command's options."]
    return "\n".join(lines).replace("``", "")


def main_with_errors(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                     handle: Callable[[argparse.Namespace], None],
                     interrupted: str = "the last completed epoch's checkpoint is kept") -> int:
    """Parse, run, and turn a UserError into one line and exit status 2. Without a command, a
    parser with sub-commands prints its usage and the list of commands (exit status 2)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    listing = command_listing(parser)
    if not argv and listing:
        print(listing)
        return 2
    args = parser.parse_args(argv)
    try:
        handle(args)
    except UserError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    except OSError as err:  # an output that cannot be written: unwritable, below a file, a folder
        if err.filename is None:
            return _defect()
        print(f"error: {err.filename}: {err.strerror or err}", file=sys.stderr)
        return 2
    except Exception as err:  # a UserError raised inside a tf.data pipeline arrives wrapped
        data_error = user_error_behind(err)
        if data_error is None:
            return _defect()
        print(f"error: {data_error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
    return 0


def _defect() -> int:
    """A failure that is not bad input (a defect): its traceback, and exit status 1, which
    `exit_process` turns into an immediate end of a TensorFlow process (its threads, e.g. a
    distribution strategy's, could otherwise keep it from exiting)."""
    traceback.print_exc()
    return 1
