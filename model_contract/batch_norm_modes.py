"""The batch-norm table: one record per way graph_api writes batch normalisation (`--bn-mode`).

A mode's name is what the command line, run files and the harness's modes carry; what the
graph builds for it (the fused kernels or the arithmetic written out, Keras's moving-average
rule or TF1's zero-debiased one) is a field of its record, looked up by `batch_norm_mode_named`.
Keras's own BatchNormalization is the rule the "keras" mode writes out.
"""
from __future__ import annotations

from dataclasses import dataclass

from plumbing.tables import record_named


@dataclass(frozen=True)
class BatchNormMode:
    name: str
    fused: bool           # `fused_batch_norm` kernels; else the normalisation written out op by op
    # TF1's `assign_moving_average(zero_debias=True)`: a biased accumulator from 0 and a step
    # counter; else Keras's `m <- m * momentum + batch * (1 - momentum)` from 0 and 1
    zero_debias: bool


KERAS_BN = BatchNormMode("keras", fused=False, zero_debias=False)
DEBIASED_BN = BatchNormMode("debiased", fused=False, zero_debias=True)
FUSED_BN = BatchNormMode("fused", fused=True, zero_debias=False)

BN_MODES: dict[str, BatchNormMode] = {m.name: m for m in (KERAS_BN, DEBIASED_BN, FUSED_BN)}


def batch_norm_mode_named(name: str) -> BatchNormMode:
    """The record of batch-norm mode `name`; a user error naming the choices for an unknown one."""
    return record_named(BN_MODES, name, "batch-norm mode")
