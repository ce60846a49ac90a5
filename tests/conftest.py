"""Shared fixtures: a tiny synthetic RxRx1 and shards built from it (small images, fast)."""
from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

from plumbing.tf_logging import quiet_tensorflow_logs  # noqa: E402

quiet_tensorflow_logs()  # before TensorFlow is imported; the CLI subprocesses inherit it
# Each test process gets its share of the cores for TensorFlow's intra-op pool (the CLI
# subprocesses inherit it): by default every process takes them all, and two test processes'
# pools then contend for the same cores. An explicit TF_NUM_INTRAOP_THREADS is kept.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS",
                      str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))

from command_server import CommandServer, ForkedProcess, needs_fresh_process  # noqa: E402

from data_pipeline.build import BuildOptions, build_shards, plan_shards, select_sites  # noqa: E402
from data_pipeline.synthetic import SynthConfig, generate  # noqa: E402

TINY = SynthConfig(num_classes=4, train_experiments=2, test_experiments=1, plates=1,
                   wells_per_plate=12, image_size=64, seed=3)


# Fixtures that take tens of seconds (a benchmark run, the parity runs, trained runs to damage):
# under `pytest -n` (`--dist loadgroup`) every test that uses one runs in the worker that built
# it, and they are session-scoped, so they are built once even when the worker runs other
# modules' tests in between (a module fixture is torn down then and rebuilt); the other tests
# spread over the workers one by one.
SHARED_RUN_FIXTURES = ("tiny_run", "parity_run", "world", "runs")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in SHARED_RUN_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}.{name}"))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rxrx1")
    generate(TINY, root)
    return root


def build_tiny(root: Path, out: Path, shard_size: int = 8, workers: int = 1, **select) -> dict:
    sites, classes = select_sites(root, **select)
    jobs = plan_shards(sites, classes, shard_size)
    options = BuildOptions(root=str(root), out_dir=str(out), image_size=32, shard_size=shard_size,
                           workers=workers)
    return build_shards(jobs, classes, options)


@pytest.fixture(scope="session")
def shard_dir(synth_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    build_tiny(synth_root, out, include_test=True)
    return out


def site_in_last_shard(root: Path, shard_size: int = 8, channel: int = 5) -> Path:
    """A channel PNG of a site that a default CLI build (seed 0) puts in its last shard:
    damage there is met only after earlier shards were written."""
    sites, classes = select_sites(root)
    dataset, experiment, plate, well, site, _id, _label = plan_shards(sites, classes, shard_size)[-1].samples[0]
    return root / dataset / experiment / f"Plate{plate}" / f"{well}_s{site}_w{channel}.png"


def file_tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (relative path -> bytes): what "changes nothing" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def truncate(path: Path, keep: float = 0.5) -> None:
    """Damage `path` as a full disk or a killed copy would: only its first `keep` share stays."""
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def checkpoint_tensors(prefix: Path) -> dict:
    """Every variable of a TensorFlow checkpoint (a prefix, or a folder with a `checkpoint`
    file: its newest) by name."""
    import tensorflow as tf  # only the tests that read checkpoints need it
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def h5_arrays(source) -> dict:
    """Every dataset of an HDF5 file (a path or a file object, e.g. a Keras weights file) by
    its path inside the file."""
    import h5py  # only the tests that read weight files need it
    arrays = {}

    def keep(name: str, item) -> None:  # a value returned would stop the walk
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]
    with h5py.File(source, "r") as handle:
        handle.visititems(keep)
    return arrays


def keras_file_contents(path: Path) -> tuple[dict, dict]:
    """A `.keras` file's saved configuration (`config.json`: the model's and its compile
    configuration) and its `model.weights.h5` arrays by path (the layers' and the optimizer's)."""
    import zipfile  # only the tests that read Keras files need it
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json")), h5_arrays(io.BytesIO(archive.read("model.weights.h5")))


def saved_graph_nodes(run: Path) -> list:
    """The nodes of the graph a graph_api run trained (the MetaGraph its checkpoint saved)."""
    import tensorflow as tf  # only the tests that read graphs need it
    meta = sorted((run / "checkpoints").glob("*.meta"))[-1]  # every checkpoint saves the same graph
    return list(tf.compat.v1.MetaGraphDef.FromString(meta.read_bytes()).graph_def.node)


def assert_user_error(result: subprocess.CompletedProcess, culprit: str, *, line: str | None = None,
                      unchanged: dict[Path, dict[str, bytes]] | None = None) -> str:
    """The error contract of every command: exit 2, stderr exactly one line `error: ...` that names
    `culprit` (or equals `line`), no traceback, and each folder in `unchanged` (folder ->
    `file_tree` taken before the command) byte-identical. Returns the line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert culprit in lines[0], (culprit, lines[0])
    assert line is None or lines[0] == line, (line, lines[0])
    for folder, before in (unchanged or {}).items():
        assert file_tree(folder) == before, f"the command changed files in {folder}"
    return lines[0]


def call_cli(package: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m <package> <args>` run by its `main` in this process, returned as `run_cli`
    returns it (status, stdout, stderr): for refusals that come before any work, without a
    process that starts and imports TensorFlow for one line. What only a process shows (its exit
    status, a hang at exit, TensorFlow's own log lines) is the subprocess tests' (test_faults)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = importlib.import_module(f"{package}.cli").main(list(args))
        except SystemExit as exit_:  # argparse's own refusals
            code = exit_.code
    return subprocess.CompletedProcess([package, *args], code, out.getvalue(), err.getvalue())


_SERVER: list[CommandServer] = []  # this test process's, started by its first command


def _server() -> CommandServer:
    if not _SERVER:
        _SERVER.append(CommandServer(REPO))
        atexit.register(_SERVER[0].close)
    return _SERVER[0]


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m <args>` from the repository root; captures output. A None value in
    `env` removes that variable. The command runs in a process forked from one that imported
    TensorFlow already (`command_server`), or in a fresh one when `env` changes what is read
    while TensorFlow is imported."""
    full_env = {k: v for k, v in dict(os.environ, **(env or {})).items() if v is not None}
    return _forked_or_fresh(list(args), full_env, timeout)


def _forked_or_fresh(args: list[str], env: dict, timeout: float, compared: dict | None = None
                     ) -> subprocess.CompletedProcess:
    """`python -m <args>` with `env`: forked from the server unless `compared` (default `env`)
    differs from its environment in what is read while TensorFlow is imported."""
    if needs_fresh_process(env if compared is None else compared, _server().env):
        return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)
    return _server().run(args, env, REPO, timeout)


def start_cli(*args: str, env: dict, log: Path) -> subprocess.Popen | ForkedProcess:
    """`python -m <args>` from the repository root, started and not waited for: its stdout and
    stderr appended to `log`, in a session of its own (`os.killpg` stops it and what it started).
    Forked as `run_cli`'s commands are, or a fresh process for what `needs_fresh_process` names."""
    if needs_fresh_process(env, _server().env):
        with open(log, "a") as out:
            return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    return _server().start(list(args), env, REPO, log, append=True, new_session=True)


def fork_bench_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark runner's worker processes, forked as `run_cli`'s commands are (a worker
    whose environment changes what is read while TensorFlow is imported, e.g. Keras 2's, still
    gets a fresh process), for a runner that runs in the test's own process."""
    from benchmarks.measure import runner

    def forked(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
        # The runner puts the repository on PYTHONPATH; a forked child has it first on sys.path.
        same = {k: v for k, v in env.items() if not (k == "PYTHONPATH" and v == str(REPO))}
        return _forked_or_fresh(["benchmarks.measure.worker", *args], env, timeout, compared=same)
    monkeypatch.setattr(runner, "run_worker", forked)


@pytest.fixture
def forked_workers(monkeypatch) -> None:
    """`fork_bench_workers` for one test."""
    fork_bench_workers(monkeypatch)
