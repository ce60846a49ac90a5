"""The device table: where a configuration's steps run, as a typed record.

A device's name is what results.json and the key of a configuration carry; what the code
branches on (the TensorFlow device type a run needs, whether a run hides the GPUs, whether XLA's
auto-clustering must be told to compile for it, whether a label names it) is a field of its
record, looked up by `device_named`. No other module compares a device's name.
"""
from __future__ import annotations

from dataclasses import dataclass

from plumbing.tables import record_named


@dataclass(frozen=True)
class Device:
    name: str
    tf_type: str                   # TensorFlow's physical device type, which must be visible to run
    # CUDA_VISIBLE_DEVICES=-1 before TensorFlow starts: a CPU run on a GPU machine stays on the CPU
    hides_gpus: bool
    # Session auto-clustering compiles nothing for this device unless told (--tf_xla_cpu_global_jit)
    xla_needs_global_jit: bool
    default: bool = False          # a scenario's label names only a device other than the default

    @property
    def label_suffix(self) -> str:
        """What a scenario label adds for this device: "" for the default, " on GPU" else."""
        return "" if self.default else f" on {self.tf_type}"


CPU = Device("cpu", "CPU", hides_gpus=True, xla_needs_global_jit=True, default=True)
GPU = Device("gpu", "GPU", hides_gpus=False, xla_needs_global_jit=False)

DEVICES: dict[str, Device] = {d.name: d for d in (CPU, GPU)}


def device_named(name: str) -> Device:
    """The record of device `name`; a user error naming the choices for an unknown one."""
    return record_named(DEVICES, name, "device")
