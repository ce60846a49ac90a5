"""The precision table both APIs build from: one record per precision policy.

A policy's name is what the command lines, run files and results carry; what each API makes
of it (the graph's compute dtype, Keras's dtype policy, whether the loss is scaled) is a field
of its record, looked up by `precision_named`. Variables and logits stay float32 under all.
"""
from __future__ import annotations

from dataclasses import dataclass

from plumbing.tables import record_named


@dataclass(frozen=True)
class Precision:
    name: str
    compute_dtype: str    # what matrix products and convolutions compute in (a tf.DType name)
    keras_policy: str     # `keras.mixed_precision` policy
    # float16's narrow exponent range: gradients go through a dynamic loss scale (Keras's
    # LossScaleOptimizer; the graph writes the same rule out)
    loss_scaled: bool = False


FP32 = Precision("fp32", "float32", "float32")
MIXED_BFLOAT16 = Precision("mixed_bfloat16", "bfloat16", "mixed_bfloat16")
MIXED_FLOAT16 = Precision("mixed_float16", "float16", "mixed_float16", loss_scaled=True)

PRECISIONS: dict[str, Precision] = {p.name: p for p in (FP32, MIXED_BFLOAT16, MIXED_FLOAT16)}


def precision_named(name: str) -> Precision:
    """The record of precision `name`; a user error naming the choices for an unknown one."""
    return record_named(PRECISIONS, name, "precision")
