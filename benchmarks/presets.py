"""The presets: named lists of configurations (`preset`) and the overrides the command line
applies to them."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from benchmarks.config import BenchConfig
from benchmarks.devices import GPU
from benchmarks.modes import (
    EAGER,
    GRAPH,
    GRAPH_FEED,
    GRAPH_FUSED_BN,
    GRAPH_REPLICATED,
    KERAS_CALL,
    KERAS_CTL,
    KERAS_FIT,
    KERAS_FIT_SPE,
    KERAS_PREDICT,
    KERAS_TOB,
    MODES,
    TFKERAS_FIT,
    TFKERAS_V1,
    Mode,
)
from benchmarks.sources import NUMPY, PIPELINE
from benchmarks.tasks import EVALUATE, GRADIENTS, INFERENCE, TRAIN
from plumbing.tables import record_named

GRAPH_MODES = tuple(m for m in MODES.values() if m.is_graph)


def _sweep(modes: tuple[Mode, ...], batches, **common) -> list[BenchConfig]:
    return [BenchConfig(mode=m.name, batch=b, **common) for b in batches for m in modes]


def _full(manifest: str | None) -> list[BenchConfig]:
    """The image models at 224x224: ResNet50 in every graph mode, fit, the custom loop and eager
    at batches 8-64, the VGG16 transfer model and its head in batch sweeps, one image per call in
    every per-call mode."""
    ladder = (EAGER, KERAS_CTL, GRAPH, GRAPH_FEED, KERAS_FIT)
    configs = _sweep(GRAPH_MODES + (KERAS_FIT, KERAS_CTL, EAGER), (8, 16, 32, 64), model="resnet50", steps=8)
    configs += _sweep((GRAPH, KERAS_FIT), (32,), model="resnet50", task=INFERENCE.name, steps=8)
    configs += _sweep((GRAPH, GRAPH_FEED, KERAS_FIT, KERAS_CTL), (8, 32), model="vgg16_transfer", steps=6)
    configs += _sweep(ladder, (1, 8, 32, 128, 512), model="vgg16_head", steps=50, warmup=3)
    configs += _sweep((GRAPH, KERAS_FIT, KERAS_CTL), (32,), model="resnet50", precision="mixed_bfloat16", steps=8)
    for model in ("vgg16_head", "resnet50"):  # one image per call, in every way of calling
        configs += _sweep(PER_CALL_MODES + (KERAS_CALL,), (1,), model=model, task=INFERENCE.name, data=NUMPY.name,
                          steps=10, warmup=3)
    if manifest:
        configs += _sweep((GRAPH, KERAS_FIT), (32,), model="resnet50", steps=8, data=PIPELINE.name, manifest=manifest)
    return configs


def _gpu(manifest: str | None) -> list[BenchConfig]:
    """224x224, batches to 256, XLA and mixed precision, and ResNet50's scaling over 1, 2, 4 and
    8 GPUs at 64 images per GPU."""
    configs = []
    for xla, precision in ((False, "fp32"), (True, "mixed_float16")):
        configs += _sweep((GRAPH, GRAPH_FUSED_BN, KERAS_FIT, KERAS_CTL), (32, 64, 128, 256),
                          model="resnet50", device=GPU.name, xla=xla, precision=precision, steps=50, warmup=5)
    configs += _sweep((GRAPH, KERAS_FIT, KERAS_CTL, EAGER), (8, 64, 512), model="vgg16_head",
                      device=GPU.name, steps=100, warmup=5)
    if manifest:
        configs += _sweep((GRAPH, KERAS_FIT), (128,), model="resnet50", device=GPU.name, steps=50, warmup=5,
                          data=PIPELINE.name, manifest=manifest)
    return configs + scaling_configs((1, 2, 4, 8), (), 64, model="resnet50", device=GPU.name, steps=50, warmup=5)


def _scaling(manifest: str | None) -> list[BenchConfig]:
    """The VGG16 head on 1 and 2 devices and 2 localhost workers (on a machine without GPUs the
    devices are logical CPU devices sharing its cores: the figures show the code paths work, not
    speed)."""
    return scaling_configs((1, 2), (2,), 32, model="vgg16_head", steps=30, warmup=5)


@dataclass(frozen=True)
class Preset:
    name: str
    help: str                                        # one phrase for the command line
    configs: Callable[[str | None], list[BenchConfig]]  # manifest (or None) -> configurations
    repeats: int = 3
    # May add interleaved repeats for imprecise comparisons while the whole run stays within
    # this many seconds (None: no extra repeats).
    budget_s: float | None = None


def preset(name: str, manifest: str | None = None) -> tuple[list, int]:
    """(configurations, repeats) of the preset named `name` (`PRESETS`)."""
    chosen = record_named(PRESETS, name, "preset")
    return chosen.configs(manifest), chosen.repeats


def scaling_configs(devices: tuple, workers: tuple, per_replica: int, **common) -> list[BenchConfig]:
    """Training at `per_replica` images per device or worker on each count of `devices` and of
    localhost `workers`, in every replica mode (graph-replicated from two devices on), the global
    batch growing with the count."""
    configs = []
    for n in devices:
        modes = (GRAPH, GRAPH_REPLICATED, KERAS_FIT) if n > 1 else (GRAPH, KERAS_FIT)
        configs += [BenchConfig(mode=m.name, batch=per_replica * n, devices=n, **common) for m in modes]
    for n in workers:
        configs += [BenchConfig(mode=m.name, batch=per_replica * n, workers=n, **common) for m in (GRAPH, KERAS_FIT)]
    return configs


# The modes of the map's rows on the small models: the MLP's feed_dict loop against fit (its
# line a + b x batch on both sides, 4 batches), fit with steps_per_execution and Keras 2's two
# fits (the rows' batch only), and the trivial model's.
MLP_LINE_MODES = (GRAPH_FEED, KERAS_FIT)
MLP_ROW_MODES = (KERAS_FIT_SPE, TFKERAS_FIT, TFKERAS_V1)
TRIVIAL_MODES = (GRAPH_FEED, KERAS_FIT)
PER_CALL_MODES = (GRAPH_FEED, KERAS_PREDICT, KERAS_TOB)


# The MNIST-style models' epoch over X_train: MNIST-sized (60,000 samples) and a power of two, so
# that at every batch up to 2,048 an epoch is a whole number of fit's executions of 32 steps and
# every mode of a comparison walks the same whole epochs (`BenchConfig.whole_passes`).
MNIST_SIZED_EPOCH = 65_536
# The VGG16 head's arrays of cached features (P3.33) and the split it is evaluated on: 10 batches of 32.
HEAD_ARRAYS = 320


def _small(modes, batches, steps: int = 40, warmup: int = 10, **common) -> list[BenchConfig]:
    """Small-model configurations on in-memory arrays; fit's executions of 32 steps are fewer."""
    configs = []
    for config in _sweep(modes, batches, data=NUMPY.name, steps=steps, warmup=warmup, **common):
        configs.append(replace(config, steps=8, warmup=2) if config.spec is KERAS_FIT_SPE else config)
    return [c.in_whole_passes() for c in configs]


def quick_configs(manifest: str | None = None) -> list[BenchConfig]:
    """The verdict map on this 2-core CPU within the demo's budget: compute-bound training
    (ResNet50 64 px from `manifest`'s shards, or from one in-memory batch without them), ResNet50
    trained from numpy arrays, the VGG16 head's fixed cost split into dispatch and update, trained
    from numpy arrays and evaluated over them, the textbook's one-image-per-call loops, the
    overhead regime (MLP at batch 1-1,024, trivial model at 1) in the modes of the map's rows, the
    origin model of the 2.5x figure, and an A/A control (the head's graph step in a second process).
    Every fitted family has 4 batch sizes, so the line's lack of fit can be tested."""
    resnet = dict(model="resnet50", image_size=64, steps=8)
    # compute-bound training streams `manifest`'s shards where given (the report's pipeline
    # headroom shows they outpace the step), else loops over one batch in memory: not both, as
    # ResNet50's builds and first steps take most of the preset's time on a CPU
    source = dict(data=PIPELINE.name, manifest=manifest) if manifest else {}
    configs = _sweep((GRAPH, KERAS_FIT), (16,), **source, **resnet)
    configs += _sweep((GRAPH_FEED, KERAS_FIT), (16,), data=NUMPY.name, **resnet)
    head = dict(model="vgg16_head", steps=20, warmup=3)
    for task in (TRAIN.name, EVALUATE.name):
        configs += [c.in_whole_passes() for c in _sweep((GRAPH_FEED, KERAS_FIT), (32,), task=task, data=NUMPY.name,
                                                         epoch_samples=HEAD_ARRAYS, **head)]
    configs += _sweep((GRAPH, KERAS_FIT, KERAS_CTL), (8, 32, 64, 128), **head)  # 4 batches: a fit to test
    configs += _sweep((GRAPH, KERAS_CTL), (8, 32, 64, 128), task=GRADIENTS.name, **head)
    configs += _sweep((EAGER,), (32,), **head)
    configs += _sweep((GRAPH,), (32,), control=True, **head)  # the A/A control of the fixed-cost row
    per_call = dict(task=INFERENCE.name, data=NUMPY.name)
    configs += _sweep(PER_CALL_MODES, (1,), steps=30, warmup=5, model="vgg16_head", **per_call)
    configs += _sweep(PER_CALL_MODES, (1,), steps=10, warmup=3, model="resnet50", image_size=64, **per_call)
    configs += _small(MLP_LINE_MODES, (1, 32, 256, 1024), model="mlp", epoch_samples=MNIST_SIZED_EPOCH)
    configs += _small(MLP_ROW_MODES, (32,), model="mlp", epoch_samples=MNIST_SIZED_EPOCH)
    configs += _small(TRIVIAL_MODES, (1,), model="trivial", epoch_samples=MNIST_SIZED_EPOCH)
    origin = dict(model="embedding", optimizer="sgd", steps=12, warmup=3)  # steps of 0.03-0.6 s
    configs += _small((GRAPH_FEED, KERAS_FIT, KERAS_CTL, TFKERAS_FIT, TFKERAS_V1), (32,), **origin)
    # the update's cost on each side of the rows: the step minus its gradients-only step
    configs += _small((GRAPH_FEED, KERAS_CTL), (32,), task=GRADIENTS.name, model="embedding", steps=12, warmup=3)
    return configs


def with_overrides(configs: list[BenchConfig], **overrides) -> list[BenchConfig]:
    """The preset's configurations with some fields replaced (e.g. steps for a tiny run)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return [replace(c, **overrides).in_whole_passes().validate() for c in configs]


PRESETS: dict[str, Preset] = {p.name: p for p in (
    # no extra repeat starts past 9 minutes; on a 2-core CPU the first stage alone takes longer
    # (11-30 min measured), so there the demo runs none
    Preset("quick", "this CPU: the verdict map (11-30 min on 2 cores)", quick_configs, budget_s=9 * 60.0),
    Preset("full", "the image models at 224 px, batch sweeps and per-call loops", _full),
    Preset("gpu", "224 px to batch 256, XLA, mixed, 1/2/4/8-GPU scaling", _gpu),
    Preset("scaling", "1-2 devices, 2 workers", _scaling),
)}
