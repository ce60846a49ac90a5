"""The harness on several replicas: N logical CPU devices and N localhost worker processes in
both APIs, scaling efficiency against one device, and the API ratio at each N."""
from __future__ import annotations

import json

import pytest

from benchmarks.analyse.records import ConfigSummary
from benchmarks.analyse.scaling import scaling_rows
from benchmarks.config import BenchConfig
from benchmarks.present.scaling import scaling_markdown
from benchmarks.presets import preset
from plumbing.errors import UserError

from conftest import assert_user_error, call_cli, run_cli


def _entry(mode: str, batch: int, medians: list[float], devices: int = 1, workers: int = 1) -> tuple[str, ConfigSummary]:
    config = BenchConfig(mode=mode, model="vgg16_head", batch=batch, devices=devices, workers=workers)
    entry = ConfigSummary(config, len(medians), [], throughput={"median": batch / sorted(medians)[len(medians) // 2]},
                          repeat_step_s={str(i): m for i, m in enumerate(medians)}, settings={"visible_gpus": 0})
    return config.key(), entry


def test_efficiency_is_one_device_step_time_over_n_replica_step_time_at_the_same_per_replica_batch():
    # one device: 0.10 s per step of 32; two devices: 0.125 s per step of 64 -> efficiency 0.8, speed-up 1.6
    configs = dict([_entry("graph", 32, [0.10, 0.10, 0.10]), _entry("graph", 64, [0.125, 0.125, 0.125], devices=2),
                    _entry("graph-replicated", 64, [0.25, 0.20, 0.25], devices=2),
                    _entry("keras-fit", 64, [0.2, 0.2, 0.2], workers=2)])
    rows = {(r["mode"], r["kind"]): r for r in scaling_rows(configs, 3)}
    graph = rows[("graph", "devices")]
    assert graph["n"] == 2 and graph["per_replica_batch"] == 32
    assert graph["efficiency"]["ratio"] == pytest.approx(0.8) and graph["speedup"]["ratio"] == pytest.approx(1.6)
    assert graph["efficiency"]["lo"] == pytest.approx(0.8)  # no spread between repeats: a point interval
    # graph-replicated scales from the one-device graph run; its spread gives a real interval
    replicated = rows[("graph-replicated", "devices")]
    assert replicated["one_replica_key"].startswith("graph/") and replicated["efficiency"]["ratio"] < 0.5
    assert replicated["efficiency"]["lo"] < replicated["efficiency"]["ratio"] < replicated["efficiency"]["hi"]
    # the one-device keras-fit run is missing: images/s without an efficiency
    assert rows[("keras-fit", "workers")]["efficiency"] is None
    text = "\n".join(scaling_markdown({"scaling": list(rows.values()), "configs": configs, "ratios": []},
                                      {"cpu_count": 2}))
    assert "Functional figures, not speed" in text and "0.80 [0.80, 0.80]" in text and "1.60x" in text


def test_replica_configurations_validate_and_say_what_cannot_run():
    assert BenchConfig(mode="graph", batch=64, devices=2).key().endswith("/2dev")
    assert BenchConfig(mode="keras-fit", batch=64, workers=2).key().endswith("/2workers")
    assert BenchConfig(mode="graph", batch=64, devices=2).one_replica() == BenchConfig(mode="graph", batch=32)
    assert BenchConfig(mode="graph", batch=64, workers=2).bundle() != BenchConfig(mode="graph", batch=32,
                                                                                   workers=2).bundle()
    with pytest.raises(UserError, match="does not split evenly over 4 replicas"):
        BenchConfig(mode="graph", batch=30, devices=4).validate()
    with pytest.raises(UserError, match="devices and workers must be >= 1"):
        BenchConfig(mode="graph", workers=0).validate()
    reasons = {"graph-replicated": dict(devices=1), "keras-ctl": dict(devices=2, batch=64),
               "graph-feed": dict(workers=2, batch=64)}
    for mode, fields in reasons.items():
        assert BenchConfig(mode=mode, **fields).applicable(), mode
    assert "one device" in BenchConfig(mode="graph", batch=64, devices=2, workers=2).applicable()
    assert "XLA off" in BenchConfig(mode="keras-fit", batch=64, devices=2, xla=True).applicable()
    # the gpu preset sweeps 1/2/4/8 GPUs at 64 images per GPU in both APIs; the scaling preset runs here
    gpu = [c for c in preset("gpu")[0] if c.replicas() > 1]
    assert {c.devices for c in gpu} == {2, 4, 8} and {c.batch // c.devices for c in gpu} == {64}
    assert {c.mode for c in gpu} == {"graph", "graph-replicated", "keras-fit"}
    assert all(c.applicable() is None for c in preset("scaling")[0])


@pytest.mark.slow
def test_scaling_preset_runs_on_logical_devices_and_localhost_workers_in_both_apis(tmp_path):
    """The scaling preset, tiny: one device, two logical CPU devices and two localhost worker
    processes (graph: plus a ps task), graph and Keras; every step an update on every replica."""
    out = tmp_path / "run"
    result = run_cli("benchmarks", "run", "--preset", "scaling", "--devices", "1", "2", "--steps", "2", "--warmup", "1",
                     "--repeats", "1", "--out", str(out), timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    runs = {r["key"]: r for r in results["runs"]}
    assert all(r["ok"] for r in runs.values()), [r.get("error") for r in runs.values()]
    placed = {(r["config"]["mode"], r["config"]["devices"], r["config"]["workers"]) for r in runs.values()}
    assert placed == {("graph", 1, 1), ("keras-fit", 1, 1), ("graph", 2, 1), ("graph-replicated", 2, 1),
                      ("keras-fit", 2, 1), ("graph", 1, 2), ("keras-fit", 1, 2)}
    for r in runs.values():
        config = BenchConfig.from_dict(r["config"])
        # the replicas each side ran on as the runtime reports them (graph: devices of a traced step)
        assert r["settings"]["replicas"] == config.replicas(), r["key"]
        # every sample a step, the profiled call's first (`profile_lead`) as well
        ran = config.steps + config.warmup + config.profile_lead() + config.account
        assert r["updates_applied"] == ran and len(r["step_times_s"]) == config.steps
    summary = results["summary"]
    assert not summary["refused"]
    assert {(row["mode"], row["kind"]) for row in summary["scaling"]} == {
        ("graph", "devices"), ("graph-replicated", "devices"), ("keras-fit", "devices"), ("graph", "workers"),
        ("keras-fit", "workers")}
    assert all(row["efficiency"]["ratio"] > 0 for row in summary["scaling"])
    ratio_groups = {r["group"] for r in summary["ratios"]}
    assert any(g.endswith("/2dev") for g in ratio_groups) and any(g.endswith("/2workers") for g in ratio_groups)
    report = (out / "report.md").read_text()
    assert "## Scaling over devices and workers" in report and "Functional figures, not speed" in report
    assert (out / "scaling.png").stat().st_size > 0 and "![scaling.png](scaling.png)" in report
    # a filter that leaves nothing is one clear line
    bad = call_cli("benchmarks", "run", "--preset", "scaling", "--workers", "3", "--out", str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()
    assert_user_error(bad, "no configuration left",
                      line="error: no configuration left after --modes/--models/--batches/--devices/--workers")
    bad = call_cli("benchmarks", "run", "--preset", "scaling", "--devices", "0", "--out", str(tmp_path / "none"))
    assert_user_error(bad, "--devices")
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_a_cluster_whose_worker_fails_is_recorded_and_every_process_stopped():
    """A worker that cannot run (a GPU configuration with every GPU hidden) exits with an error;
    the ps would serve forever. The runner records the error of the worker that failed first (either
    may) and stops the rest."""
    from benchmarks.measure.runner import run_bundle, worker_env
    config = BenchConfig(mode="graph", model="mlp", batch=4, workers=2, device="gpu", steps=1, warmup=0)
    [record] = run_bundle([config], {**worker_env(), "CUDA_VISIBLE_DEVICES": "-1"}, timeout=600)
    assert not record["ok"] and "no GPU visible" in record["error"], record
    assert "timed out" not in record["error"]  # stopped on the failure, not at the timeout


def test_a_failed_task_is_reported_by_the_error_of_its_last_result_record(tmp_path):
    """A task's last line is often its result record, mostly configuration: the error is read from
    it, not cut from the line's start; a record cut short by the kill, or plain output, is shown as is."""
    from benchmarks.measure.protocol import RESULT_MARK
    from benchmarks.measure.replicas import task_error
    log = tmp_path / "worker-1.log"
    config = BenchConfig(mode="graph", model="mlp", batch=4, workers=2, device="gpu")
    record = {"key": config.key(), "config": config.to_dict(), "ok": False, "error": "UserError: no GPU visible"}
    log.write_text("starting\n" + RESULT_MARK + json.dumps(record) + "\n\n")
    assert task_error(log) == "UserError: no GPU visible"
    log.write_text(RESULT_MARK + json.dumps(record)[:80])
    assert task_error(log) == RESULT_MARK + json.dumps(record)[:80]
    log.write_text("Traceback (most recent call last):\nMemoryError\n")
    assert task_error(log) == "MemoryError"
    log.write_text("")
    assert task_error(log) == "no output"
