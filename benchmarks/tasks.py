"""The task table: what one step of a configuration computes, as a typed record.

A task's name is what results.json and the key of a configuration carry; everything the code
branches on (does the step run the backward pass, apply the update, score against labels, walk
passes over in-memory arrays) is a field of its record, looked up by `task_named`. No other
module compares a task's name: they read the record's fields.
"""
from __future__ import annotations

from dataclasses import dataclass

from plumbing.tables import record_named


@dataclass(frozen=True)
class Task:
    name: str
    backward: bool                 # computes the loss's gradients
    updates: bool                  # applies them: the optimizer's update, counted by its step counter
    scored: bool                   # the step's outputs are the loss and accuracy against labels (else logits)
    # Its passes over in-memory arrays, in words: (the passes, one pass), e.g. ("epochs", "epoch")
    # for fit; None: the task walks no passes (a sample never holds a pass's set-up).
    passes: tuple[str, str] | None = None
    # Its cost comes per pass whatever the data (an evaluation is a call over a split): a repeat
    # counts as its samples' total / steps (`BenchConfig.timed_per_pass`).
    per_pass: bool = False
    note: str | None = None        # why a mode that does not list it cannot time it

    @property
    def forward_only(self) -> bool:
        """One forward pass per step, as a prediction or an evaluation runs it."""
        return not self.backward


TRAIN = Task("train", backward=True, updates=True, scored=True, passes=("epochs", "epoch"))
# forward + backward, no update: its fixed cost against train's is the update's
GRADIENTS = Task("gradients", backward=True, updates=False, scored=True,
                 note="a gradients-only step needs a loop of our own (graph or custom loop)")
INFERENCE = Task("inference", backward=False, updates=False, scored=False)
# loss and accuracy batch by batch over a split (a Session.run loop vs model.evaluate)
EVALUATE = Task("evaluate", backward=False, updates=False, scored=True, passes=("a split", "pass"), per_pass=True,
                note="evaluation over a split is measured as a Session.run loop and model.evaluate")

TASKS: dict[str, Task] = {t.name: t for t in (TRAIN, GRADIENTS, INFERENCE, EVALUATE)}


def task_named(name: str) -> Task:
    """The record of task `name`; a user error naming the choices for an unknown one."""
    return record_named(TASKS, name, "task")
