"""A full disk is one line: each kind of writer, run under a file-size limit that its next write
cannot fit in (`RLIMIT_FSIZE`: the write fails with EFBIG, as on a full disk), exits 2 with
one line naming the file and the OS's reason, no traceback, and what was written before stays
byte-identical."""
from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
from shard_helpers import feature_shards

from conftest import REPO, assert_user_error, build_tiny, file_tree, run_cli

pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

TOO_LARGE = "File too large"


def _limited(limit: int, *args: str) -> subprocess.CompletedProcess:
    """`python -m <args>` whose files may not grow past `limit` bytes."""
    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          preexec_fn=limit_files)



def _one_line(result: subprocess.CompletedProcess, culprit: str) -> None:
    line = assert_user_error(result, culprit)
    assert line.startswith(f"error: {culprit}") and TOO_LARGE in line, line


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return feature_shards(tmp_path_factory.mktemp("disk-features"), n_train=16, n_val=8)


def test_build_over_a_good_build(synth_root, tmp_path):
    out = tmp_path / "shards"
    build_tiny(synth_root, out)
    before = file_tree(out)
    result = _limited(20_000, "data_pipeline", "build", "--root", str(synth_root), "--out", str(out), "--size", "64",
                      "--shard-size", "8", "--seed", "7")
    _one_line(result, str(out))
    assert file_tree(out) == before


def test_export_and_import_cell_h5(shard_dir, tmp_path):
    cell = tmp_path / "cell.h5"
    assert run_cli("data_pipeline", "export-cell-h5", str(shard_dir / "manifest.json"), "--out", str(cell)).returncode == 0
    before = cell.read_bytes()
    _one_line(_limited(len(before) // 2, "data_pipeline", "export-cell-h5", str(shard_dir / "manifest.json"),
                       "--out", str(cell)), str(cell))
    assert cell.read_bytes() == before
    out = tmp_path / "imported"
    _one_line(_limited(2_000, "data_pipeline", "import-cell-h5", str(cell), "--out", str(out)), str(out))
    assert not list(out.glob("*.h5"))


@pytest.mark.parametrize("api", ["graph_api", "keras_api"])
def test_train_resuming_into_a_new_epoch_and_extract_features(api, features, tmp_path):
    run = tmp_path / "run"
    args = ("train", "--model", "vgg16_head", "--manifest", str(features), "--out", str(run), "--batch-size", "8")
    assert run_cli(api, *args, "--epochs", "1").returncode == 0
    before = file_tree(run)
    _one_line(_limited(1_000_000, api, *args, "--epochs", "2"), str(run))
    after = file_tree(run)
    assert {name: after.get(name) for name in before} == before  # every file of epoch 1 as it was
    assert json.loads((run / "history.json").read_text())["loss"] == json.loads(before["history.json"])["loss"]


def test_predict_and_benchmark_report(features, tmp_path):
    run = tmp_path / "run"
    assert run_cli("graph_api", "train", "--model", "vgg16_head", "--manifest", str(features), "--out", str(run),
                   "--epochs", "1", "--batch-size", "8").returncode == 0
    csv = tmp_path / "p.csv"
    predict = ("graph_api", "predict", "--run", str(run), "--manifest", str(features), "--split", "val",
               "--out", str(csv))
    assert run_cli(*predict).returncode == 0
    before = csv.read_bytes()
    _one_line(_limited(len(before) // 2, *predict), str(csv))
    assert csv.read_bytes() == before
    results = tmp_path / "bench" / "results.json"
    results.parent.mkdir()
    results.write_text(json.dumps({"schema": 1, "runs": [], "preset": "quick", "repeats": 1}))
    assert run_cli("benchmarks", "report", str(results)).returncode == 0
    report = (results.parent / "report.md").read_bytes()
    _one_line(_limited(len(report) // 2, "benchmarks", "report", str(results)), str(results.parent))
    assert (results.parent / "report.md").read_bytes() == report
