"""Data parallelism on one machine: towers and MirroredStrategy on two logical CPU devices, and
localhost clusters (graph_api: a ps and two workers; keras_api: two workers) on free ports.
A step at global batch B on N devices or workers is the one-device step at B."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from shard_helpers import feature_shards

from api_runs.devices import localhost_jobs
from api_runs.train_options import KILL_AT_STEP_ENV

from cluster_helpers import Cluster
from conftest import REPO, assert_user_error, call_cli, checkpoint_tensors, run_cli, saved_graph_nodes

# float32 sums of the same numbers in another order (two half-batch means, then their mean).
pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

# RMSprop divides by the root of its running mean, which amplifies that: 3.4e-5 measured on an
# AVX2-only CPU (Eigen's kernels), under 1e-5 with oneDNN's.
TOLERANCE = 5e-5


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return feature_shards(tmp_path_factory.mktemp("features"), n_train=64, n_val=16)


@pytest.fixture(scope="module")
def start_weights(tmp_path_factory):
    """A Keras weights file of the VGG16 head both APIs and every process start from."""
    import keras

    from keras_api.model import build_model
    keras.utils.set_random_seed(1)
    path = tmp_path_factory.mktemp("weights") / "head.weights.h5"
    build_model("vgg16_head", (2, 2, 512), 4, dropout=0.0).save_weights(path)
    return path


@pytest.mark.parametrize("api", ["graph", "keras"])
def test_two_devices_step_equals_one_device_step(api):
    out = subprocess.run([sys.executable, "tests/distribute_probe.py", api], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, out.stderr[-3000:]
    report = json.loads(line[0].removeprefix("RESULT "))
    gaps = {k: v for k, v in report.items() if not k.endswith("/moved")}
    assert len(gaps) == (6 if api == "graph" else 2)
    assert all(gap < TOLERANCE for gap in gaps.values()), report
    # the steps moved the weights far more than the tolerance: the comparison can fail
    assert all(v > 1000 * TOLERANCE for k, v in report.items() if k.endswith("/moved")), report


@pytest.mark.parametrize("package,devices,extra", [("graph_api", "2", ["--variable-update", "replicated"]),
                                                   ("graph_api", "2", ["--variable-update", "parameter_server"]),
                                                   ("keras_api", "/cpu:0,/CPU:1", ["--jit-compile"])])
def test_devices_flag_trains_on_two_logical_devices(features, tmp_path, package, devices, extra):
    out = tmp_path / "run"
    result = run_cli(package, "train", "--model", "vgg16_head", "--manifest", str(features), "--out", str(out),
                     "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--devices", devices, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    placement = json.loads((out / "run_config.json").read_text())["placement"]
    assert placement["device_kind"] == "logical CPU"
    if package == "graph_api":
        assert placement["towers"] == 2 and placement["variable_update"] == extra[1]
        assert [d[-5:] for d in placement["executed_devices"]] == ["CPU:0", "CPU:1"]
        # replicated: tower 1 holds its own copy of every variable on CPU:1; parameter_server:
        # one copy, on the host, that both towers read
        weights = [n for n in saved_graph_nodes(out) if n.op == "VariableV2" and n.name.endswith(("kernel", "bias"))]
        device = {n.name: n.device.upper().replace("/DEVICE:", "/") for n in weights}
        copies = {name.removeprefix("replica_1/"): d for name, d in device.items() if name.startswith("replica_1/")}
        tower_0 = {name: d for name, d in device.items() if not name.startswith("replica_1/")}
        assert len(tower_0) == 8 and set(tower_0.values()) == {"/CPU:0"}, tower_0
        assert copies == ({name: "/CPU:1" for name in tower_0} if extra[1] == "replicated" else {})
    else:
        assert placement["strategy"] == "MirroredStrategy" and placement["replicas"] == 2
        # XLA was asked for; Keras turns it off under a strategy, and the record says what ran
        assert placement["jit_compile_requested"] is True and placement["jit_compile"] is False
    odd = run_cli(package, "train", "--model", "vgg16_head", "--manifest", str(features), "--out",
                  str(tmp_path / "odd"), "--batch-size", "7", "--devices", "2")
    assert_user_error(odd, "--batch-size", line="error: --batch-size: the global batch 7 does not split evenly over 2 "
                      + ("devices" if package == "graph_api" else "replicas"))
    assert not (tmp_path / "odd").exists()


PS_CLUSTER = '{"cluster": {"worker": ["localhost:1"], "ps": ["localhost:2"]}, "task": {"type": "worker", "index": 0}}'
BAD_PLACEMENT = [  # (api, flags, TF_CONFIG or a --cluster file's text, the error line)
    ("graph_api", ["--devices", "0"], None, "error: --devices: must be at least 1"),
    ("keras_api", ["--devices", "gpu0"], None,
     "error: --devices: 'gpu0' is neither a count nor a device like /gpu:0 or /cpu:1"),
    ("keras_api", ["--devices", "/cpu:1,/cpu:1"], None, "error: --devices: '/cpu:1,/cpu:1' names a device twice"),
    ("graph_api", ["--cluster", "{missing}"], None, "error: {missing}: cannot read the cluster file (No such file or directory)"),
    ("keras_api", [], "{not json", "error: {source}: not JSON (Expecting property name enclosed in double quotes at line 1)"),
    ("graph_api", [], '{"cluster": {"worker": ["localhost:1"], "evaluator": ["localhost:2"]}, "task": {"type": "worker"}}',
     "error: {source}: unknown job 'evaluator': expected chief, worker, ps"),
    ("keras_api", [], '{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
     "error: {source}: job 'worker' must list addresses as \"host:port\""),
    ("graph_api", [], '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 1}}',
     "error: {source}: task.index 1 is not a task of job 'worker'"),
    ("graph_api", [], '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}}',
     "error: {source}: graph_api's between-graph replication keeps the variables on 'ps' tasks; the cluster has none"),
    ("keras_api", [], '{"cluster": {"worker": ["localhost:1"], "ps": ["localhost:2"]}, "task": {"type": "worker"}}',
     "error: {source}: keras_api trains a cluster of worker (and chief) tasks with MultiWorkerMirroredStrategy; "
     "'ps' tasks are for graph_api"),
    ("graph_api", ["--feed", "feed_dict"], PS_CLUSTER,
     "error: --feed: a cluster run reads its batches with the in-graph iterator (dataset)"),
    ("graph_api", ["--patience", "2"], PS_CLUSTER, "error: --patience: early stopping is not available in a cluster run"),
    ("keras_api", ["--devices", "2"], '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker"}}',
     "error: --devices: a worker of a cluster trains on its default device; leave --devices out"),
]


@pytest.mark.parametrize("api,flags,config,line,via", [
    case + (via,) for case in BAD_PLACEMENT for via in (("file", "TF_CONFIG") if case[2] is not None else ("flag",))])
def test_bad_devices_or_cluster_is_one_line_and_writes_nothing(features, tmp_path, monkeypatch,
                                                               api, flags, config, line, via):
    """In this process: each refusal comes before any device is configured or file written."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    source, flags = "TF_CONFIG", [f.replace("{missing}", str(tmp_path / "none.json")) for f in flags]
    if config is not None and via == "file":
        source = str(tmp_path / "cluster.json")
        (tmp_path / "cluster.json").write_text(config)
        flags = flags + ["--cluster", source]
    elif config is not None:
        monkeypatch.setenv("TF_CONFIG", config)
    # a flag's type error exits from argparse, the others return the status: call_cli takes both
    result = call_cli(api, "train", "--model", "vgg16_head", "--manifest", str(features), "--out",
                      str(tmp_path / "run"), *flags)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        line.replace("{source}", source).replace("{missing}", str(tmp_path / "none.json"))]
    assert not (tmp_path / "run").exists()


def _train_args(features, start_weights, epochs: int, steps: int) -> list[str]:
    return ["--model", "vgg16_head", "--manifest", str(features), "--epochs", str(epochs), "--steps-per-epoch",
            str(steps), "--batch-size", "16", "--optimizer", "sgd", "--learning-rate", "0.05", "--dropout", "0",
            "--init-weights", str(start_weights)]


def _checkpoint(prefix) -> dict:
    return {name: value for name, value in checkpoint_tensors(prefix).items()
            if name.split("/")[-1] in ("kernel", "bias")}


def test_graph_cluster_step_equals_one_process(features, start_weights, tmp_path):
    args = _train_args(features, start_weights, 1, 3)
    one = run_cli("graph_api", "train", *args, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    with Cluster("graph_api", localhost_jobs(2, ps=1), args, tmp_path / "logs") as cluster:
        cluster.start("ps", 0, tmp_path / "ps", via_file=True)  # the same JSON from --cluster FILE
        cluster.start("worker", 0, tmp_path / "two")
        cluster.start("worker", 1, tmp_path / "two", via_file=True)
        assert [cluster.wait("worker", i) for i in (0, 1)] == [0, 0], cluster.log("worker", 0)[-3000:]
        assert cluster.wait("ps", 0) == 0  # the ps stops once both workers report
    single, replicated = _checkpoint(tmp_path / "one/final/ckpt"), _checkpoint(tmp_path / "two/final/ckpt")
    assert single.keys() == replicated.keys() and len(single) == 8
    assert max(np.abs(single[k] - replicated[k]).max() for k in single) < TOLERANCE


def _graph_cluster(args, tmp_path, name: str, chief_env: dict | None = None,
                   worker_env: dict | None = None) -> Cluster:
    """A ps and two workers, worker 1 started first and waiting for the chief before worker 0
    starts, so the chief's first update never waits on a worker that is still starting."""
    cluster = Cluster("graph_api", localhost_jobs(2, ps=1), args, tmp_path / f"logs-{name}")
    cluster.start("ps", 0, tmp_path / f"ps-{name}")
    cluster.start("worker", 1, tmp_path / f"other-{name}", env=worker_env)
    cluster.wait_for("worker", 1, "waiting for the chief")
    cluster.start("worker", 0, tmp_path / name, env=chief_env)
    return cluster


def test_graph_cluster_waits_for_a_killed_worker_and_ends_as_an_uninterrupted_run(features, start_weights,
                                                                                   tmp_path):
    """Every step takes one gradient of each worker: worker 1, SIGKILLed by its own hook right
    after its 25th step (mid-epoch 2), is waited for; restarted, it rejoins at global step 25,
    and the run ends with the weights of a run nobody killed."""
    args = _train_args(features, start_weights, 3, 20)
    with _graph_cluster(args, tmp_path, "whole") as cluster:
        assert [cluster.wait("worker", i) for i in (0, 1)] == [0, 0], cluster.log("worker", 0)[-3000:]
        assert cluster.wait("ps", 0) == 0
    with _graph_cluster(args, tmp_path, "chief", worker_env={KILL_AT_STEP_ENV: "25"}) as cluster:
        assert cluster.wait("worker", 1) == -signal.SIGKILL, cluster.log("worker", 1)[-3000:]
        assert cluster.procs[("worker", 0)].poll() is None  # the chief waits for it
        cluster.start("worker", 1, tmp_path / "other-chief")
        assert cluster.wait("worker", 1) == 0, cluster.log("worker", 1)[-3000:]
        assert cluster.wait("worker", 0) == 0, cluster.log("worker", 0)[-3000:]
        assert cluster.wait("ps", 0) == 0
        joined = [int(line.rsplit(" ", 1)[1]) for line in cluster.log("worker", 1).splitlines()
                  if "joined at global step" in line]
    # the chief did not go on alone: the restart joined at the step after its last gradient
    assert joined == [0, 25], joined
    whole, resumed = _checkpoint(tmp_path / "whole/final/ckpt"), _checkpoint(tmp_path / "chief/final/ckpt")
    assert whole.keys() == resumed.keys() and len(whole) == 8
    assert max(np.abs(whole[k] - resumed[k]).max() for k in whole) < TOLERANCE
    assert not (tmp_path / "other-chief").exists()  # only the chief writes
    assert sorted(p.name for p in (tmp_path / "chief/checkpoints").glob("*.index")) == [
        "ckpt-1.index", "ckpt-2.index", "ckpt-3.index"]
    history = json.loads((tmp_path / "chief/history.json").read_text())
    assert len(history["loss"]) == 3 and history["loss"][-1] < history["loss"][0]
    placement = json.loads((tmp_path / "chief/run_config.json").read_text())["placement"]
    assert placement["task"] == "/job:worker/task:0" and "ps" in placement["cluster"]


def test_a_graph_worker_away_too_long_ends_the_run_in_one_line(features, start_weights, tmp_path):
    """Worker 1 killed and not restarted: after GRAPH_API_WORKER_WAIT_S the chief ends with one
    line naming it, keeps its epoch-1 checkpoint, and the ps stops."""
    args = _train_args(features, start_weights, 3, 20)
    with _graph_cluster(args, tmp_path, "chief", {"GRAPH_API_WORKER_WAIT_S": "5"}) as cluster:
        cluster.wait_for("worker", 0, "epoch 1/3:")
        cluster.kill("worker", 1)
        assert cluster.wait("worker", 0) == 2, cluster.log("worker", 0)[-3000:]
        assert cluster.wait("ps", 0) == 0, cluster.log("ps", 0)[-3000:]
        log = cluster.log("worker", 0)
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: /job:worker/task:1: sent no gradient for global step")
    assert "Traceback" not in log
    assert sorted(p.name for p in (tmp_path / "chief/checkpoints").glob("*.index")) == ["ckpt-1.index"]


def test_keras_cluster_trains_like_one_process_and_resumes(features, start_weights, tmp_path):
    one = run_cli("keras_api", "train", *_train_args(features, start_weights, 1, 3), "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    jobs = localhost_jobs(2)
    with Cluster("keras_api", jobs, _train_args(features, start_weights, 1, 3), tmp_path / "logs") as cluster:
        cluster.start("worker", 0, tmp_path / "two")
        cluster.start("worker", 1, tmp_path / "other")
        assert [cluster.wait("worker", i) for i in (0, 1)] == [0, 0], cluster.log("worker", 0)[-3000:]
    assert not (tmp_path / "other").exists()  # only the chief writes
    single = np.concatenate([w.ravel() for w in _keras_weights(tmp_path / "one/final.weights.h5")])
    multi = np.concatenate([w.ravel() for w in _keras_weights(tmp_path / "two/final.weights.h5")])
    assert np.abs(single - multi).max() < TOLERANCE
    # 3 epochs in a shared run directory; worker 1 dies in epoch 3; the cluster restarts.
    args = _train_args(features, start_weights, 3, 20)
    with Cluster("keras_api", localhost_jobs(2), args, tmp_path / "logs2") as cluster:
        for i in (0, 1):
            cluster.start("worker", i, tmp_path / "shared")
        cluster.wait_for("worker", 0, "Epoch 3/3")
        cluster.kill("worker", 1)
        assert cluster.wait("worker", 0) == 2
        chief_log = cluster.log("worker", 0)
        assert "Traceback" not in chief_log and "error: TF_CONFIG: /job:worker/task:0 lost contact" in chief_log
        for i in (0, 1):
            cluster.start("worker", i, tmp_path / "shared")
        assert [cluster.wait("worker", i) for i in (0, 1)] == [0, 0], cluster.log("worker", 0)[-3000:]
        assert "resuming from" in cluster.log("worker", 0).split("lost contact")[1]
    history = json.loads((tmp_path / "shared/history.json").read_text())
    assert len(history["loss"]) == 3 and history["loss"][-1] < history["loss"][0]


def _keras_weights(path) -> list:
    from keras_api.model import build_model
    model = build_model("vgg16_head", (2, 2, 512), 4, dropout=0.0)
    model.load_weights(path)
    return [np.asarray(w) for w in model.get_weights()]


@pytest.mark.parametrize("api", ["graph_api", "keras_api"])
def test_a_run_resumes_on_another_device_count_and_ends_as_an_uninterrupted_run(api, features, start_weights,
                                                                                 tmp_path):
    """Epoch 1 on one device, epoch 2 resumed on two (graph: replicated towers, Keras:
    MirroredStrategy): the weights of both epochs on one device, within float32 sums of the
    same numbers in another order."""
    def train(epochs: int, out: str, *extra: str):
        result = run_cli(api, "train", *_train_args(features, start_weights, epochs, 2), "--out", str(tmp_path / out),
                         *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        return result
    train(2, "whole")
    train(1, "moved")
    resumed = train(2, "moved", "--devices", "2", *(["--variable-update", "replicated"] if api == "graph_api" else []))
    assert "resum" in resumed.stdout and len(json.loads((tmp_path / "moved/history.json").read_text())["loss"]) == 2
    if api == "graph_api":
        one, two = (_checkpoint(tmp_path / run / "final/ckpt") for run in ("whole", "moved"))
        assert one.keys() == two.keys() and len(one) == 8, sorted(one)
        assert max(np.abs(one[k] - two[k]).max() for k in one) < TOLERANCE
    else:
        one, two = (_keras_weights(tmp_path / run / "final.weights.h5") for run in ("whole", "moved"))
        assert len(one) == len(two) == 8 and max(np.abs(a - b).max() for a, b in zip(one, two)) < TOLERANCE
