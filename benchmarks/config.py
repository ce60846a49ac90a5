"""What one benchmark configuration is and whether it can run (the presets list them).

A configuration is everything that shapes a measurement. Two configurations are
*comparable* when they differ only in `mode`; the runner refuses to put a ratio on
anything else.
"""
from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import asdict, dataclass, fields, replace

from benchmarks.devices import CPU, Device, device_named
from benchmarks.modes import GRAPH, REPLICA_MODES, Api, Driver, Mode, mode_named
from benchmarks.sources import SYNTHETIC, Source, source_named
from benchmarks.tasks import TRAIN, Task, task_named
from model_contract.constants import VGG16_FEATURE_SHAPE
from model_contract.image_models import IMAGE_MODELS, RESNET50, ImageModel, has_pretrained_base, image_model
from model_contract.precisions import FP32, Precision, precision_named
from model_contract.small_models import SMALL_MODELS
from plumbing.errors import UserError

MODELS = tuple(IMAGE_MODELS) + tuple(SMALL_MODELS)
OPTIMIZERS = ("rmsprop", "sgd")
CLAIMED_RATIO = 2.5
PRECISION_TARGET = 0.10  # each graph / keras-fit interval within +-10% of its ratio
SCHEMA_VERSION = 1       # of results.json (docs/benchmarks.md)
MAX_REPEATS = 10
ACCOUNT_SAMPLES = 5  # profiled samples of each verdict row's side, in the first repeat
# A pass (epoch over in-memory arrays, an evaluated split) of at most this many batches is timed
# whole; a longer one is timed within, its set-up outside the window.
WHOLE_PASS_LIMIT = 256
# Environment variables that change what TensorFlow computes, where, or how fast: pinned and recorded.
PINNED_ENV = ("TF_ENABLE_ONEDNN_OPTS", "TF_SET_ONEDNN_FPMATH_MODE", "TF_XLA_FLAGS", "OMP_NUM_THREADS",
              "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")


def shape_text(shape: tuple) -> str:
    """An input shape as the messages write it: (64, 64, 3) -> "64x64x3"."""
    return "x".join(map(str, shape))


def group_of(key: str) -> str:
    """The group of a configuration key (`BenchConfig.key()`): the key without its mode."""
    return key.split("/", 1)[1]


@dataclass(frozen=True)
class BenchConfig:
    mode: str = GRAPH.name         # a name of the mode table (benchmarks.modes)
    model: str = RESNET50.name
    task: str = TRAIN.name         # a name of the task table (benchmarks.tasks)
    batch: int = 32
    image_size: int = 224          # ignored by vgg16_head (7x7x512 features)
    precision: str = FP32.name     # a name of the precision table (model_contract.precisions)
    xla: bool = False
    device: str = "cpu"
    data_format: str = "NHWC"
    data: str = SYNTHETIC.name     # a name of the data table (benchmarks.sources)
    manifest: str | None = None    # the shards a source of shards reads
    steps: int = 10
    warmup: int = 2
    seed: int = 0
    num_classes: int | None = None  # None: RxRx1's 1108, or a small model's own
    optimizer: str = "rmsprop"
    devices: int = 1               # data-parallel over N local devices (GPUs, else logical CPUs)
    workers: int = 1               # data-parallel over N localhost worker processes
    control: bool = False          # an A/A control: this configuration again, in a process of its own
    account: int = 0               # samples profiled after the timed ones (benchmarks.measure.accounting)
    # Samples one pass walks on numpy data: fit's epoch over the arrays, the split evaluate walks.
    # None: a pass longer than the run (the timed and profiled samples hold no pass's set-up).
    epoch_samples: int | None = None

    @property
    def spec(self) -> Mode:
        """The mode's record in the mode table."""
        return mode_named(self.mode)

    @property
    def task_spec(self) -> Task:
        """The task's record in the task table: what one step computes."""
        return task_named(self.task)

    @property
    def data_spec(self) -> Source:
        """The data source's record in the data table: what the steps read."""
        return source_named(self.data)

    @property
    def precision_spec(self) -> Precision:
        """The precision policy's record in the precision table."""
        return precision_named(self.precision)

    @property
    def device_spec(self) -> Device:
        """The device's record in the device table: where the steps run."""
        return device_named(self.device)

    @property
    def _image_model(self) -> ImageModel:
        return image_model(self.model)

    def replicas(self) -> int:
        """Model copies each step runs on; `batch` is the global batch split among them."""
        return self.devices * self.workers

    def one_replica(self) -> BenchConfig:
        """The one-device configuration this one's scaling is measured against: the same
        per-replica batch (weak scaling, as tf_cnn_benchmarks reports it)."""
        return replace(self, mode=self.spec.scaling_base or self.mode, devices=1, workers=1,
                       batch=self.batch // self.replicas())

    def classes(self) -> int:
        if self.num_classes is not None:
            return self.num_classes
        return SMALL_MODELS[self.model].num_classes if self.model in SMALL_MODELS else 1108

    def _key_parts(self, mode: bool = True, batch: bool = True) -> list[str]:
        parts = [self.mode] if mode else []
        parts += [self.model, self.task] + ([f"b{self.batch}"] if batch else [])
        parts += [f"{self.input_shape()[0]}px", self.precision, "xla" if self.xla else "noxla", self.device,
                  self.data_format, self.data]
        if self.optimizer != "rmsprop":
            parts.append(self.optimizer)
        if self.epoch_samples:
            parts.append(f"epoch{self.epoch_samples}")
        parts += [f"{n}{suffix}" for n, suffix in ((self.devices, "dev"), (self.workers, "workers")) if n > 1]
        return parts + (["aa-control"] if self.control else [])

    def key(self) -> str:
        """A readable identifier, unique within a run."""
        return "/".join(self._key_parts())

    def family(self) -> str:
        """The group without the batch size: one line of a throughput-vs-batch plot or fit."""
        return "/".join(self._key_parts(mode=False, batch=False))

    def bundle(self) -> tuple:
        """Configurations with the same bundle run one after another in one worker process:
        one mode and one execution environment, any models, tasks and batch sizes. A cluster
        configuration is a bundle of its own: its ps tasks hold one model's variables; so is an
        A/A control, the twin of a configuration measured in another process."""
        return (self.mode, self.precision, self.xla, self.device, self.data_format, self.devices, self.workers,
                self.key() if self.workers > 1 or self.control else None)

    def group(self) -> str:
        """The key without the mode: configurations in one group are compared with each other."""
        return "/".join(self._key_parts(mode=False))

    def input_shape(self) -> tuple:
        if self.model in SMALL_MODELS:
            return SMALL_MODELS[self.model].input_shape
        return VGG16_FEATURE_SHAPE if self._image_model.features else (self.image_size, self.image_size, 3)

    @property
    def timed_per_pass(self) -> bool:
        """Whether its cost comes per call or per pass as well as per step (an evaluation over a
        split, predict per call, fit's epochs over arrays, the feed_dict loop that faces it): a
        repeat then counts as its timed samples' total time / their steps, which keeps a call's
        or an epoch's set-up, where a median of steps would drop it."""
        return self.task_spec.per_pass or self.data_spec.arrays

    def pass_batches(self) -> int | None:
        """Batches (steps) in one pass of `epoch_samples`, or None."""
        return math.ceil(self.epoch_samples / self.batch) if self.epoch_samples else None

    def whole_passes(self) -> bool:
        """Whether the timed and the profiled samples are whole passes, each pass's set-up in
        its first sample (`epoch_samples` set, at most `WHOLE_PASS_LIMIT` batches, a whole number
        of samples); else both lie within a pass, where no set-up falls. Their total / steps is
        then the step of a run over passes of that length, set-up included or (a longer pass)
        left out, where it adds less than 1/`WHOLE_PASS_LIMIT` of itself per step."""
        batches = self.pass_batches()
        return batches is not None and batches <= WHOLE_PASS_LIMIT and batches % self.steps_per_sample() == 0

    def pass_samples(self) -> int:
        """Timed samples in one pass: warm-up, timed and profiled samples are whole multiples of it
        when `whole_passes`, else 1."""
        return self.pass_batches() // self.steps_per_sample() if self.whole_passes() else 1

    def in_whole_passes(self) -> BenchConfig:
        """This configuration with warm-up and timed samples rounded up to whole passes."""
        n = self.pass_samples()
        return replace(self, warmup=math.ceil(self.warmup / n) * n, steps=math.ceil(self.steps / n) * n)

    def profile_lead(self) -> int:
        """Samples a Keras-driven call runs before its profiled ones: one, which holds the call's
        set-up and its first pass's start, as the timed call's warm-up does. The window then meets
        one pass's end and the next one's start per pass it spans, as the timed samples do."""
        return 1 if self.account and self.spec.driver is Driver.FIT else 0

    def pass_note(self) -> str | None:
        """How the samples stand to the passes, in words; None where there are no passes."""
        if not self.data_spec.arrays or self.task_spec.passes is None:
            return None
        what, one = self.task_spec.passes
        batches = self.pass_batches()
        if self.whole_passes():
            return f"{what} of {batches:,} batches, timed whole"
        if batches:
            return f"{what} of {batches:,} batches, timed within one"
        return f"timed within one {one}"

    def repeat_step(self, times: list[float]) -> float:
        """One repeat's step time (s) from its timed samples (s): total / steps where costs come
        per call or pass (`timed_per_pass`), else the median."""
        return statistics.fmean(times) if self.timed_per_pass else statistics.median(times)

    def profiled_samples(self, account: int) -> int:
        """How many samples to profile after the timed ones when `account` are asked: as many
        as it times where costs come per pass (`timed_per_pass`: the profile meets a pass's
        set-up as often), in whole passes where it times them; else a quarter of its timed
        samples, at least 2 and at most `account`, so profiling adds a bounded share to a
        configuration of long steps."""
        if account <= 0:
            return 0
        if self.timed_per_pass:
            n = self.pass_samples()
            return math.ceil(max(account, self.steps) / n) * n
        return min(account, max(2, self.steps // 4))

    def steps_per_sample(self) -> int:
        """Training steps behind one timed sample (fit's executions hold several)."""
        return self.spec.steps_per_execution

    def applicable(self) -> str | None:
        """Why this combination cannot run, or None."""
        reason = self._mode_task_reason() or self._replica_reason()
        if reason:
            return reason
        spec = self.spec
        if not spec.traced and self.xla:
            return f"XLA needs a compiled function; {self.mode} runs its ops one by one from Python"
        if not spec.is_graph and self.data_format == "NCHW":
            return "NCHW is a graph_api option (Keras applications build NHWC on CPU)"
        if spec.bn.fused and not self._image_model.batch_norm:
            return "only ResNet50 has batch norm"
        if self._image_model.features and self.data_spec.shards and self.manifest is None:
            return "vgg16_head on pipeline data needs a feature-shard manifest"
        if self.model in SMALL_MODELS and self.data_spec.shards:
            return "the small models read in-memory data, not RxRx1 shards"
        if self.optimizer != "rmsprop" and not self.task_spec.updates:
            return "the optimizer matters only in training"
        return None

    def _replica_reason(self) -> str | None:
        spec = self.spec
        if self.devices < spec.min_devices:
            return "replicated variables need two or more devices"
        if self.replicas() == 1:
            return None
        if spec.scaling_base is None or not self.task_spec.updates:
            return f"several replicas are measured in training, in modes {', '.join(m.name for m in REPLICA_MODES)}"
        if self.devices > 1 and self.workers > 1:
            return "a worker of a cluster trains on one device"
        if self.workers > 1 and spec.variable_update.copy_per_device:
            return "between workers, graph_api keeps the variables on a ps task"
        if self.xla:
            return "Keras turns XLA off under a tf.distribute strategy"
        if self.data_spec.arrays:
            return "several replicas read tf.data batches (synthetic or pipeline)"
        return None

    def _mode_task_reason(self) -> str | None:
        spec = self.spec
        if self.task_spec not in spec.tasks:
            return spec.task_note or self.task_spec.note or f"{self.mode} does not time {self.task}"
        if spec.api is Api.TF_KERAS:
            if has_pretrained_base(self.model):
                return spec.task_note
            if self.precision != FP32.name or self.xla or self.device_spec is not CPU:
                return "the tf-keras modes run fp32 without XLA on the CPU"
        return None

    def validate(self) -> BenchConfig:
        for named, value in ((mode_named, self.mode), (task_named, self.task), (precision_named, self.precision),
                             (source_named, self.data), (device_named, self.device)):
            named(value)  # a name its table lacks: the table's one error
        for name, value, allowed in (("model", self.model, MODELS), ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("data format", self.data_format, ("NHWC", "NCHW"))):
            if value not in allowed:
                raise UserError(f"unknown {name} {value!r}: expected one of {', '.join(allowed)}")
        if self.batch < 1 or self.steps < 1 or self.warmup < 0 or self.devices < 1 or self.workers < 1 \
                or self.account < 0:
            raise UserError(f"{self.key()}: batch, steps, devices and workers must be >= 1, warm-up and "
                            "profiled samples >= 0")
        if self.batch % self.replicas():
            raise UserError(f"{self.key()}: the global batch {self.batch} does not split evenly over "
                            f"{self.replicas()} replicas")
        if self.data_spec.shards and not self.manifest:
            raise UserError(f"{self.key()}: data {self.data!r} needs --manifest")
        self._validate_passes()
        return self

    def _validate_passes(self) -> None:
        if self.epoch_samples is None:
            return
        if not self.data_spec.arrays or self.task_spec.passes is None or self.epoch_samples < self.batch:
            raise UserError(f"{self.key()}: an epoch of {self.epoch_samples} samples needs numpy data, a training "
                            f"or evaluation task and at least one batch ({self.batch})")
        n = self.pass_samples()
        if self.warmup % n or self.steps % n:
            raise UserError(f"{self.key()}: warm-up ({self.warmup}) and timed samples ({self.steps}) must be whole "
                            f"passes of {n} samples (`BenchConfig.in_whole_passes`)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BenchConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}).validate()


# How many samples a mode timed, not what a step computes: per-step times compare across them
# (fit with steps_per_execution times fewer, longer samples).
SAMPLE_COUNTS = {"steps", "warmup", "account"}


def check_comparable(settings: dict[str, dict]) -> None:
    """`settings` maps mode -> the settings a worker reported (config without mode, environment,
    threads, versions). Refuses, naming the first difference, unless all are equal."""
    items = list(settings.items())
    for (mode_a, a), (mode_b, b) in itertools.combinations(items, 2):
        for key in sorted((set(a) | set(b)) - SAMPLE_COUNTS):
            if a.get(key) != b.get(key):
                raise UserError(f"{mode_a} and {mode_b} differ in {key} ({a.get(key)!r} vs {b.get(key)!r}); "
                                "only the mode may differ within a comparison")


