"""Early stopping with Keras's semantics (monitor, patience, min_delta, restore best)."""
from __future__ import annotations


def improved(value: float, best: float | None, min_delta: float, mode: str) -> bool:
    """As keras.callbacks.EarlyStopping: better than best by more than min_delta."""
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def update(state: dict, value: float, epoch: int, patience: int | None, min_delta: float,
           mode: str) -> tuple[bool, bool]:
    """Record one epoch's monitored value; returns (is_new_best, should_stop)."""
    if improved(value, state["best"], min_delta, mode):
        state.update(best=value, best_epoch=epoch, wait=0)
        return True, False
    state["wait"] += 1
    stop = patience is not None and state["wait"] >= patience
    if stop:
        state["stopped_epoch"] = epoch
    return False, stop
