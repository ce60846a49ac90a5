"""The keras_api modes: `keras-fit` (compile/fit), `keras-ctl` (custom loop under
`tf.function`) and `eager` (GradientTape, no `tf.function`).

Steps are synchronised by reading the loss (or outputs) back to the host, so per-step
times include all of the step's work.
"""
from __future__ import annotations

import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_api import build_model
from keras_api.optimizers import make_optimizer

from .config import BenchConfig
from .inputs import train_dataset


def _model(config: BenchConfig, num_classes: int) -> keras.Model:
    keras.utils.set_random_seed(config.seed)
    return build_model(config.model, config.input_shape(), num_classes, precision=config.precision,
                       weights="none")


def _optimizer(config: BenchConfig) -> keras.optimizers.Optimizer:
    optimizer = make_optimizer("rmsprop")
    if config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class _StepTimes(keras.callbacks.Callback):
    """Wall time of each batch, synchronised by converting the step's logs to host values."""

    def __init__(self, start: float) -> None:
        super().__init__()
        self.last, self.times = start, []

    def _end(self, logs) -> None:
        for value in (logs or {}).values():
            np.asarray(value)
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now

    def on_train_batch_end(self, batch, logs=None):
        self._end(logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._end(logs)


def run_fit(config: BenchConfig, num_classes: int) -> tuple[list[float], dict]:
    """keras-fit: one `fit` (or `predict`) call of warm-up + timed steps -> (step times incl.
    the first, facts). Keras drives the loop, so it is timed from inside by a callback."""
    model = _model(config, num_classes)
    data = train_dataset(config)
    steps = config.warmup + config.steps
    if config.task == "train":
        model.compile(optimizer=_optimizer(config), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=config.xla)
        timer = _StepTimes(time.perf_counter())
        model.fit(data, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0, shuffle=False)
    else:
        model.compile(jit_compile=config.xla)
        timer = _StepTimes(time.perf_counter())
        model.predict(data.map(lambda x, y: x), steps=steps, callbacks=[timer], verbose=0)
    return timer.times, {"xla_effective": bool(model.jit_compile),
                         "xla_mechanism": "compile(jit_compile=True)" if model.jit_compile else None}


def make_loop_step(config: BenchConfig, num_classes: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """(step, close) for keras-ctl / eager: our own loop around the same Keras model."""
    model = _model(config, num_classes)
    iterator = iter(train_dataset(config))
    compiled = config.mode == "keras-ctl"
    if config.task == "inference":
        def infer(images):
            return model(images, training=False)
        run = tf.function(infer, jit_compile=config.xla) if compiled else infer
        return (lambda: run(next(iterator)[0]).numpy()), (lambda: None)
    optimizer = _optimizer(config)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = loss_fn(labels, logits)
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return loss, tf.reduce_mean(tf.cast(tf.equal(predicted, labels), tf.float32))

    run = tf.function(train_step, jit_compile=config.xla) if compiled else train_step
    return (lambda: [t.numpy() for t in run(*next(iterator))]), (lambda: None)
