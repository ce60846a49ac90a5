"""Benchmark configurations of one mode, one after another in their own process:

    python -m benchmarks.measure.worker '<JSON list of configurations>'

prints one line ``RESULT <JSON>`` per configuration with the per-sample step times (warm-up
included, marked), the accounting of its profiled samples if asked (`benchmarks.measure.accounting`),
the time to the first step, its own peak memory (`benchmarks.measure.memory`),
what the process observed (updates applied, XLA compiled, runtime, thread pools) and the
settings that must match across modes.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import replace

from benchmarks.config import PINNED_ENV, BenchConfig
from benchmarks.measure.accounting import traced
from benchmarks.measure.memory import (
    PeakMemory,
    configuration_peak,
    custom_gradients,
    release_graphs,
    settle,
    start_configuration,
)
from benchmarks.measure.protocol import result_line
from benchmarks.measure.replicas import Placement, prepare
from benchmarks.measure.timing import timed_steps
from benchmarks.modes import Api, Driver, Runtime
from data_pipeline.shards import load_manifest
from plumbing.errors import UserError

# Measured per configuration and compared across modes: an API's own choice (e.g. fit's
# thread pools) that differs from the other side's shows up as a refused comparison.
FACT_SETTINGS = ("xla_effective", "intra_op_threads", "inter_op_threads", "replicas")


def _settings(config: BenchConfig, facts: dict, env: dict) -> dict:
    """Everything but the mode that shapes the measurement, as this process saw it."""
    import keras  # late: after _prepare_process set the process state
    import tensorflow as tf  # as keras
    settings = {k: v for k, v in config.to_dict().items() if k != "mode"}
    settings.update(num_classes=config.classes(), tensorflow=tf.__version__, keras=keras.__version__,
                    python=platform.python_version(),
                    intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
                    inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
                    cpu_count=os.cpu_count(), visible_gpus=len(tf.config.list_physical_devices("GPU")), env=env)
    settings.update({name: facts[name] for name in FACT_SETTINGS if name in facts})
    settings["passes"] = config.pass_note()  # whole passes on one side and within one on the other: refused
    settings.setdefault("replicas", 1)  # a mode that cannot run on several replicas ran on one
    return settings


def _num_classes(config: BenchConfig) -> int:
    """The class count of the shards a pipeline configuration reads."""
    return len(load_manifest(config.manifest)["class_names"])


def _keras_used(config: BenchConfig) -> str:
    if config.spec.api is Api.TF_KERAS:
        import tf_keras  # late: only the mode's own API is loaded
        return f"tf-keras {tf_keras.__version__}"
    if config.spec.is_graph:
        return "none"
    import keras  # late: only the mode's own API is loaded
    return f"keras {keras.__version__}"


def measure(config: BenchConfig, env: dict, placement: Placement = Placement()) -> dict:
    """Build the mode's model and step on `placement`'s replicas, run warm-up + timed samples
    -> result record."""
    import tensorflow as tf  # late: after _prepare_process set the process state
    if not tf.config.list_physical_devices(config.device_spec.tf_type):
        raise RuntimeError(f"no {config.device_spec.tf_type} visible to TensorFlow")
    if config.data_spec.shards:  # the shards' classes, read once
        config = replace(config, num_classes=_num_classes(config))
    total = config.warmup + config.steps
    # Imports before any timer, so the first step is the same span in every mode and every
    # position of a bundle (building and running it, never loading a library).
    keras_used = _keras_used(config)
    if config.spec.driver is Driver.FIT:
        from benchmarks.measure.keras_fit import run_fit  # late: only the mode's own API is loaded
    elif config.spec.is_graph:
        from benchmarks.measure.graph_steps import make_graph_step  # late: only the mode's own API is loaded
    else:
        from benchmarks.measure.keras_calls import make_call_step  # late: only the mode's own API is loaded
    start_mb = start_configuration()
    if config.spec.driver is Driver.FIT:
        times, build_s, facts, account = run_fit(config, placement)
    else:
        started = time.perf_counter()
        step = make_graph_step(config, placement) if config.spec.is_graph else make_call_step(config)
        build_s = time.perf_counter() - started
        try:
            times = timed_steps(step.run, total)
            account = traced(lambda: timed_steps(step.run, config.account),
                             config.repeat_step(times[config.warmup:])) if config.account else None
            facts = step.facts()
        finally:
            step.close()
    if len(times) != total:
        raise RuntimeError(f"expected {total} step times, got {len(times)}")
    per, ran = config.steps_per_sample(), total + config.profile_lead() + config.account
    applied = facts.get("updates_applied")
    # float16's dynamic loss scale skips (does not count) steps whose gradients overflowed
    skipped_ok = config.precision_spec.loss_scaled and applied is not None and 0 < applied <= ran * per
    if config.task_spec.updates and applied != ran * per and not skipped_ok:
        raise RuntimeError(f"{facts.get('updates_applied')} updates applied, expected {ran * per}: the timed "
                           "samples are not the steps they claim to be")
    from graph_api import runtime_facts  # late: after _prepare_process set the process state
    return {"config": config.to_dict(), "key": config.key(), "ok": True,
            "build_s": build_s, "first_step_s": build_s + times[0] * per, "steps_per_sample": per,
            "warmup_times_s": times[:config.warmup], "step_times_s": times[config.warmup:],
            "updates_applied": facts.get("updates_applied"), "xla_cluster_ops": facts.get("xla_cluster_ops"),
            "sparse_update_ops": facts.get("sparse_update_ops"),
            "fused_batch_norm_ops": facts.get("fused_batch_norm_ops"), "compute_dtypes": facts.get("compute_dtypes"),
            **_memory_fields(configuration_peak(start_mb)), "keras_used": keras_used, "runtime": runtime_facts(),
            "settings": _settings(config, facts, env), "accounting": account}


def _memory_fields(peak: PeakMemory) -> dict:
    return {"peak_rss_mb": peak.peak_mb, "start_rss_mb": peak.start_mb, "peak_rss_scope": peak.scope}


def _prepare_process(config: BenchConfig) -> Placement:
    """The process state a bundle's mode needs, set before TensorFlow runs anything -> where its
    replicas are."""
    if config.device_spec.hides_gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # a CPU run on a GPU machine stays on the CPU
    if config.xla and config.device_spec.xla_needs_global_jit:
        # Session auto-clustering skips the CPU unless told (it compiled nothing without this);
        # set for every XLA mode so that the environments compared are the same.
        os.environ["TF_XLA_FLAGS"] = f"{os.environ.get('TF_XLA_FLAGS', '')} --tf_xla_cpu_global_jit".strip()
    if config.spec.runtime is Runtime.TF1:
        from graph_api import use_tf1_runtime  # late: sets the runtime the process starts with
        use_tf1_runtime()  # graph_api's modes time the TF1 program the CLI runs
    if config.spec.runtime is Runtime.TF1_GRAPH_MODE:
        import tensorflow as tf  # late: after _prepare_process set the process state
        tf.compat.v1.disable_eager_execution()  # Keras 2 in TF1 graph mode, Session underneath
    return prepare(config)


def _error_record(config: BenchConfig, err: BaseException) -> dict:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return {"config": config.to_dict(), "key": config.key(), "ok": False,
            "error": f"{type(err).__name__}: {message[:300]}"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    loaded = json.loads(argv[0])
    configs = [BenchConfig.from_dict(c) for c in (loaded if isinstance(loaded, list) else [loaded])]
    if len({c.bundle() for c in configs}) != 1:
        raise SystemExit("error: a worker runs configurations of one bundle (mode and environment)")
    try:
        placement = _prepare_process(configs[0])
    except UserError as err:  # e.g. more devices than the machine has: every configuration fails
        for config in configs:
            print(result_line(_error_record(config, err)), flush=True)
        return 1
    if placement.is_ps:
        from graph_api import serve_parameters  # late: only the mode's own API is loaded
        serve_parameters(placement.cluster)  # until every worker has finished its steps
        return 0
    env = {name: os.environ.get(name) for name in PINNED_ENV}  # as this process runs with them
    settle()  # the first configuration, too, starts with the process's own objects frozen
    failed = 0
    for config in configs:
        registered = custom_gradients()
        try:
            result = measure(config, env, placement)
        except Exception as err:  # recorded for this configuration; the run goes on (as timm does)
            result = _error_record(config, err)
        failed += not result["ok"]
        print(result_line(result), flush=True)
        release_graphs(registered)  # the next configuration runs without this one's graphs
        if not config.spec.is_graph:
            from benchmarks.measure.keras_fit import keras_module  # late: only the mode's own API is loaded
            # the next model starts from a clean Keras state; `settle` is the one collection
            skip_collection = {"free_memory": False} if config.spec.api is Api.KERAS else {}  # Keras 2 has none
            keras_module(config).backend.clear_session(**skip_collection)
        settle()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
