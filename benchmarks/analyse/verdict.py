"""The verdict as a map: for each regime or textbook scenario, the measured ratio of the
TF1-style program over its Keras counterpart with its 95% interval, whether 2.5x holds, and the
mechanism measured; then the answer in one paragraph (the GPU projection: `projection`)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from benchmarks.analyse.gap import format_ms, gap_sentence, locates, row_accounting
from benchmarks.analyse.records import ConfigSummary
from benchmarks.analyse.stats import pair_ratio
from benchmarks.config import CLAIMED_RATIO, BenchConfig
from benchmarks.modes import (
    EAGER,
    GRAPH,
    GRAPH_FEED,
    KERAS_CTL,
    KERAS_FIT,
    KERAS_FIT_SPE,
    KERAS_PREDICT,
    KERAS_TOB,
    TFKERAS_FIT,
    TFKERAS_V1,
    Mode,
)
from benchmarks.tasks import GRADIENTS, Task, task_named
from model_contract.small_models import SMALL_MODELS


@dataclass(frozen=True)
class Row:
    """One scenario of the map: every field a configuration must match (`_pairs`); `scenario`'s
    {px} and {batch} are filled from the configuration matched. A scenario reads without its
    neighbours: the answer and a citation quote a row on its own."""
    regime: str
    scenario: str
    fast: Mode                # the TF1-style (or fixed) side
    slow: Mode                # the Keras side
    model: str
    task: str                 # a name of the task table (benchmarks.tasks)
    batch: int | None         # None: the largest batch measured
    data: str
    optimizer: str = "rmsprop"
    precision: str = "fp32"
    xla: bool = False

    @property
    def task_spec(self) -> Task:
        return task_named(self.task)


ROWS = (
    Row("compute-bound training", "ResNet50 from scratch (P3.36), {px}, {batch}", GRAPH, KERAS_FIT, "resnet50",
        "train", None, "synthetic"),
    Row("compute-bound training", "ResNet50 from the shards' tf.data pipeline, {px}, {batch}: in-graph iterator vs "
        "fit(dataset)", GRAPH, KERAS_FIT, "resnet50", "train", None, "pipeline"),
    Row("input path", "ResNet50 from numpy arrays, {px}, {batch}: feed_dict loop vs fit(X_train, Y_train) (P3.36)",
        GRAPH_FEED, KERAS_FIT, "resnet50", "train", None, "numpy"),
    Row("input path", "VGG16 head from numpy arrays (P3.33), {batch}: feed_dict loop vs fit(X, Y)", GRAPH_FEED,
        KERAS_FIT, "vgg16_head", "train", 32, "numpy"),
    Row("per-call overhead", "evaluation over a split, VGG16 head, {batch}: Session.run loop vs model.evaluate(X, Y)",
        GRAPH_FEED, KERAS_FIT, "vgg16_head", "evaluate", 32, "numpy"),
    Row("fixed cost per step", "VGG16 head on cached features (P3.27-P3.30), {batch}", GRAPH, KERAS_FIT,
        "vgg16_head", "train", 32, "synthetic"),
    Row("per-call overhead", "features one image per call (P3.25/P3.27): Session.run vs model.predict(x)",
        GRAPH_FEED, KERAS_PREDICT, "vgg16_head", "inference", 1, "numpy"),
    Row("per-call overhead", "features one image per call, Keras's call fixed: Session.run vs predict_on_batch(x)",
        GRAPH_FEED, KERAS_TOB, "vgg16_head", "inference", 1, "numpy"),
    Row("per-call overhead", "predicting one site (P3.38), ResNet50 {px}: Session.run vs model.predict(x)",
        GRAPH_FEED, KERAS_PREDICT, "resnet50", "inference", 1, "numpy"),
    Row("overhead regime", "trivial model, {batch}: TF1 feed_dict loop vs fit(X, Y)", GRAPH_FEED, KERAS_FIT,
        "trivial", "train", 1, "numpy"),
    Row("overhead regime", "MNIST-style MLP, {batch}: TF1 feed_dict loop vs fit(X, Y)", GRAPH_FEED, KERAS_FIT,
        "mlp", "train", 32, "numpy"),
    Row("overhead regime", "MLP, {batch}: TF1 loop vs fit with steps_per_execution=32", GRAPH_FEED,
        KERAS_FIT_SPE, "mlp", "train", 32, "numpy"),
    Row("overhead regime", "MLP, {batch}: TF1 feed_dict loop vs fit(X, Y)", GRAPH_FEED, KERAS_FIT, "mlp",
        "train", 1024, "numpy"),
    Row("Keras of the claim's era", "MLP, {batch}: TF1 loop vs Keras 2 fit in TF1 graph mode", GRAPH_FEED,
        TFKERAS_V1, "mlp", "train", 32, "numpy"),
    Row("Keras of the claim's era", "MLP, {batch}: TF1 loop vs Keras 2 fit (tf.function)", GRAPH_FEED,
        TFKERAS_FIT, "mlp", "train", 32, "numpy"),
    Row("origin of 2.5x", "keras#7818's model (100k x 512 embedding), SGD, {batch}: TF1 loop vs Keras 3 fit",
        GRAPH_FEED, KERAS_FIT, "embedding", "train", 32, "numpy", optimizer="sgd"),
    Row("origin of 2.5x", "keras#7818's model, SGD, {batch}: TF1 loop vs Keras 2 fit (tf.function)", GRAPH_FEED,
        TFKERAS_FIT, "embedding", "train", 32, "numpy", optimizer="sgd"),
    Row("origin of 2.5x", "keras#7818's model, SGD, {batch}: TF1 loop vs Keras 2 fit in TF1 graph mode", GRAPH_FEED,
        TFKERAS_V1, "embedding", "train", 32, "numpy", optimizer="sgd"),
    Row("graph vs eager", "VGG16 head, {batch}: Session vs eager GradientTape (no tf.function)", GRAPH, EAGER,
        "vgg16_head", "train", 32, "synthetic"),
)


def _twin(configs: dict[str, ConfigSummary], entry: ConfigSummary, mode: Mode, **changes) -> ConfigSummary | None:
    """`entry`'s configuration in another mode (and with `changes`), if this run measured it."""
    twin = configs.get(replace(entry.config, mode=mode.name, **changes).key())
    return twin if twin is not None and twin.measured else None


def row_pairs(row: Row, configs: Iterable[BenchConfig]) -> list[tuple[BenchConfig, BenchConfig]]:
    """(fast, slow) among `configs` for `row`: the Keras side matches every field of the row (one
    replica, no A/A control), the TF1 side is the same configuration in the row's other mode;
    one pair per device, image size and layout, at the row's batch or the largest there is."""
    by_key = {c.key(): c for c in configs}
    chosen: dict[tuple, tuple[BenchConfig, BenchConfig]] = {}
    for c in by_key.values():
        if not (c.mode == row.slow.name and c.model == row.model and c.task == row.task and c.data == row.data
                and c.optimizer == row.optimizer and c.precision == row.precision and c.xla == row.xla
                and c.replicas() == 1 and not c.control and (row.batch is None or c.batch == row.batch)):
            continue
        fast = by_key.get(replace(c, mode=row.fast.name).key())
        where = (c.device, c.input_shape(), c.data_format)
        if fast and (where not in chosen or c.batch > chosen[where][1].batch):
            chosen[where] = (fast, c)
    return [pair for _, pair in sorted(chosen.items())]


def _pairs(configs: dict[str, ConfigSummary], row: Row) -> list[tuple[ConfigSummary, ConfigSummary]]:
    """`row_pairs` among the configurations this run measured, as their summaries."""
    measured = [e.config for e in configs.values() if e.measured]
    return [(configs[fast.key()], configs[slow.key()]) for fast, slow in row_pairs(row, measured)]


def row_keys(configs: Iterable[BenchConfig]) -> set[str]:
    """The keys of every configuration on either side of a verdict row: the ones whose samples
    the accounting profiles."""
    return {c.key() for row in ROWS for pair in row_pairs(row, configs) for c in pair}


def scenario_label(row: Row, config: BenchConfig) -> str:
    """The row's scenario, its size and batch those of the configuration it matched, and how its
    samples stand to the passes over its arrays (`BenchConfig.pass_note`)."""
    label = row.scenario.format(px=f"{config.input_shape()[0]} px", batch=f"batch {config.batch:,}")
    note = config.pass_note()
    return label + (f"; {note}" if note else "") + config.device_spec.label_suffix


def not_measured(summary: dict) -> list[str]:
    """The scenarios of `ROWS` this run did not produce with both sides, as labels."""
    out = []
    for row in ROWS:
        if not _pairs(summary["configs"], row):
            batch = f"batch {row.batch:,}" if row.batch else "any batch"
            out.append(f"{row.regime}: {row.scenario.format(px='any size', batch=batch)} "
                       f"({row.fast.name} / {row.slow.name})")
    return out


def claim(ratio: dict) -> str:
    """Does a ratio's interval say the 2.5x claim holds?"""
    if ratio.get("lo") is None:
        return "inconclusive (1 repeat)"
    if ratio["lo"] >= CLAIMED_RATIO:
        return "holds"
    if ratio["hi"] < CLAIMED_RATIO:
        return "does not hold"
    return "inconclusive"


def _fit(fits: list[dict], mode: Mode, family: str) -> dict | None:
    return next((f for f in fits if f["mode"] == mode.name and f["family"] == family), None)


def _measured_extras(row: Row, summary: dict, fast: ConfigSummary, slow: ConfigSummary) -> list[str]:
    """Figures of other configurations of this run that bear on the row: the per-call spread,
    predict's cost over predict_on_batch, the update's share of a step."""
    configs, fits = summary["configs"], summary["fits"]
    if row.task_spec.forward_only:  # a call's or a split's figures
        out = [f"median / p95 per call {format_ms(fast.median_step_ms)} / {format_ms(fast.p95_step_ms)} vs "
               f"{format_ms(slow.median_step_ms)} / {format_ms(slow.p95_step_ms)}"]
        tob = _twin(configs, slow, KERAS_TOB)
        if row.slow == KERAS_PREDICT and tob:
            out.append(f"predict() takes {format_ms(slow.median_step_ms - tob.median_step_ms)} per call more than "
                       "predict_on_batch")
        return out
    if row.model in SMALL_MODELS and SMALL_MODELS[row.model].embeds:  # its update is the mechanism
        parts = []
        for mode in (row.fast, KERAS_CTL if row.slow == KERAS_FIT else None):
            train = _twin(configs, slow, mode) if mode else None
            grads = _twin(configs, slow, mode, task=GRADIENTS.name, optimizer="rmsprop") if train else None
            if train and grads:
                ops = ", ".join(train.sparse_update_ops or []) or "dense"
                parts.append(f"{mode.name}: update {train.median_step_ms - grads.median_step_ms:.1f} ms of "
                             f"{train.median_step_ms:.1f} ({ops})")
        return ["the step minus its gradients-only step: " + "; ".join(parts)] if parts else []
    updates = []
    for mode in (row.fast, KERAS_CTL) if row.slow == KERAS_FIT else ():  # fit's rows: the update's share
        train = _fit(fits, mode, slow.family)
        grads = _fit(fits, mode, replace(slow.config, task=GRADIENTS.name).family())
        if train and grads:
            updates.append(f"{mode.name} a = {train['a_ms']:.1f} ms, of which the update "
                           f"{train['a_ms'] - grads['a_ms']:.1f} ms")
    return ["fixed cost a of a + b x batch: " + "; ".join(updates)] if updates else []


def mechanism(row: Row, summary: dict, fast: ConfigSummary, slow: ConfigSummary,
              ratio: dict | None = None, accounting: dict | None = None) -> str:
    """What the measurements say causes this row's ratio: `accounting` of both sides' profiled
    samples (`gap.row_accounting`, put in words by `gap.gap_sentence`), then the run's other
    figures that bear on it."""
    head = gap_sentence(accounting, row.fast.name, row.slow.name, ratio) if accounting else \
        f"not profiled; per {slow.statistic} {format_ms(fast.median_step_ms)} vs {format_ms(slow.median_step_ms)}"
    return "; ".join([head, *_measured_extras(row, summary, fast, slow)])


def verdict_map(summary: dict, first_stage: int | None = None) -> list[dict]:
    """The rows of `ROWS` this run measured (one per device, image size and layout), each with its
    generated label, ratio, interval, claim and mechanism."""
    rows = []
    refused = {r["group"] for r in summary.get("refused", [])}
    for row in ROWS:
        for fast, slow in _pairs(summary["configs"], row):
            ratio = pair_ratio(fast, slow, first_stage)
            if fast.group in refused or ratio is None:
                continue
            accounting = row_accounting(fast, slow)
            rows.append({"regime": row.regime, "scenario": scenario_label(row, slow.config), "fast": row.fast.name,
                         "slow": row.slow.name, "group": fast.group, "step_ms": fast.median_step_ms,
                         "timed": slow.statistic, **ratio, "claim": claim(ratio), "accounting": accounting,
                         "located": accounting is not None and locates(accounting, ratio),
                         "mechanism": mechanism(row, summary, fast, slow, ratio, accounting)})
    return rows


def answer(rows: list[dict]) -> str:
    """One paragraph: is not using Keras 2.5x faster?"""
    if not rows:
        return "No row of the verdict map was measured in this run."
    holds = [r for r in rows if r["claim"] == "holds"]
    near = [r for r in rows if r["lo"] is not None and r["hi"] < 1.25 and r["lo"] > 0.8]
    text = f"Is not using Keras {CLAIMED_RATIO}x faster? In {len(holds)} of {len(rows)} measured situations. "
    if holds:
        text += "It holds where " + "; ".join(f"{r['scenario']} ({r['ratio']:.1f}x)" for r in holds) + ". "
    if near:
        text += (f"In {len(near)} the two are within 25% of each other, e.g. {near[0]['scenario']} "
                 f"({near[0]['ratio']:.2f}x). ")
    ranged = sum(r["lo"] is not None for r in rows)
    if ranged > 1:  # each row's 95% is its own; over many rows, some miss by chance
        text += (f"Each interval is 95%, so of these {ranged}, about {0.05 * ranged:.1f} would miss its "
                 "true ratio in a run by chance alone. ")
    return text + gap_summary(rows)


def gap_summary(rows: list[dict]) -> str:
    """Which part carries most of each located row's gap (`gap.locates`), counted over the rows,
    with the row where it was largest; in how many both sides run the same kernels; how many
    profiled rows have no gap to locate."""
    profiled = [r for r in rows if r.get("accounting")]
    if not profiled:
        return "No row's two sides were profiled in this run, so no part of a gap is measured."
    located = [r for r in profiled if r.get("located")]
    unlocated = len(profiled) - len(located)
    rest = (f" In {unlocated} profiled row(s) the timed interval cannot tell the sides apart, or the profiled "
            "steps do not show its gap, so no part is named there.") if unlocated else ""
    if not located:
        return rest.strip()
    by_part: dict[str, list[dict]] = {}
    for r in located:
        by_part.setdefault(r["accounting"]["largest"]["label"], []).append(r)
    parts = []
    for label, members in sorted(by_part.items(), key=lambda kv: -len(kv[1])):
        top = max(members, key=lambda r: abs(r["accounting"]["largest"]["gap_ms"]))
        gap = top["accounting"]["largest"]["gap_ms"]
        favour = "" if gap >= 0 else " in the Keras side's favour"  # a negative gap: the Keras side spent less
        parts.append(f"{label} in {len(members)} (up to {format_ms(abs(gap))} per step{favour}, {top['scenario']})")
    same = sum(r["accounting"]["kernels"]["same"] for r in located)
    return (f"Of the {len(located)} rows with a gap the profiled steps locate, the part that carries most of it "
            f"is {'; '.join(parts)}. In {same} of them both sides' top op types are the same.{rest}")
