"""What one benchmark configuration is, which ones exist, and the presets that list them.

A configuration is everything that shapes a measurement. Two configurations are
*comparable* when they differ only in `mode`; the runner refuses to put a ratio on
anything else.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields, replace

from data_pipeline.errors import DataError

GRAPH_MODES = ("graph", "graph-feed", "graph-fused-bn", "graph-v2")
# Graph modes whose worker keeps TensorFlow 2 semantics: the `graph` mode's graph and Session,
# without `use_tf1_runtime` (resource variables, control flow v2), to measure what the TF1
# runtime itself changes.
TF2_RUNTIME_MODES = ("graph-v2",)
KERAS_MODES = ("keras-fit", "keras-ctl", "eager")
MODES = GRAPH_MODES + KERAS_MODES
MODELS = ("resnet50", "vgg16_transfer", "vgg16_head")
TASKS = ("train", "inference")
PRECISIONS = ("fp32", "mixed_bfloat16", "mixed_float16")
DATA = ("synthetic", "pipeline")
BASELINE = "keras-fit"
CLAIMED_RATIO = 2.5
PRECISION_TARGET = 0.10  # each graph / keras-fit interval within +-10% of its ratio
SCHEMA_VERSION = 1       # of results.json (docs/benchmarks.md)
# Presets that may add interleaved repeats for imprecise comparisons, and their time budget (s)
# for the whole run: quick must end within 15 minutes on this 2-core CPU.
PRESET_BUDGET_S = {"quick": 13 * 60.0}
MAX_REPEATS = 10
# Environment variables that change what TensorFlow computes or how fast: pinned and recorded.
PINNED_ENV = ("TF_ENABLE_ONEDNN_OPTS", "TF_SET_ONEDNN_FPMATH_MODE", "TF_XLA_FLAGS", "OMP_NUM_THREADS",
              "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_CPP_MIN_LOG_LEVEL")


def group_of(key: str) -> str:
    """The group of a configuration key (`BenchConfig.key()`): the key without its mode."""
    return key.split("/", 1)[1]


@dataclass(frozen=True)
class BenchConfig:
    mode: str = "graph"
    model: str = "resnet50"
    task: str = "train"
    batch: int = 32
    image_size: int = 224          # ignored by vgg16_head (7x7x512 features)
    precision: str = "fp32"
    xla: bool = False
    device: str = "cpu"
    data_format: str = "NHWC"
    data: str = "synthetic"
    manifest: str | None = None    # shards read when data == "pipeline"
    steps: int = 10
    warmup: int = 2
    seed: int = 0
    num_classes: int = 1108

    def key(self) -> str:
        """A readable identifier, unique within a run."""
        parts = [self.mode, self.model, self.task, f"b{self.batch}", f"{self.input_shape()[0]}px",
                 self.precision, "xla" if self.xla else "noxla", self.device, self.data_format, self.data]
        return "/".join(parts)

    def group(self) -> str:
        """The key without the mode: configurations in one group are compared with each other."""
        return group_of(self.key())

    def input_shape(self) -> tuple[int, int, int]:
        return (7, 7, 512) if self.model == "vgg16_head" else (self.image_size, self.image_size, 3)

    def applicable(self) -> str | None:
        """Why this combination cannot run, or None."""
        if self.mode == "eager" and self.xla:
            return "XLA needs a compiled function; plain eager has none"
        if self.mode not in GRAPH_MODES and self.data_format == "NCHW":
            return "NCHW is a graph_api option (Keras applications build NHWC on CPU)"
        if self.mode == "graph-fused-bn" and self.model != "resnet50":
            return "only ResNet50 has batch norm"
        if self.model == "vgg16_head" and self.data == "pipeline" and self.manifest is None:
            return "vgg16_head on pipeline data needs a feature-shard manifest"
        return None

    def validate(self) -> "BenchConfig":
        for name, value, allowed in (("mode", self.mode, MODES), ("model", self.model, MODELS),
                                     ("task", self.task, TASKS), ("precision", self.precision, PRECISIONS),
                                     ("data", self.data, DATA), ("device", self.device, ("cpu", "gpu")),
                                     ("data format", self.data_format, ("NHWC", "NCHW"))):
            if value not in allowed:
                raise DataError(f"unknown {name} {value!r}: expected one of {', '.join(allowed)}")
        if self.batch < 1 or self.steps < 1 or self.warmup < 0:
            raise DataError(f"{self.key()}: batch and steps must be >= 1, warm-up >= 0")
        if self.data == "pipeline" and not self.manifest:
            raise DataError(f"{self.key()}: data 'pipeline' needs --manifest")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BenchConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}).validate()


def check_comparable(settings: dict[str, dict]) -> None:
    """`settings` maps mode -> the settings a worker reported (config without mode, environment,
    threads, versions). Refuses, naming the first difference, unless all are equal."""
    items = list(settings.items())
    for (mode_a, a), (mode_b, b) in itertools.combinations(items, 2):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                raise DataError(f"{mode_a} and {mode_b} differ in {key} ({a.get(key)!r} vs {b.get(key)!r}); "
                                "only the mode may differ within a comparison")


# --- presets ----------------------------------------------------------------------------------

def _sweep(modes, batches, **common) -> list[BenchConfig]:
    return [BenchConfig(mode=m, batch=b, **common) for b in batches for m in modes]


def preset(name: str, manifest: str | None = None) -> tuple[list, int]:
    """(configurations, repeats) of a named preset.

    quick: this 2-core CPU in under 15 minutes: ResNet50 at 64x64 (graph vs Keras fit at two
    batch sizes) and the graph/eager ladder on the VGG16 head on cached features; in-memory
    data, with the shards -> tf.data rate measured beside them (`manifest`).
    full: every mode x batch sweep at 224x224. gpu: 224x224, batches to 256, XLA and mixed.
    """
    ladder = ("eager", "keras-ctl", "graph", "graph-feed", "keras-fit")
    if name == "quick":
        configs = _sweep(("graph", "keras-fit"), (4, 16), model="resnet50", image_size=64, steps=8)
        configs += _sweep(("graph-v2",), (16,), model="resnet50", image_size=64, steps=8)
        configs += _sweep(("graph", "keras-fit"), (8,), model="vgg16_head", steps=30, warmup=3)
        configs += _sweep([m for m in ladder if m != "graph-feed"] + ["graph-v2"], (32,), model="vgg16_head",
                          steps=30, warmup=3)
        configs += [BenchConfig(mode=m, model="vgg16_head", batch=32, xla=True, steps=30, warmup=3)
                    for m in ("keras-ctl", "graph")]
        return configs, 3
    if name == "full":
        configs = _sweep(MODES, (8, 16, 32, 64), model="resnet50", steps=8)
        configs += _sweep(("graph", "keras-fit"), (32,), model="resnet50", task="inference", steps=8)
        configs += _sweep(("graph", "graph-feed", "keras-fit", "keras-ctl"), (8, 32), model="vgg16_transfer", steps=6)
        configs += _sweep(ladder, (1, 8, 32, 128, 512), model="vgg16_head", steps=50, warmup=3)
        configs += _sweep(("graph", "keras-fit", "keras-ctl"), (32,), model="resnet50", precision="mixed_bfloat16",
                          steps=8)
        if manifest:
            configs += _sweep(("graph", "keras-fit"), (32,), model="resnet50", steps=8, data="pipeline",
                              manifest=manifest)
        return configs, 3
    if name == "gpu":
        configs = []
        for xla, precision in (( False, "fp32"), (True, "mixed_float16")):
            configs += _sweep(("graph", "graph-fused-bn", "keras-fit", "keras-ctl"), (32, 64, 128, 256),
                              model="resnet50", device="gpu", xla=xla, precision=precision, steps=50, warmup=5)
        configs += _sweep(("graph", "keras-fit", "keras-ctl", "eager"), (8, 64, 512), model="vgg16_head",
                          device="gpu", steps=100, warmup=5)
        if manifest:
            configs += _sweep(("graph", "keras-fit"), (128,), model="resnet50", device="gpu", steps=50, warmup=5,
                              data="pipeline", manifest=manifest)
        return configs, 3
    raise DataError(f"unknown preset {name!r}: expected quick, full or gpu")


def with_overrides(configs: list[BenchConfig], **overrides) -> list[BenchConfig]:
    """The preset's configurations with some fields replaced (e.g. steps for a tiny run)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return [replace(c, **overrides).validate() for c in configs]
