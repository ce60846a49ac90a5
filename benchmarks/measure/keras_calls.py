"""The Keras modes in which our code calls Keras once per step: `keras-ctl` (custom loop
under `tf.function`), `eager` (GradientTape, no `tf.function`), `keras-tob` (`train_on_batch`
/ `predict_on_batch`), `keras-predict` (one `model.predict(x)` per batch, the textbook's loop)
and `keras-call` (one eager `model(x)`). Each step ends with its results on the host."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from benchmarks.config import BenchConfig
from benchmarks.measure.batches import numpy_batches, train_dataset
from benchmarks.measure.keras_fit import (
    build,
    compile_for_training,
    optimizer,
    ran_facts,
    updates_applied,
)
from benchmarks.measure.timing import Step, model_compute_dtypes, runtime_functions
from benchmarks.modes import Call, Driver


def _loop_step(config: BenchConfig, model: keras.Model) -> Step:
    """keras-ctl / eager: our own loop around the same Keras model."""
    iterator = iter(train_dataset(config))
    compiled = config.spec.traced
    if config.task_spec.forward_only:
        def infer(images):
            return model(images, training=False)
        run = tf.function(infer, jit_compile=config.xla) if compiled else infer
        return Step(lambda: run(next(iterator)[0]).numpy(),
                    facts=lambda: {"updates_applied": 0})
    opt = optimizer(config, keras)
    opt.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = loss_fn(labels, logits)
            scaled = opt.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        if not config.task_spec.updates:
            with tf.control_dependencies([g for g in gradients if g is not None]):  # computed, not applied
                loss = tf.identity(loss)
        else:
            opt.apply_gradients(zip(gradients, model.trainable_variables))
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return loss, tf.reduce_mean(tf.cast(tf.equal(predicted, labels), tf.float32))

    run = tf.function(train_step, jit_compile=config.xla) if compiled else train_step

    return Step(lambda: [t.numpy() for t in run(*next(iterator))],
                facts=lambda: {"updates_applied": int(np.asarray(opt.iterations))})


def _call_step(config: BenchConfig, model: keras.Model) -> Step:
    """keras-tob / keras-predict / keras-call on numpy batches."""
    batches = numpy_batches(config)
    if config.spec.call is Call.ON_BATCH and config.task_spec.updates:
        compile_for_training(model, config, keras)
        return Step(lambda: model.train_on_batch(*next(batches)),
                    facts=lambda: {"updates_applied": updates_applied(model, keras)})
    model.compile(jit_compile=config.xla)
    if config.spec.call is Call.ON_BATCH:
        call = model.predict_on_batch
    elif config.spec.call is Call.PREDICT:
        def call(x):
            return model.predict(x, verbose=0)
    else:
        def call(x):
            return model(x, training=False).numpy()
    return Step(lambda: call(next(batches)[0]),
                facts=lambda: {"updates_applied": 0})


def make_call_step(config: BenchConfig) -> Step:
    """The step of a Keras mode that our code drives."""
    functions = runtime_functions()
    model = build(config, keras)
    step = (_loop_step if config.spec.driver is Driver.LOOP else _call_step)(config, model)
    facts = step.facts
    step.facts = lambda: {**facts(), "compute_dtypes": model_compute_dtypes(model), **ran_facts(config, functions)}
    return step
