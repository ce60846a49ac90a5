"""The mode, task, data and device tables: each record decides what the harness does with it."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.config import BenchConfig
from benchmarks.devices import device_named
from benchmarks.modes import MODE_NAMES, MODES, STEPS_PER_EXECUTION, Api, Driver, Feed, mode_named
from benchmarks.sources import source_named
from benchmarks.tasks import TASKS, task_named
from plumbing.errors import UserError


@pytest.mark.parametrize("lookup, field, name, message", [
    (mode_named, "mode", "session", "unknown mode 'session': expected one of " + ", ".join(MODE_NAMES)),
    (task_named, "task", "fit", "unknown task 'fit': expected one of train, gradients, inference, evaluate"),
    (source_named, "data", "csv", "unknown data 'csv': expected one of synthetic, numpy, pipeline"),
    (device_named, "device", "tpu", "unknown device 'tpu': expected one of cpu, gpu"),
])
def test_an_unknown_name_is_one_error_naming_the_tables_choices(lookup, field, name, message):
    with pytest.raises(UserError) as err:
        lookup(name)
    assert err.value.message == message
    with pytest.raises(UserError):
        BenchConfig(**{field: name}).validate()


@pytest.mark.parametrize("name", MODE_NAMES)
def test_a_mode_times_exactly_the_tasks_its_record_lists(name):
    spec = MODES[name]
    devices = spec.min_devices
    for task in TASKS.values():
        model = "resnet50" if spec.bn.fused else "vgg16_head"  # fused batch norm needs batch norm
        config = BenchConfig(mode=name, model=model, task=task.name, batch=2 * devices, devices=devices)
        reason = config.applicable()
        if task in spec.tasks:
            assert reason is None, (name, task, reason)
        else:
            assert reason, (name, task)
    assert BenchConfig(mode=name).steps_per_sample() == spec.steps_per_execution


def test_the_batches_a_step_reads_are_what_its_sources_record_says():
    """synthetic feeds one batch again every step; numpy walks its arrays batch by batch."""
    from benchmarks.measure.batches import numpy_batches
    repeated = {}
    for name in ("synthetic", "numpy"):
        batches = numpy_batches(BenchConfig(model="mlp", data=name, batch=4, steps=2, warmup=0))
        first, second = next(batches), next(batches)
        repeated[name] = all(np.array_equal(a, b) for a, b in zip(first, second))
    assert repeated == {"synthetic": True, "numpy": False}


def test_a_graph_step_computes_what_its_task_record_says():
    """train fetches the update, the loss and the accuracy and applies one update per step;
    gradients the loss and accuracy of a backward pass it does not apply; evaluate a batch's
    loss and accuracy; inference the logits."""
    from benchmarks.measure.graph_steps import make_graph_step
    fetched, applied = {}, {}
    for task in TASKS:
        step = make_graph_step(BenchConfig(mode="graph-feed", model="mlp", task=task, batch=4, data="numpy",
                                           steps=1, warmup=0))
        try:
            fetched[task] = [getattr(value, "shape", None) for value in step.run()]
            step.run()
            applied[task] = step.facts()["updates_applied"]
        finally:
            step.close()
    classes = BenchConfig(model="mlp").classes()
    assert fetched == {"train": [None, (), ()], "gradients": [(), ()], "evaluate": [(), ()],
                       "inference": [(4, classes)]}
    assert applied == {"train": 2, "gradients": 0, "evaluate": 0, "inference": 0}


def test_records_carry_what_the_steps_are_built_from():
    from benchmarks.measure.graph_steps import _graph_config
    graph_modes = {n: m for n, m in MODES.items() if m.api is Api.GRAPH}
    built = {n: _graph_config(BenchConfig(mode=n, model="resnet50", image_size=32)) for n in graph_modes}
    assert {n: c.bn_mode for n, c in built.items()} == {n: ("fused" if n == "graph-fused-bn" else "keras")
                                                       for n in graph_modes}
    assert {n: c.feed for n, c in built.items() if c.feed == "feed_dict"} == {"graph-feed": "feed_dict"}
    assert {n for n, c in built.items() if c.variable_update_spec.copy_per_device} == {"graph-replicated"}
    assert [n for n, m in MODES.items() if m.steps_per_execution == STEPS_PER_EXECUTION] == ["keras-fit-spe"]
    assert {n for n, m in MODES.items() if m.driver is Driver.FIT} == {"keras-fit", "keras-fit-spe", "tfkeras-fit",
                                                                       "tfkeras-v1"}
    assert {n for n, m in MODES.items() if m.feed is Feed.FEED_DICT} == {"graph-feed"}
    # several replicas scale from a one-device mode of the same API
    for spec in MODES.values():
        if spec.scaling_base:
            assert MODES[spec.scaling_base].api is spec.api and MODES[spec.scaling_base].min_devices == 1


@pytest.mark.parametrize("mode", ["graph", "graph-feed"])
def test_a_timed_graph_builds_the_model_once(mode):
    """The graph a training configuration times holds the train tower alone, as `fit` without
    validation data traces one training function: an inference tower beside it would add to
    the graph side's build and first step and to the op types read from the graph. The MLP's
    forward pass is two matrix products (hidden and prediction layers)."""
    from benchmarks.measure.graph_steps import _train_step
    from benchmarks.measure.replicas import Placement
    parts = _train_step(BenchConfig(mode=mode, model="mlp", batch=4, data="numpy"), Placement())
    forward = [op.name for op in parts.graph.get_operations()
               if op.type == "MatMul" and not op.name.startswith("gradients/")]
    assert forward == ["dense/MatMul", "prediction/MatMul"]
