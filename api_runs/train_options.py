"""Training-loop options both trainers take (same meaning in graph_api and keras_api)."""
from __future__ import annotations

import argparse
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from plumbing.errors import UserError

# Test hook: SIGKILL the training process (no clean-up, as the OOM killer or a power cut would)
# right after its Nth train step, counted from 1 in this process, so a test interrupts a run
# mid-epoch at a step it chose rather than at a moment it guessed.
KILL_AT_STEP_ENV = "API_RUNS_TEST_KILL_AT_STEP"


def step_done_hook():
    """A callable to call after every train step of this process: kills it at the step
    KILL_AT_STEP_ENV names; None when the variable is unset (the normal case)."""
    kill_at = int(os.environ.get(KILL_AT_STEP_ENV, "0") or 0)
    if kill_at < 1:
        return None
    done = 0

    def step_done() -> None:
        nonlocal done
        done += 1
        if done == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return step_done


@dataclass
class TrainOptions:
    epochs: int = 5
    batch_size: int = 32
    steps_per_epoch: int | None = None    # default: one pass over the train split
    patience: int | None = None           # early stopping off when None
    min_delta: float = 0.0
    monitor: str = "val_loss"
    restore_best: bool = True
    max_to_keep: int = 3
    resume: bool = True
    weights: str | None = "imagenet"      # VGG16 base: "imagenet" (Keras cache), a path, or "none"
    tensorboard: bool = True
    init_weights: str | None = None       # a Keras .weights.h5 of the same model to start from

    def __post_init__(self) -> None:
        # Checked before a trainer creates the run directory: nothing is written for a wrong path.
        if self.init_weights is not None and not Path(self.init_weights).is_file():
            raise UserError(f"{self.init_weights}: initial weights file not found")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainOptions:
        """From the flags of `api_runs.cli.add_train_arguments`."""
        return cls(epochs=args.epochs, batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch,
                   patience=args.patience, min_delta=args.min_delta, resume=not args.no_resume,
                   weights=args.weights, init_weights=args.init_weights)

