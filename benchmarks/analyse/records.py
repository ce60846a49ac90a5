"""The typed records the analysis hands to the report: one configuration over every repeat."""
from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.config import BenchConfig


@dataclass(frozen=True)
class ConfigSummary:
    """One configuration over every repeat of a run: what it is (`config`) and what was measured.
    The measured fields are None (or empty) when no repeat of it succeeded."""
    config: BenchConfig
    repeats_ok: int
    errors: list[str]                              # each failed repeat's error, deduplicated
    throughput: dict | None = None                 # images/s over all timed steps: median, iqr, min, max, n
    median_step_ms: float | None = None            # over all timed steps of all repeats
    p95_step_ms: float | None = None
    repeat_step_s: dict[str, float] = field(default_factory=dict)  # repeat -> its step (s), `statistic`
    spread_by_repeat: dict[str, float] = field(default_factory=dict)  # repeat -> IQR / median of its steps
    first_step_s: float | None = None              # build + first step, median over repeats (s)
    peak_rss_mb: float | None = None               # the largest of the repeats' peaks (MiB)
    peak_rss_scope: str | None = None              # "configuration": its own peak; "process so far"
    sparse_update_ops: list[str] | None = None     # op types the step applies sparse updates with
    fused_batch_norm_ops: list[str] | None = None  # fused batch-norm kernels the step runs (None: not read)
    settings: dict | None = None                   # as the first successful repeat's worker ran
    settings_by_repeat: dict[str, dict] = field(default_factory=dict)  # repeat -> as its worker ran
    pipeline_images_per_s: float | None = None     # the shards -> tf.data rate for this input and batch
    pipeline_headroom: float | None = None         # that rate / this configuration's images/s
    accounting: dict | None = None                 # its profiled samples' parts (benchmarks.measure.accounting)
    accounting_by_repeat: dict[str, dict] = field(default_factory=dict)  # repeat -> that repeat's, where profiled

    @property
    def measured(self) -> bool:
        return self.throughput is not None

    @property
    def statistic(self) -> str:
        """What `repeat_step_s` holds for each repeat (`BenchConfig.timed_per_pass`)."""
        return "total / steps" if self.config.timed_per_pass else "median step"

    @property
    def key(self) -> str:
        return self.config.key()

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def data(self) -> str:
        return self.config.data

    @property
    def optimizer(self) -> str:
        return self.config.optimizer

    @property
    def batch(self) -> int:
        return self.config.batch

    @property
    def devices(self) -> int:
        return self.config.devices

    @property
    def workers(self) -> int:
        return self.config.workers

    @property
    def group(self) -> str:
        return self.config.group()

    @property
    def family(self) -> str:
        return self.config.family()

    @property
    def one_replica_key(self) -> str | None:
        """The one-device configuration this one's scaling is measured against (None: one replica)."""
        return self.config.one_replica().key() if self.config.replicas() > 1 else None

    def to_dict(self) -> dict:
        """The entry as results.json's summary holds it (docs/benchmarks.md)."""
        out = {"mode": self.mode, "model": self.model, "task": self.task, "data": self.data,
               "optimizer": self.optimizer, "group": self.group, "family": self.family, "batch": self.batch,
               "repeats_ok": self.repeats_ok, "devices": self.devices, "workers": self.workers,
               "one_replica_key": self.one_replica_key, "errors": self.errors}
        if self.measured:
            out.update(throughput=self.throughput, median_step_ms=self.median_step_ms, p95_step_ms=self.p95_step_ms,
                       sparse_update_ops=self.sparse_update_ops, fused_batch_norm_ops=self.fused_batch_norm_ops,
                       repeat_step_s=self.repeat_step_s,
                       statistic=self.statistic,
                       first_step_s=self.first_step_s, peak_rss_mb=self.peak_rss_mb,
                       peak_rss_scope=self.peak_rss_scope, settings=self.settings,
                       pipeline_images_per_s=self.pipeline_images_per_s, pipeline_headroom=self.pipeline_headroom,
                       accounting=self.accounting, accounting_by_repeat=self.accounting_by_repeat)
        return out
