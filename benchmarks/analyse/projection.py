"""The verdict's ResNet50 training rows projected onto published GPUs: each side's host time
per step, measured for that model by its accounting (`benchmarks.measure.accounting`), against
the GPU's published time for the batch, combined as the mode overlaps them, plus the feed_dict
copy where a feed mode puts it on the critical path."""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from benchmarks.analyse.records import ConfigSummary
from benchmarks.analyse.stats import ratio_interval
from benchmarks.analyse.verdict import ROWS, Row, row_pairs
from benchmarks.config import BenchConfig
from benchmarks.modes import Feed, mode_named
from benchmarks.parts import PROFILER
from model_contract.image_models import RESNET50

# Published ResNet50 training rates (images/s of whole training steps at 224 px): NVIDIA
# DeepLearningExamples TF1 ResNet50 (V100 fp32, A100 AMP), tf_cnn_benchmarks (P100 fp32).
PUBLISHED_GPUS = (("P100, fp32 (tf_cnn_benchmarks)", 219.0), ("V100, fp32 (NVIDIA DeepLearningExamples, TF1)", 412.0),
                  ("A100, AMP (NVIDIA DeepLearningExamples, TF1)", 2375.0))
PROJECTION_BATCHES = (32, 256)
PROJECTED_SIZE = 224          # px: the published rates' images
PCIE_BYTES_PER_S = 12e9       # host -> GPU copy, PCIe 3.0 x16 as achieved (of 15.75 GB/s peak)
# Not host time: what runs in TensorFlow's runtime (on a GPU machine the device's work), the
# profiler's own time and what no profiler attributed.
_NOT_HOST = ("ops", "waiting", PROFILER, "residual")


def host_ms(accounting: dict) -> float:
    """A side's host time per step (ms): its Python outside the runtime call, as profiled, less
    the profiler's own time."""
    return sum(ms for part, ms in accounting["parts_ms"].items() if part not in _NOT_HOST)


def feed_ms(batch: int) -> float:
    """The feed_dict copy of one batch of float32 224 px images and int32 labels (ms)."""
    return (batch * (PROJECTED_SIZE * PROJECTED_SIZE * 3 * 4 + 4)) / PCIE_BYTES_PER_S * 1000


def copy_ms(mode_name: str, batch: int) -> float:
    """The batch's host -> GPU copy on the mode's critical path (ms): a feed mode's feed_dict."""
    return feed_ms(batch) if mode_named(mode_name).feed is Feed.FEED_DICT else 0.0


def projected_step_ms(mode_name: str, host: float, device: float, batch: int) -> tuple[float, str]:
    """One step on the GPU (ms) and how its parts combine: max where the mode overlaps host
    and device, else their sum, with the feed_dict copy added for a feed mode."""
    mode = mode_named(mode_name)
    copy = copy_ms(mode_name, batch)
    if mode.overlaps_device:
        return max(host, device) + copy, "max(host, GPU)"
    return host + device + copy, "host + copy + GPU" if copy else "host + GPU"


def _projected(row: Row | BenchConfig) -> bool:
    """Whether a row (or a configuration) is ResNet50 training, the model the published rates are of."""
    return row.model == RESNET50.name and row.task_spec.updates


def projected_keys(configs: Iterable[BenchConfig]) -> set[str]:
    """The keys of both sides of every ResNet50 training row: profiled in every repeat."""
    return {c.key() for row in ROWS if _projected(row) for pair in row_pairs(row, configs) for c in pair}


def gpu_projection(rows: list[dict], configs: dict[str, ConfigSummary]) -> list[dict]:
    """Each verdict row of ResNet50 training whose two sides were profiled in common repeats,
    projected onto every published GPU at every projection batch: the geometric mean of the
    per-repeat projected ratios with a t interval over those repeats (`ratio_interval`)."""
    out = []
    for r in rows:
        fast, slow = configs[f"{r['fast']}/{r['group']}"], configs[f"{r['slow']}/{r['group']}"]
        common = sorted(set(fast.accounting_by_repeat) & set(slow.accounting_by_repeat), key=int)
        if not common or not _projected(fast.config):
            continue
        hosts = {side: [host_ms(e.accounting_by_repeat[k]) for k in common] for side, e in (("fast", fast),
                                                                                             ("slow", slow))}
        for gpu, rate in PUBLISHED_GPUS:
            for batch in PROJECTION_BATCHES:
                device = batch / rate * 1000
                steps = {side: [projected_step_ms(r[side], h, device, batch) for h in hosts[side]]
                         for side in ("fast", "slow")}
                ratio = ratio_interval([s for s, _ in steps["fast"]], [s for s, _ in steps["slow"]])
                copy = max(copy_ms(r["fast"], batch), copy_ms(r["slow"], batch))
                out.append({"gpu": gpu, "batch": batch, "scenario": r["scenario"], "fast": r["fast"],
                            "slow": r["slow"], "host_fast_ms": float(np.median(hosts["fast"])),
                            "host_slow_ms": float(np.median(hosts["slow"])),
                            "inflation": {"fast": fast.accounting["inflation"],
                                          "slow": slow.accounting["inflation"]},
                            "device_ms": device, "copy_ms": copy,
                            "combine": f"{steps['fast'][0][1]} / {steps['slow'][0][1]}",
                            "ratio": ratio["ratio"], "lo": ratio["lo"], "hi": ratio["hi"], "repeats": len(common)})
    return out


def significant(x: float, digits: int = 2) -> str:
    """`x` to `digits` significant digits (the projection claims no more)."""
    if x == 0 or not math.isfinite(x):
        return f"{x}"
    return f"{x:.{max(digits - 1 - math.floor(math.log10(abs(x))), 0)}f}"
