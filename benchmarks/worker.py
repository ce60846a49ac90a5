"""One benchmark configuration, in its own process:

    python -m benchmarks.worker '<config JSON>'

prints one line ``RESULT <JSON>`` with the per-step times (warm-up included, marked),
the time to the first step, peak memory, and the settings that must match across modes.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time

from .config import GRAPH_MODES, PINNED_ENV, TF2_RUNTIME_MODES, BenchConfig

RESULT_MARK = "RESULT "


def _settings(config: BenchConfig, num_classes: int, facts: dict, env: dict) -> dict:
    """Everything but the mode that shapes the measurement, as this process saw it."""
    import keras
    import tensorflow as tf
    settings = {k: v for k, v in config.to_dict().items() if k != "mode"}
    settings.update(num_classes=num_classes, tensorflow=tf.__version__, keras=keras.__version__,
                    python=platform.python_version(),
                    intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
                    inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
                    cpu_count=os.cpu_count(), xla_effective=facts.get("xla_effective", config.xla),
                    visible_gpus=len(tf.config.list_physical_devices("GPU")),
                    env=env)
    return settings


def _num_classes(config: BenchConfig) -> int:
    if config.data == "pipeline":
        from data_pipeline.shards import load_manifest
        return len(load_manifest(config.manifest)["class_names"])
    return config.num_classes


def _timed_steps(step, total: int) -> list[float]:
    times = []
    for _ in range(total):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def measure(config: BenchConfig, env: dict) -> dict:
    """Build the mode's model and step, run warm-up + timed steps -> result record."""
    import tensorflow as tf
    if config.device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise RuntimeError("no GPU visible to TensorFlow")
    num_classes = _num_classes(config)
    facts: dict = {}
    started = time.perf_counter()
    total = config.warmup + config.steps
    if config.mode == "keras-fit":
        from .keras_modes import run_fit
        times, facts = run_fit(config, num_classes)
        build_s = 0.0
    else:
        if config.mode in ("keras-ctl", "eager"):
            from .keras_modes import make_loop_step as make_step
        else:
            from .graph_modes import make_graph_step as make_step
        step, close = make_step(config, num_classes)
        build_s = time.perf_counter() - started
        try:
            times = _timed_steps(step, total)
        finally:
            close()
        if config.xla:
            facts["xla_mechanism"] = ("tf.function(jit_compile=True)" if config.mode == "keras-ctl" else
                                      "Session global_jit_level ON_1 + TF_XLA_FLAGS=--tf_xla_cpu_global_jit")
    if len(times) != total:
        raise RuntimeError(f"expected {total} step times, got {len(times)}")
    from graph_api.graph import runtime_facts
    facts["runtime"] = runtime_facts()
    return {"config": config.to_dict(), "key": config.key(), "ok": True,
            "build_s": build_s, "first_step_s": build_s + times[0],
            "warmup_times_s": times[:config.warmup], "step_times_s": times[config.warmup:],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "xla_mechanism": facts.get("xla_mechanism"), "runtime": facts["runtime"],
            "settings": _settings(config, num_classes, facts, env)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config = BenchConfig.from_dict(json.loads(argv[0]))
    env = {name: os.environ.get(name) for name in PINNED_ENV}  # the caller's, the same for every mode
    if config.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # a CPU run on a GPU machine stays on the CPU
    if config.xla and config.mode in GRAPH_MODES and config.device == "cpu":
        # Session auto-clustering skips the CPU unless told (it compiled nothing without this).
        os.environ["TF_XLA_FLAGS"] = f"{os.environ.get('TF_XLA_FLAGS', '')} --tf_xla_cpu_global_jit".strip()
    if config.mode in GRAPH_MODES and config.mode not in TF2_RUNTIME_MODES:
        from graph_api.graph import use_tf1_runtime
        use_tf1_runtime()  # graph_api's modes time the TF1 program the CLI runs
    try:
        result = measure(config, env)
    except Exception as err:  # recorded for this configuration; the run goes on (as timm does)
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        result = {"config": config.to_dict(), "key": config.key(), "ok": False,
                  "error": f"{type(err).__name__}: {message[:300]}"}
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
