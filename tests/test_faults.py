"""Fault injection: every command meets bad input with one line `error: <file or flag>: <what>`,
exit status 2, no traceback, no hang, and leaves what was already written byte-identical.

Each case builds its own damage from the shared tiny data set; `CASES` is the table the
docs/errors.md lists.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import imageio.v3 as imageio
import numpy as np
import pytest
from shard_helpers import feature_shards

from data_pipeline.png import write_png8
from data_pipeline.shards import load_manifest

from conftest import assert_user_error, file_tree, run_cli, site_in_last_shard, truncate

pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

TIMEOUT_S = 240  # a command that hangs after its error fails the case instead of the suite


@pytest.fixture(scope="session")
def world(shard_dir, synth_root, tmp_path_factory):
    """Shards, feature shards, one trained run per API, a cell.h5 and a results file to damage copies of."""
    base = tmp_path_factory.mktemp("faults")
    (base / "features").mkdir()
    features = feature_shards(base / "features", n_train=32, n_val=16)
    runs = {}
    for api in ("graph_api", "keras_api"):
        runs[api] = base / f"run-{api}"
        done = run_cli(api, "train", "--model", "vgg16_head", "--manifest", str(features), "--out", str(runs[api]),
                       "--epochs", "1", "--batch-size", "16", "--steps-per-epoch", "1")
        assert done.returncode == 0, done.stderr
    cell = base / "cell.h5"
    assert run_cli("data_pipeline", "export-cell-h5", str(shard_dir / "manifest.json"),
                   "--out", str(cell)).returncode == 0
    a_file = base / "a-file"
    a_file.write_text("not a folder")
    return {"shards": shard_dir, "root": synth_root, "features": features, "runs": runs, "cell": cell,
            "file": a_file, "base": base}


def _copy_shards(world, tmp_path, which="shards") -> Path:
    copy = tmp_path / which
    shutil.copytree(Path(world[which]).parent if which == "features" else world[which], copy)
    return copy / "manifest.json"


def _first_shard(manifest_path: Path, split: str = "train") -> Path:
    manifest = load_manifest(manifest_path)
    return Path(manifest["_dir"]) / next(r["file"] for r in manifest["shards"] if r["split"] == split)


def _train(api, manifest, out, *extra):
    return (api, "train", "--model", "vgg16_head", "--manifest", str(manifest), "--out", str(out),
            "--epochs", "1", "--batch-size", "8", *extra)


def truncated_shard_in_train(api):
    def case(world, tmp_path):
        manifest = _copy_shards(world, tmp_path, "features")
        victim = _first_shard(manifest)
        truncate(victim, keep=1 / 3)
        return _train(api, manifest, tmp_path / "run"), victim.name
    return case


def missing_shard_in_train(api):
    def case(world, tmp_path):
        manifest = _copy_shards(world, tmp_path, "features")
        victim = _first_shard(manifest)
        victim.unlink()
        return _train(api, manifest, tmp_path / "run"), victim.name
    return case


def missing_shard_in(api, command):
    def case(world, tmp_path):
        manifest = _copy_shards(world, tmp_path, "features")
        victim = _first_shard(manifest, "val")
        victim.unlink()
        args = (api, command, "--run", str(world["runs"][api]), "--manifest", str(manifest), "--split", "val")
        return args + (("--out", str(tmp_path / "p.csv")) if command == "predict" else ()), victim.name
    return case


def truncated_graph_checkpoint(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["runs"]["graph_api"], run)
    truncate(next((run / "final").glob("ckpt.data-*")), keep=1 / 3)
    return ("graph_api", "evaluate", "--run", str(run), "--manifest", str(world["features"])), "final/ckpt"


def truncated_keras_model(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["runs"]["keras_api"], run)
    truncate(run / "final.keras", keep=1 / 3)
    return ("keras_api", "evaluate", "--run", str(run), "--manifest", str(world["features"])), "final.keras"


def missing_shard_in_export(world, tmp_path):
    manifest = _copy_shards(world, tmp_path)
    victim = _first_shard(manifest)
    victim.unlink()
    return ("data_pipeline", "export-cell-h5", str(manifest), "--out", str(tmp_path / "cell.h5")), victim.name


def features_export(world, tmp_path):
    return ("data_pipeline", "export-cell-h5", str(world["features"]), "--out", str(tmp_path / "cell.h5")), "float32"


def out_below_a_file(command):
    def case(world, tmp_path):
        below = world["file"] / "out"
        args = {"synth": ("data_pipeline", "synth", "--out", str(below), "--wells", "4", "--size", "32"),
                "build": ("data_pipeline", "build", "--root", str(world["root"]), "--out", str(below), "--size", "32"),
                "show": ("data_pipeline", "show", "--root", str(world["root"]), "--id-code", "U2OS-01_1_B02",
                         "--out", str(below / "site.png")),
                "export-cell-h5": ("data_pipeline", "export-cell-h5", str(world["shards"] / "manifest.json"),
                                   "--out", str(below / "cell.h5")),
                "import-cell-h5": ("data_pipeline", "import-cell-h5", str(world["cell"]), "--out", str(below)),
                "graph_api train": _train("graph_api", world["features"], below),
                "keras_api train": _train("keras_api", world["features"], below),
                "extract-features": ("graph_api", "extract-features", "--manifest", str(world["shards"] / "manifest.json"),
                                     "--out", str(below), "--weights", "none"),
                "predict": ("keras_api", "predict", "--run", str(world["runs"]["keras_api"]), "--manifest",
                            str(world["features"]), "--split", "val", "--out", str(below / "p.csv")),
                }[command]
        return args, "a-file"
    return case


def out_in_an_unwritable_place(command):
    """`--out` below a folder that cannot exist (under /sys, read-only even for root)."""
    def case(world, tmp_path):
        below = Path("/sys/no-such-folder")
        args = {"export-cell-h5": ("data_pipeline", "export-cell-h5", str(world["shards"] / "manifest.json"),
                                   "--out", str(below / "cell.h5")),
                "show": ("data_pipeline", "show", "--root", str(world["root"]), "--id-code", "U2OS-01_1_B02",
                         "--out", str(below / "site.png")),
                "predict": ("graph_api", "predict", "--run", str(world["runs"]["graph_api"]), "--manifest",
                            str(world["features"]), "--split", "val", "--out", str(below / "p.csv")),
                "import-cell-h5": ("data_pipeline", "import-cell-h5", str(world["cell"]), "--out", str(below)),
                }[command]
        return args, str(below)
    return case


def predict_out_is_a_folder(world, tmp_path):
    folder = tmp_path / "existing"
    folder.mkdir()
    return ("graph_api", "predict", "--run", str(world["runs"]["graph_api"]), "--manifest", str(world["features"]),
            "--split", "val", "--out", str(folder)), "existing"


def bad_flag(*args_and_flag):
    *args, flag = args_and_flag

    def case(world, tmp_path):
        filled = [str(world["shards"] / "manifest.json") if a == "MANIFEST" else str(world["cell"]) if a == "CELL"
                  else str(world["root"]) if a == "ROOT" else str(tmp_path / "out") if a == "OUT" else a for a in args]
        return tuple(filled), flag
    return case


def results_file(content):
    def case(world, tmp_path):
        path = tmp_path / "results.json"
        path.write_text(json.dumps(content))
        return ("benchmarks", "report", str(path), "--out", str(tmp_path / "report")), "results.json"
    return case


def saturated_int8_cell(world, tmp_path):
    path = tmp_path / "book.h5"
    pixels = np.clip(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)), 0, 127).astype(np.int8)
    with h5py.File(path, "w") as handle:  # what the book's 'i1' dataset holds after assignment: clipped
        for split in ("train", "val"):
            handle[f"x_{split}"] = pixels
            handle[f"y_{split}"] = np.eye(2, dtype=np.uint8)[[0, 1, 0, 1]]
        handle["classes"] = np.array([b"sirna_1", b"sirna_2"])
    return ("data_pipeline", "import-cell-h5", str(path), "--out", str(tmp_path / "shards")), "book.h5"


def site_of_another_size(world, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(world["root"], root)
    last = site_in_last_shard(root, channel=1)
    for channel in range(1, 7):  # a whole site, consistent in itself, at half the resolution
        path = last.with_name(last.name.replace("_w1", f"_w{channel}"))
        write_png8(path, imageio.imread(path)[::2, ::2].copy())
    return ("data_pipeline", "build", "--root", str(root), "--out", str(tmp_path / "out"), "--size", "32",
            "--workers", "1"), last.name[:-len("_w1.png")]


CASES = {
    "build: one site at another resolution": site_of_another_size,
    "train, graph: truncated shard": truncated_shard_in_train("graph_api"),
    "train, Keras: truncated shard": truncated_shard_in_train("keras_api"),
    "train, graph: missing shard": missing_shard_in_train("graph_api"),
    "train, Keras: missing shard": missing_shard_in_train("keras_api"),
    "evaluate, graph: missing shard": missing_shard_in("graph_api", "evaluate"),
    "evaluate, Keras: missing shard": missing_shard_in("keras_api", "evaluate"),
    "predict, graph: missing shard": missing_shard_in("graph_api", "predict"),
    "predict, Keras: missing shard": missing_shard_in("keras_api", "predict"),
    "evaluate, graph: truncated checkpoint": truncated_graph_checkpoint,
    "evaluate, Keras: truncated final.keras": truncated_keras_model,
    "export-cell-h5: missing shard": missing_shard_in_export,
    "export-cell-h5: float feature shards": features_export,
    "import-cell-h5: saturated int8 images": saturated_int8_cell,
    "predict --out: an existing folder": predict_out_is_a_folder,
    **{f"{command}: --out below a regular file": out_below_a_file(command)
       for command in ("synth", "build", "show", "export-cell-h5", "import-cell-h5", "graph_api train",
                       "keras_api train", "extract-features", "predict")},
    **{f"{command}: --out in an unwritable place": out_in_an_unwritable_place(command)
       for command in ("export-cell-h5", "show", "predict", "import-cell-h5")},
    "extract-features --batch-size 0": bad_flag("graph_api", "extract-features", "--manifest", "MANIFEST",
                                                "--out", "OUT", "--batch-size", "0", "--batch-size"),
    "import-cell-h5 --shard-size 0": bad_flag("data_pipeline", "import-cell-h5", "CELL", "--out", "OUT",
                                              "--shard-size", "0", "--shard-size"),
    "build --size 0": bad_flag("data_pipeline", "build", "--root", "ROOT", "--out", "OUT", "--size", "0", "--size"),
    "build --workers 0": bad_flag("data_pipeline", "build", "--root", "ROOT", "--out", "OUT", "--workers", "0",
                                  "--workers"),
    "synth --wells -3": bad_flag("data_pipeline", "synth", "--out", "OUT", "--wells", "-3", "--wells"),
    "predict --top-k 0": bad_flag("keras_api", "predict", "--run", "OUT", "--top-k", "0", "--top-k"),
    "benchmarks run --steps 0": bad_flag("benchmarks", "run", "--steps", "0", "--steps"),
    "benchmarks report: results schema 99": results_file({"schema": 99, "runs": []}),
    "benchmarks report: an older results file": results_file({"schema": 1, "runs": [{"ok": True}]}),
}



@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(name, world, tmp_path):
    args, culprit = CASES[name](world, tmp_path)
    # every folder the cases read from: the session's shards and synthetic root too
    before = {world[key]: file_tree(world[key]) for key in ("base", "shards", "root")}
    scratch = tmp_path / "TMPDIR"  # where the command's own temporary files go
    scratch.mkdir()
    assert_user_error(run_cli(*args, env={"TMPDIR": str(scratch)}, timeout=TIMEOUT_S), culprit, unchanged=before)
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name], "a temporary file was left behind"
    assert not list(scratch.iterdir()), "the command left files in its TMPDIR"


def test_a_defect_ends_with_its_traceback_and_exit_status_1(capsys):
    """Not bad input but a failure nobody foresaw: its traceback (to be reported), exit status 1,
    returned for `exit_process` to end the process at once rather than raised into a hang."""
    from plumbing.errors import ArgumentParser, main_with_errors

    def broken(_args):
        raise RuntimeError("an unforeseen failure")
    parser = ArgumentParser(prog="demo")
    parser.add_argument("value")
    assert main_with_errors(parser, ["x"], broken) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("RuntimeError: an unforeseen failure")
