"""What one benchmark configuration is, which ones exist, and the presets that list them.

A configuration is everything that shapes a measurement. Two configurations are
*comparable* when they differ only in `mode`; the runner refuses to put a ratio on
anything else.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields, replace

from common.small_models import SMALL_MODELS
from data_pipeline.errors import DataError

GRAPH_MODES = ("graph", "graph-feed", "graph-fused-bn", "graph-v2", "graph-replicated")
# Graph modes whose worker keeps TensorFlow 2 semantics: the `graph` mode's graph and Session,
# without `use_tf1_runtime` (resource variables, control flow v2), to measure what the TF1
# runtime itself changes.
TF2_RUNTIME_MODES = ("graph-v2",)
# graph: on several devices, one tower per device with the variables on the CPU
# (tf_cnn_benchmarks' parameter_server); graph-replicated: a copy of the variables per device,
# gradients all-reduced with collective ops (its `replicated`).
# Modes that run on several devices (`devices`) or localhost worker processes (`workers`), and
# the one-device mode each one's scaling is measured against.
REPLICA_MODES = {"graph": "graph", "graph-replicated": "graph", "keras-fit": "keras-fit"}
# keras-fit-spe: fit with `steps_per_execution`; keras-tob: train_on_batch / predict_on_batch per
# step; keras-predict: one `model.predict(x)` per batch (the textbook's per-image loop);
# keras-call: one eager `model(x)` per batch.
KERAS_MODES = ("keras-fit", "keras-fit-spe", "keras-tob", "keras-ctl", "eager", "keras-predict", "keras-call")
# Keras 2 (tf-keras) in its own worker with TF_USE_LEGACY_KERAS=1: fit under tf.function, and
# fit in TF1 graph mode (`disable_eager_execution`), the Keras of the 2017-2019 reports.
TF_KERAS_MODES = ("tfkeras-fit", "tfkeras-v1")
MODES = GRAPH_MODES + KERAS_MODES + TF_KERAS_MODES
IMAGE_MODELS = ("resnet50", "vgg16_transfer", "vgg16_head")
MODELS = IMAGE_MODELS + tuple(SMALL_MODELS)
# gradients: forward + backward, no update (its fixed cost against train's is the update's);
# evaluate: loss and accuracy batch by batch over a split (Session.run loop vs model.evaluate)
TASKS = ("train", "gradients", "inference", "evaluate")
EVALUATE_MODES = ("graph", "graph-feed", "graph-v2", "keras-fit")
PRECISIONS = ("fp32", "mixed_bfloat16", "mixed_float16")
DATA = ("synthetic", "numpy", "pipeline")
OPTIMIZERS = ("rmsprop", "sgd")
STEPS_PER_EXECUTION = 32   # keras-fit-spe; one timed sample is one execution, reported per step
BASELINE = "keras-fit"
INFERENCE_BASELINE = "keras-predict"  # where no keras-fit ran: the textbook's one call per batch
CLAIMED_RATIO = 2.5
PRECISION_TARGET = 0.10  # each graph / keras-fit interval within +-10% of its ratio
SCHEMA_VERSION = 1       # of results.json (docs/benchmarks.md)
# Presets that may add interleaved repeats for imprecise comparisons, and their time budget (s)
# for the whole run: no extra repeat starts past 9 minutes on this 2-core CPU (the quick preset's first
# stage alone takes about 11), so that `make demo` stays within 20.
PRESET_BUDGET_S = {"quick": 9 * 60.0}
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
    num_classes: int | None = None  # None: RxRx1's 1108, or a small model's own
    optimizer: str = "rmsprop"
    devices: int = 1               # data-parallel over N local devices (GPUs, else logical CPUs)
    workers: int = 1               # data-parallel over N localhost worker processes

    def replicas(self) -> int:
        """Model copies each step runs on; `batch` is the global batch split among them."""
        return self.devices * self.workers

    def one_replica(self) -> "BenchConfig":
        """The one-device configuration this one's scaling is measured against: the same
        per-replica batch (weak scaling, as tf_cnn_benchmarks reports it)."""
        return replace(self, mode=REPLICA_MODES.get(self.mode, self.mode), devices=1, workers=1,
                       batch=self.batch // self.replicas())

    def classes(self) -> int:
        if self.num_classes is not None:
            return self.num_classes
        return SMALL_MODELS[self.model].num_classes if self.model in SMALL_MODELS else 1108

    def key(self) -> str:
        """A readable identifier, unique within a run."""
        parts = [self.mode, self.model, self.task, f"b{self.batch}", f"{self.input_shape()[0]}px",
                 self.precision, "xla" if self.xla else "noxla", self.device, self.data_format, self.data]
        if self.optimizer != "rmsprop":
            parts.append(self.optimizer)
        parts += [f"{n}{suffix}" for n, suffix in ((self.devices, "dev"), (self.workers, "workers")) if n > 1]
        return "/".join(parts)

    def bundle(self) -> tuple:
        """Configurations with the same bundle run one after another in one worker process:
        one mode and one execution environment, any models, tasks and batch sizes. A cluster
        configuration is a bundle of its own: its ps tasks hold one model's variables."""
        return (self.mode, self.precision, self.xla, self.device, self.data_format, self.devices, self.workers,
                self.key() if self.workers > 1 else None)

    def group(self) -> str:
        """The key without the mode: configurations in one group are compared with each other."""
        return group_of(self.key())

    def input_shape(self) -> tuple:
        if self.model in SMALL_MODELS:
            return SMALL_MODELS[self.model].input_shape
        return (7, 7, 512) if self.model == "vgg16_head" else (self.image_size, self.image_size, 3)

    def steps_per_sample(self) -> int:
        """Training steps behind one timed sample (fit's executions hold several)."""
        return STEPS_PER_EXECUTION if self.mode == "keras-fit-spe" else 1

    def applicable(self) -> str | None:
        """Why this combination cannot run, or None."""
        reason = self._mode_task_reason() or self._replica_reason()
        if reason:
            return reason
        if self.mode == "eager" and self.xla:
            return "XLA needs a compiled function; plain eager has none"
        if self.mode not in GRAPH_MODES and self.data_format == "NCHW":
            return "NCHW is a graph_api option (Keras applications build NHWC on CPU)"
        if self.mode == "graph-fused-bn" and self.model != "resnet50":
            return "only ResNet50 has batch norm"
        if self.model == "vgg16_head" and self.data == "pipeline" and self.manifest is None:
            return "vgg16_head on pipeline data needs a feature-shard manifest"
        if self.model in SMALL_MODELS and self.data == "pipeline":
            return "the small models read in-memory data, not RxRx1 shards"
        if self.optimizer != "rmsprop" and self.task != "train":
            return "the optimizer matters only in training"
        return None

    def _replica_reason(self) -> str | None:
        if self.mode == "graph-replicated" and self.devices < 2:
            return "replicated variables need two or more devices"
        if self.replicas() == 1:
            return None
        if self.mode not in REPLICA_MODES or self.task != "train":
            return f"several replicas are measured in training, in modes {', '.join(REPLICA_MODES)}"
        if self.devices > 1 and self.workers > 1:
            return "a worker of a cluster trains on one device"
        if self.workers > 1 and self.mode == "graph-replicated":
            return "between workers, graph_api keeps the variables on a ps task"
        if self.xla:
            return "Keras turns XLA off under a tf.distribute strategy"
        if self.data == "numpy":
            return "several replicas read tf.data batches (synthetic or pipeline)"
        return None

    def _mode_task_reason(self) -> str | None:
        if self.mode in ("keras-predict", "keras-call") and self.task != "inference":
            return f"{self.mode} is a prediction call"
        if self.mode == "keras-fit-spe" and self.task != "train":
            return "steps_per_execution is measured in training"
        if self.task == "evaluate" and self.mode not in EVALUATE_MODES:
            return "evaluation over a split is measured as a Session.run loop and model.evaluate"
        if self.task == "gradients" and self.mode not in ("graph", "graph-feed", "graph-v2", "keras-ctl", "eager"):
            return "a gradients-only step needs a loop of our own (graph or custom loop)"
        if self.mode in TF_KERAS_MODES:
            if self.model == "vgg16_transfer" or self.task != "train":
                return "the tf-keras modes train the small models, ResNet50 and the VGG16 head"
            if self.precision != "fp32" or self.xla or self.device != "cpu":
                return "the tf-keras modes run fp32 without XLA on the CPU"
        return None

    def validate(self) -> "BenchConfig":
        for name, value, allowed in (("mode", self.mode, MODES), ("model", self.model, MODELS),
                                     ("task", self.task, TASKS), ("precision", self.precision, PRECISIONS),
                                     ("data", self.data, DATA), ("device", self.device, ("cpu", "gpu")),
                                     ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("data format", self.data_format, ("NHWC", "NCHW"))):
            if value not in allowed:
                raise DataError(f"unknown {name} {value!r}: expected one of {', '.join(allowed)}")
        if self.batch < 1 or self.steps < 1 or self.warmup < 0 or self.devices < 1 or self.workers < 1:
            raise DataError(f"{self.key()}: batch, steps, devices and workers must be >= 1, warm-up >= 0")
        if self.batch % self.replicas():
            raise DataError(f"{self.key()}: the global batch {self.batch} does not split evenly over "
                            f"{self.replicas()} replicas")
        if self.data == "pipeline" and not self.manifest:
            raise DataError(f"{self.key()}: data 'pipeline' needs --manifest")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BenchConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}).validate()


# How many samples a mode timed, not what a step computes: per-step times compare across them
# (fit with steps_per_execution times fewer, longer samples).
SAMPLE_COUNTS = {"steps", "warmup"}


def check_comparable(settings: dict[str, dict]) -> None:
    """`settings` maps mode -> the settings a worker reported (config without mode, environment,
    threads, versions). Refuses, naming the first difference, unless all are equal."""
    items = list(settings.items())
    for (mode_a, a), (mode_b, b) in itertools.combinations(items, 2):
        for key in sorted((set(a) | set(b)) - SAMPLE_COUNTS):
            if a.get(key) != b.get(key):
                raise DataError(f"{mode_a} and {mode_b} differ in {key} ({a.get(key)!r} vs {b.get(key)!r}); "
                                "only the mode may differ within a comparison")


# --- presets ----------------------------------------------------------------------------------

def _sweep(modes, batches, **common) -> list[BenchConfig]:
    return [BenchConfig(mode=m, batch=b, **common) for b in batches for m in modes]


def preset(name: str, manifest: str | None = None) -> tuple[list, int]:
    """(configurations, repeats) of a named preset.

    quick: the verdict map on this 2-core CPU in about 11 minutes (`quick_configs`), with the
    shards -> tf.data rate measured beside it (`manifest`).
    full: every mode x batch sweep at 224x224. gpu: 224x224, batches to 256, XLA and mixed,
    and ResNet50's scaling over 1, 2, 4 and 8 GPUs at 64 images per GPU. scaling: the VGG16
    head on 1 and 2 devices and 2 localhost workers (on a machine without GPUs the devices are
    logical CPU devices sharing its cores: the figures show the code paths work, not speed).
    """
    ladder = ("eager", "keras-ctl", "graph", "graph-feed", "keras-fit")
    if name == "quick":
        return quick_configs(manifest), 3
    if name == "full":
        configs = _sweep(GRAPH_MODES + ("keras-fit", "keras-ctl", "eager"), (8, 16, 32, 64), model="resnet50", steps=8)
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
        return configs + scaling_configs((1, 2, 4, 8), (), 64, model="resnet50", device="gpu", steps=50,
                                         warmup=5), 3
    if name == "scaling":
        return scaling_configs((1, 2), (2,), 32, model="vgg16_head", steps=30, warmup=5), 3
    raise DataError(f"unknown preset {name!r}: expected quick, full, gpu or scaling")


def scaling_configs(devices: tuple, workers: tuple, per_replica: int, **common) -> list[BenchConfig]:
    """Training at `per_replica` images per device or worker on each count of `devices` and of
    localhost `workers`, in every replica mode (graph-replicated from two devices on), the global
    batch growing with the count."""
    configs = []
    for n in devices:
        modes = ("graph", "graph-replicated", "keras-fit") if n > 1 else ("graph", "keras-fit")
        configs += [BenchConfig(mode=m, batch=per_replica * n, devices=n, **common) for m in modes]
    for n in workers:
        configs += [BenchConfig(mode=m, batch=per_replica * n, workers=n, **common) for m in ("graph", "keras-fit")]
    return configs


OVERHEAD_MODES = ("graph", "graph-feed", "keras-fit", "keras-fit-spe", "keras-tob", "keras-ctl", "eager",
                  "tfkeras-fit", "tfkeras-v1")
PER_CALL_MODES = ("graph-feed", "keras-predict", "keras-tob", "keras-call")


def _small(modes, batches, **common) -> list[BenchConfig]:
    """Small-model configurations on in-memory arrays; fit's executions of 32 steps are fewer."""
    configs = []
    for config in _sweep(modes, batches, data="numpy", steps=40, warmup=10, **common):
        configs.append(replace(config, steps=8, warmup=2) if config.mode == "keras-fit-spe" else config)
    return configs


def quick_configs(manifest: str | None = None) -> list[BenchConfig]:
    """The verdict map on this 2-core CPU within the demo's budget: compute-bound training
    (ResNet50 64 px, from one in-memory batch, from numpy arrays, from `manifest`'s shards when
    given, 64 px images), the VGG16 head's fixed cost split into dispatch and update, trained
    from numpy arrays and evaluated over them, the textbook's one-image-per-call loops, the
    overhead regime (MLP at batch 1-1,024, trivial model at 1) in every execution mode, and the
    origin model of the 2.5x figure."""
    resnet = dict(model="resnet50", image_size=64, steps=8)
    configs = _sweep(("graph", "keras-fit"), (16,), **resnet)
    configs += _sweep(("graph-feed", "keras-fit"), (16,), data="numpy", **resnet)
    if manifest:
        configs += _sweep(("graph", "keras-fit"), (16,), data="pipeline", manifest=manifest, **resnet)
    head = dict(model="vgg16_head", steps=20, warmup=3)
    configs += _sweep(("graph-feed", "keras-fit"), (32,), data="numpy", **head)
    configs += _sweep(("graph-feed", "keras-fit"), (32,), task="evaluate", data="numpy", **head)
    configs += _sweep(("graph", "keras-fit", "keras-ctl"), (8, 32, 128), **head)
    configs += _sweep(("graph", "keras-ctl"), (8, 32, 128), task="gradients", **head)
    configs += _sweep(("eager", "graph-v2"), (32,), **head)
    configs += _sweep(("graph", "keras-fit"), (32,), task="inference", **head)
    configs += _sweep(PER_CALL_MODES, (1,), task="inference", data="numpy", steps=30, warmup=5, model="vgg16_head")
    configs += _sweep(PER_CALL_MODES, (1,), task="inference", data="numpy", steps=10, warmup=3, model="resnet50",
                      image_size=64)
    configs += _small(OVERHEAD_MODES, (1, 32, 1024), model="mlp")
    configs += _small(OVERHEAD_MODES, (1,), model="trivial")
    origin = dict(model="embedding", optimizer="sgd")
    configs += _small(("graph", "graph-feed", "keras-fit", "keras-ctl", "tfkeras-fit", "tfkeras-v1"), (32,), **origin)
    configs += _small(("graph", "keras-ctl"), (32,), task="gradients", model="embedding")
    return configs


def with_overrides(configs: list[BenchConfig], **overrides) -> list[BenchConfig]:
    """The preset's configurations with some fields replaced (e.g. steps for a tiny run)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return [replace(c, **overrides).validate() for c in configs]
