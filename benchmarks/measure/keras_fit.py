"""The modes in which Keras drives the loop: `keras-fit` (compile/fit, or predict for
inference), `keras-fit-spe` (fit with `steps_per_execution`), and Keras 2's fit from tf-keras:
`tfkeras-fit` (under tf.function) and `tfkeras-v1` (TF1 graph mode). They are timed from inside
by a callback that reads the step's logs back to the host, so each time holds the step's work.
On several devices or workers `keras-fit` fits under the strategy `benchmarks.measure.replicas` made.
"""
from __future__ import annotations

import math
import time
from types import ModuleType

import keras
import numpy as np

from benchmarks.config import BenchConfig
from benchmarks.measure.accounting import Tracer
from benchmarks.measure.batches import numpy_arrays, train_dataset
from benchmarks.measure.replicas import Placement
from benchmarks.measure.timing import (
    graph_op_types,
    kernel_facts,
    model_compute_dtypes,
    runtime_functions,
    runtime_op_types,
    xla_compiled_since,
)
from benchmarks.modes import Api, Runtime
from data_pipeline.dataset import without_autograph
from keras_api import build_before_fit, build_model, make_optimizer, shard_by_batch, strategy_scope
from model_contract.small_models import input_signature


def keras_module(config: BenchConfig) -> ModuleType:
    """Keras 3, or tf-keras (Keras 2) for the tfkeras modes."""
    if config.spec.api is Api.TF_KERAS:
        import tf_keras  # late: only a tf-keras worker, which runs with TF_USE_LEGACY_KERAS=1, loads it
        return tf_keras
    return keras


def build(config: BenchConfig, k: ModuleType):
    """The equivalence-tested model of `config.model` in Keras module `k` (float32 logits)."""
    k.utils.set_random_seed(config.seed)
    return build_model(config.model, config.input_shape(), config.classes(), precision=config.precision,
                       weights="none", keras_module=k)


def optimizer(config: BenchConfig, k: ModuleType):
    """The graph's optimizer rule in Keras `k` (`keras_api.optimizers.make_optimizer`: Keras 3's
    defaults). float16 gets Keras's LossScaleOptimizer, whose dynamic rule the graph writes out."""
    # Keras 2's TF1 graph mode trains with its legacy optimizers
    graph_mode = config.spec.runtime is Runtime.TF1_GRAPH_MODE
    opt = make_optimizer(config.optimizer, optimizers=k.optimizers.legacy if graph_mode else k.optimizers)
    if config.precision_spec.loss_scaled:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def ran_facts(config: BenchConfig, before: frozenset[str]) -> dict:
    """What the functions a Keras mode handed the runtime after `before` say ran: XLA, and the
    kernels of `kernel_facts` (Keras 2's TF1 graph mode: its graph's; eager: no record of them)."""
    if config.spec.runtime is Runtime.TF1_GRAPH_MODE:
        import tensorflow as tf  # late: the worker set the process state first
        return {"xla_effective": False, **kernel_facts(graph_op_types(tf.compat.v1.get_default_graph()))}
    facts = {"xla_effective": xla_compiled_since(before)}
    return {**facts, **kernel_facts(runtime_op_types(before))} if config.spec.traced else facts


def compile_for_training(model, config: BenchConfig, k: ModuleType, steps_per_execution: int = 1) -> None:
    """Compile `model` (Keras module `k`) as every Keras-driven training mode does: the graph's
    optimizer rule, cross-entropy from logits, the same accuracy, XLA as configured (Keras 3)."""
    options = {"jit_compile": config.xla} if k.__name__ == "keras" else {}
    if steps_per_execution > 1:
        options["steps_per_execution"] = steps_per_execution
    model.compile(optimizer=optimizer(config, k), metrics=[k.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  loss=k.losses.SparseCategoricalCrossentropy(from_logits=True), **options)


def updates_applied(model, k: ModuleType) -> int:
    """The optimizer's step counter as the model's backend holds it."""
    return int(k.backend.get_value(model.optimizer.iterations)) if hasattr(k.backend, "get_value") \
        else int(np.asarray(model.optimizer.iterations))


def _timer(k: ModuleType, config: BenchConfig, samples: int, tracer: Tracer | None = None,
           timed_step_s: float = 0.0, lead: int = 0):
    """A callback of Keras module `k`, made when its call starts, that records each batch-end's
    wall time / the steps per sample and stops the call after `lead` + `samples`. The first `lead`
    samples are not recorded: the window (and with `tracer`, cProfile on since before the call,
    so that it sees every frame of the loop, the profile) starts when the last of them ends, so a
    profiled call has `lead` >= 1 (`BenchConfig.profile_lead`). With `tracer` it profiles the
    recorded samples -> `accounting` (`timed_step_s`: the untraced statistic)."""
    per_sample = config.steps_per_sample()

    class StepTimes(k.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.last, self.seen, self.times, self.accounting = time.perf_counter(), 0, [], None

        def _end(self, logs) -> None:
            for value in (logs or {}).values():
                np.asarray(value)  # the step's results on the host: its work is done
            self.seen += 1
            if self.seen > lead:
                self.times.append((time.perf_counter() - self.last) / per_sample)
            elif self.seen == lead and tracer is not None:
                tracer.start_window()
            if tracer is not None and len(self.times) == samples:
                self.accounting = tracer.stop([t * per_sample for t in self.times], timed_step_s, per_sample)
            self.last = time.perf_counter()
            if self.seen >= lead + samples:
                self.model.stop_training = True
                self.model.stop_evaluating = True  # evaluate walks passes until the samples are in

        def on_train_batch_end(self, batch, logs=None):
            self._end(logs)

        def on_predict_batch_end(self, batch, logs=None):
            self._end(logs)

        def on_test_batch_end(self, batch, logs=None):
            self._end(logs)

    return StepTimes()


def _profiled(model, config: BenchConfig, timed_step_s: float, strategy=None) -> dict | None:
    """The accounting of `config.account` samples in a call of their own, after the timed ones; the
    call's first `config.profile_lead()` are not profiled, so that the window meets as many
    passes' set-ups per step as the timed samples did."""
    k = keras_module(config)
    tracer = Tracer()
    tracer.start_python()
    lead = config.profile_lead()
    timer = _timer(k, config, config.account, tracer, timed_step_s, lead)
    try:
        _call(model, config, lead + config.account, timer, strategy)
    finally:
        if timer.accounting is None:
            tracer.abandon()
    return timer.accounting


def _call(model, config: BenchConfig, samples: int, timer, strategy=None) -> None:
    """The mode's Keras call over `samples` samples, timed by `timer`: predict, evaluate or fit."""
    if not config.task_spec.scored:  # a prediction
        images = train_dataset(config).map(without_autograph(lambda x, y: x))
        model.predict(images, steps=samples, callbacks=[timer], verbose=0)
    elif config.task_spec.forward_only:
        _evaluate(model, config, samples, timer)
    else:
        _fit(model, config, samples * config.steps_per_sample(), timer, strategy)


def _evaluate(model, config: BenchConfig, total: int, timer) -> None:
    """`model.evaluate` over `total` batches: of the arrays, one call per pass as over a split
    (`evaluate(X_val, Y_val, batch_size=...)`), or of the dataset in one call."""
    if not config.data_spec.arrays:
        model.evaluate(train_dataset(config), steps=total, callbacks=[timer], verbose=0)
        return
    inputs, labels = numpy_arrays(config)
    while timer.seen < total:
        model.evaluate(inputs, labels, batch_size=config.batch, callbacks=[timer], verbose=0)


def _fit(model, config: BenchConfig, steps: int, timer, strategy=None) -> None:
    """`model.fit` over `steps` training steps: of the arrays as the textbook's
    `fit(X_train, Y_train, batch_size=...)` (epochs as needed), or of the dataset."""
    # Keras 2's graph mode makes its target placeholder with the output's rank: per-token labels
    # (B, T) of (B, T, C) logits go in as (B, T, 1), which its sparse loss and metric squeeze.
    rank_fix = config.spec.runtime is Runtime.TF1_GRAPH_MODE and bool(input_signature(config.model)[1])
    if config.data_spec.arrays:
        inputs, labels = numpy_arrays(config)
        epochs = math.ceil(steps * config.batch / len(inputs))
        model.fit(inputs, labels[..., None] if rank_fix else labels, batch_size=config.batch, epochs=epochs,
                  callbacks=[timer], verbose=0, shuffle=False)
        return
    data = train_dataset(config)
    if rank_fix:
        data = data.map(without_autograph(lambda x, y: (x, y[..., None])))
    if strategy is not None:  # each replica takes its slice of every global batch, as graph_api's
        data = shard_by_batch(data)
        build_before_fit(model, strategy, data)
    model.fit(data, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)


def run_fit(config: BenchConfig,
            placement: Placement = Placement()) -> tuple[list[float], float, dict, dict | None]:
    """One fit (predict, evaluate) of warm-up + timed samples, then one of the profiled ones
    (`_profiled`) -> (warm-up and timed sample times, build seconds (model, compile), facts, the
    profiled samples' accounting). Each
    sample is one step, or one execution of `steps_per_sample` steps reported per step. With
    `placement`'s strategy, fit runs on its replicas."""
    k = keras_module(config)
    started = time.perf_counter()
    functions = runtime_functions()
    strategy = placement.strategy
    per = config.steps_per_sample()
    with strategy_scope(strategy):
        model = build(config, k)
        if not config.task_spec.scored:  # a prediction
            model.compile(jit_compile=config.xla)
        else:  # evaluate computes training's loss and accuracy; it applies no update
            compile_for_training(model, config, k, per)
    build_s = time.perf_counter() - started
    timed = config.warmup + config.steps
    timer = _timer(k, config, timed)
    _call(model, config, timed, timer, strategy)
    accounting = _profiled(model, config, config.repeat_step(timer.times[config.warmup:timed]), strategy) \
        if config.account else None
    updates = updates_applied(model, k) if config.task_spec.updates else 0
    return timer.times[:timed], build_s, {**ran_facts(config, functions),
                                          "updates_applied": updates,
                                          "compute_dtypes": model_compute_dtypes(model),
                                          "replicas": strategy.num_replicas_in_sync if strategy is not None else 1}, \
        accounting
