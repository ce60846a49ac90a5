"""The verdict as a map: for each regime or textbook scenario, the measured ratio of the
TF1-style program over its Keras counterpart with its 95% interval, whether 2.5x holds, and the
mechanism measured; then the answer in one paragraph, and a projection onto published GPUs."""
from __future__ import annotations

from dataclasses import dataclass, replace

from benchmarks.analyse.records import ConfigSummary
from benchmarks.analyse.stats import pair_ratio
from benchmarks.config import CLAIMED_RATIO
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

# Published per-image training compute of ResNet50 (images/s of whole training steps), the
# GPU side of the projection: NVIDIA DeepLearningExamples TF1 ResNet50 (V100 fp32, A100 AMP),
# tf_cnn_benchmarks (P100 fp32).
PUBLISHED_GPUS = (("P100, fp32 (tf_cnn_benchmarks)", 219.0), ("V100, fp32 (NVIDIA DeepLearningExamples, TF1)", 412.0),
                  ("A100, AMP (NVIDIA DeepLearningExamples, TF1)", 2375.0))
PROJECTION_BATCHES = (32, 256)
PROJECTED_MODES = ((GRAPH, KERAS_FIT), (GRAPH, KERAS_FIT_SPE), (GRAPH_FEED, KERAS_FIT))


@dataclass(frozen=True)
class Row:
    regime: str
    scenario: str
    fast: Mode                # the TF1-style (or fixed) side
    slow: Mode                # the Keras side
    model: str
    task: str
    batch: int | None         # None: the largest batch measured
    data: str | None = None   # None: any
    optimizer: str = "rmsprop"


ROWS = (
    Row("compute-bound training", "ResNet50 from scratch (P3.36), 64 px", GRAPH, KERAS_FIT, "resnet50", "train", None,
        data="synthetic"),
    Row("input path", "ResNet50 from numpy arrays: feed_dict loop vs fit(X_train, Y_train) (P3.36)", GRAPH_FEED,
        KERAS_FIT, "resnet50", "train", None, data="numpy"),
    Row("input path", "ResNet50 from the shards' tf.data pipeline: in-graph iterator vs fit(dataset)", GRAPH,
        KERAS_FIT, "resnet50", "train", None, data="pipeline"),
    Row("input path", "VGG16 head from numpy arrays (P3.33), batch 32: feed_dict loop vs fit(X, Y)", GRAPH_FEED,
        KERAS_FIT, "vgg16_head", "train", 32, data="numpy"),
    Row("per-call overhead", "evaluation over a split, VGG16 head, batch 32: Session.run loop vs model.evaluate(X, Y)",
        GRAPH_FEED, KERAS_FIT, "vgg16_head", "evaluate", 32, data="numpy"),
    Row("fixed cost per step", "VGG16 head on cached features (P3.27-P3.30), batch 32", GRAPH, KERAS_FIT,
        "vgg16_head", "train", 32, data="synthetic"),
    Row("per-call overhead", "features one image per call (P3.25/P3.27): Session.run vs model.predict(x)",
        GRAPH_FEED, KERAS_PREDICT, "vgg16_head", "inference", 1),
    Row("per-call overhead", "the same loop, Keras fixed: Session.run vs predict_on_batch(x)", GRAPH_FEED, KERAS_TOB,
        "vgg16_head", "inference", 1),
    Row("per-call overhead", "predicting one site (P3.38), ResNet50 64 px: Session.run vs model.predict(x)",
        GRAPH_FEED, KERAS_PREDICT, "resnet50", "inference", 1),
    Row("overhead regime", "trivial model, batch 1: TF1 feed_dict loop vs fit(X, Y)", GRAPH_FEED, KERAS_FIT,
        "trivial", "train", 1),
    Row("overhead regime", "MNIST-style MLP, batch 32: TF1 feed_dict loop vs fit(X, Y)", GRAPH_FEED, KERAS_FIT,
        "mlp", "train", 32),
    Row("overhead regime", "MLP, batch 32: TF1 loop vs fit with steps_per_execution=32", GRAPH_FEED,
        KERAS_FIT_SPE, "mlp", "train", 32),
    Row("overhead regime", "MLP, batch 1,024: TF1 feed_dict loop vs fit(X, Y)", GRAPH_FEED, KERAS_FIT, "mlp",
        "train", 1024),
    Row("Keras of the claim's era", "MLP, batch 32: TF1 loop vs Keras 2 fit in TF1 graph mode", GRAPH_FEED,
        TFKERAS_V1, "mlp", "train", 32),
    Row("Keras of the claim's era", "MLP, batch 32: TF1 loop vs Keras 2 fit (tf.function)", GRAPH_FEED,
        TFKERAS_FIT, "mlp", "train", 32),
    Row("origin of 2.5x", "keras#7818's model (100k x 512 embedding), SGD: TF1 loop vs Keras 3 fit", GRAPH_FEED,
        KERAS_FIT, "embedding", "train", 32, optimizer="sgd"),
    Row("origin of 2.5x", "the same, vs Keras 2 fit (tf.function)", GRAPH_FEED, TFKERAS_FIT, "embedding", "train", 32,
        optimizer="sgd"),
    Row("origin of 2.5x", "the same, vs Keras 2 fit in TF1 graph mode", GRAPH_FEED, TFKERAS_V1, "embedding", "train",
        32, optimizer="sgd"),
    Row("graph vs eager", "VGG16 head, batch 32: Session vs eager GradientTape (no tf.function)", GRAPH, EAGER,
        "vgg16_head", "train", 32, data="synthetic"),
)


def _find(configs: dict[str, ConfigSummary], mode: Mode, row: Row, batch: int | None = None) -> ConfigSummary | None:
    matches = [e for e in configs.values()
               if e.measured and e.mode == mode.name and e.model == row.model and e.task == row.task
               and e.devices * e.workers == 1
               and (row.data is None or e.data == row.data) and e.optimizer == row.optimizer
               and (batch is None or e.batch == batch)]
    return max(matches, key=lambda e: e.batch) if matches else None


def claim(ratio: dict) -> str:
    """Does a ratio's interval say the 2.5x claim holds?"""
    if ratio.get("lo") is None:
        return "inconclusive (1 repeat)"
    if ratio["lo"] >= CLAIMED_RATIO:
        return "holds"
    if ratio["hi"] < CLAIMED_RATIO:
        return "does not hold"
    return "inconclusive"


def _fit(fits: list[dict], mode: Mode, model: str, task: str) -> dict | None:
    for f in fits:
        if f["mode"] == mode.name and f["family"].startswith(f"{model}/{task}/"):
            return f
    return None


def _ms(x: float) -> str:
    return f"{x * 1000:,.0f} us" if x < 1 else f"{x:,.1f} ms"


def mechanism(row: Row, summary: dict, fast: ConfigSummary, slow: ConfigSummary) -> str:
    """What the measurements say causes this row's ratio."""
    configs, fits = summary["configs"], summary["fits"]
    if row.task in ("inference", "evaluate"):
        tob = _find(configs, KERAS_TOB, row, fast.batch)
        text = f"median / p95 per call {_ms(fast.median_step_ms)} / {_ms(fast.p95_step_ms)} vs " \
               f"{_ms(slow.median_step_ms)} / {_ms(slow.p95_step_ms)}"
        if row.slow == KERAS_PREDICT and tob:
            text += f"; predict() adds {_ms(slow.median_step_ms - tob.median_step_ms)} per call over " \
                    "predict_on_batch (a data adapter, an iterator and callbacks for every call)"
        return text
    if row.regime == "input path":
        how = {"numpy": "the TF1 loop feeds numpy slices through feed_dict; fit(X, Y) wraps the arrays in its "
                        "data adapter",
               "pipeline": "both read the shards' tf.data pipeline: an in-graph iterator vs fit's iterator"}
        return f"per step {_ms(fast.median_step_ms)} vs {_ms(slow.median_step_ms)}; {how[row.data]}"
    if row.slow == EAGER:
        return (f"eager runs every op from Python: {slow.median_step_ms:,.1f} vs {fast.median_step_ms:,.1f} ms "
                "per step")
    updates = []
    for mode in (row.fast, KERAS_CTL):
        train, grads = _fit(fits, mode, row.model, "train"), _fit(fits, mode, row.model, "gradients")
        if train and grads:
            updates.append(f"{mode.name} a = {train['a_ms']:.1f} ms, of which the update "
                           f"{train['a_ms'] - grads['a_ms']:.1f} ms")
    if row.model == "embedding":
        parts = []
        for mode in (GRAPH, KERAS_CTL):
            train = _find(configs, mode, row, fast.batch)
            grads = _find(configs, mode, replace(row, task="gradients", optimizer="rmsprop"), fast.batch)
            if train and grads:
                ops = ", ".join(train.sparse_update_ops or []) or "dense"
                parts.append(f"{mode.name}: update {train.median_step_ms - grads.median_step_ms:.1f} ms of "
                             f"{train.median_step_ms:.1f} ({ops})")
        return "the step minus its gradients-only step: " + "; ".join(parts) if parts else "update not split"
    if updates:
        return "fixed cost split: " + "; ".join(updates)
    if fast.median_step_ms < 5:
        return f"per-step dispatch: {_ms(fast.median_step_ms)} vs {_ms(slow.median_step_ms)} per step"
    return f"per-step compute {fast.median_step_ms:,.0f} ms: both run the same kernels"


def verdict_map(summary: dict, first_stage: int | None = None) -> list[dict]:
    """The rows of `ROWS` this run measured, each with its ratio, interval, claim and mechanism."""
    rows = []
    for row in ROWS:
        slow = _find(summary["configs"], row.slow, row, row.batch)
        fast = _find(summary["configs"], row.fast, row, slow.batch if slow else row.batch)
        if not (fast and slow) or fast.group != slow.group:
            continue
        if any(r["group"] == fast.group for r in summary.get("refused", [])):
            continue
        ratio = pair_ratio(fast, slow, first_stage)
        if ratio is None:
            continue
        rows.append({"regime": row.regime, "scenario": row.scenario, "fast": row.fast.name, "slow": row.slow.name,
                     "group": fast.group, "step_ms": fast.median_step_ms, **ratio, "claim": claim(ratio),
                     "mechanism": mechanism(row, summary, fast, slow)})
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
    text += ("The gap is the size of what Keras does per call or per step (predict's set-up, fit's loop) "
             "against the work of the step: large where the step is tiny or a single sample, gone where "
             "kernels dominate, and closed within Keras by predict_on_batch, model(x) or steps_per_execution.")
    return text


def gpu_projection(summary: dict) -> list[dict]:
    """Projected fast/slow ratios on published GPUs: each mode's per-step dispatch, measured as
    its trivial-model step at batch 1 on this CPU, plus batch / the GPU's published images/s."""
    dispatch = {}
    for e in summary["configs"].values():
        if e.measured and e.model == "trivial" and e.task == "train" and e.batch == 1:
            dispatch[e.mode] = e.median_step_ms / 1000
    out = []
    for fast_mode, slow_mode in PROJECTED_MODES:
        fast, slow = fast_mode.name, slow_mode.name
        if fast in dispatch and slow in dispatch:
            for gpu, rate in PUBLISHED_GPUS:
                for batch in PROJECTION_BATCHES:
                    compute = batch / rate
                    out.append({"gpu": gpu, "batch": batch, "fast": fast, "slow": slow,
                                "dispatch_fast_ms": dispatch[fast] * 1000, "dispatch_slow_ms": dispatch[slow] * 1000,
                                "compute_ms": compute * 1000,
                                "ratio": (dispatch[slow] + compute) / (dispatch[fast] + compute)})
    return out
