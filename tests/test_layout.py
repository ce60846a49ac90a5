"""The layout's promises (docs/architecture.md): imports point one way, the data package names
no model, the two APIs mirror each other, every writer is atomic, CPU runs log no errors."""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from data_pipeline.atomic import atomic_path, atomic_write_bytes

PACKAGES = ("data_pipeline", "common", "graph_api", "keras_api", "benchmarks")
# Who may import whom (besides itself and third-party code).
ALLOWED = {"data_pipeline": set(), "common": {"data_pipeline"},
           "graph_api": {"common", "data_pipeline"}, "keras_api": {"common", "data_pipeline"},
           "benchmarks": {"common", "data_pipeline", "graph_api", "keras_api"}}
ONLY_GRAPH = {"layers.py", "graph.py", "early_stopping.py", "cluster_loop.py"}
ONLY_KERAS = {"callbacks.py"}
MODEL_NAMES = re.compile(r"resnet|vgg16_transfer|vgg16_head|graph_api|keras_api", re.IGNORECASE)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down_only(package):
    for path in sorted((REPO / package).glob("*.py")):
        wrong = (_imports(path) & set(PACKAGES)) - ALLOWED[package] - {package}
        assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"


def test_data_pipeline_names_no_model():
    for path in sorted((REPO / "data_pipeline").glob("*.py")):
        hits = [line for line in path.read_text().splitlines() if MODEL_NAMES.search(line)]
        assert not hits, f"{path.relative_to(REPO)}: {hits[0].strip()}"


def test_graph_and_keras_apis_mirror_each_other():
    graph = {p.name for p in (REPO / "graph_api").glob("*.py")}
    keras = {p.name for p in (REPO / "keras_api").glob("*.py")}
    assert graph - ONLY_GRAPH == keras - ONLY_KERAS
    readme = (REPO / "README.md").read_text()
    for name in sorted(ONLY_GRAPH | ONLY_KERAS):
        assert f"`{name}`" in readme or f"`{name[:-3]}" in readme, f"README does not explain {name}"


def test_readme_layout_table_matches_the_tree():
    readme = (REPO / "README.md").read_text()
    listed = set(re.findall(r"^\| `(\w+)/` \|", readme, re.MULTILINE))
    on_disk = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert listed == on_disk


def test_docs_link_only_inside_the_repository():
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)", doc.read_text()):
            if target.startswith("http"):
                continue
            assert (doc.parent / target).resolve().is_relative_to(REPO), f"{doc.name} links outside: {target}"
            assert (doc.parent / target).exists(), f"{doc.name}: dangling link {target}"


def test_no_writer_renames_by_hand():
    """Every temp-then-rename goes through data_pipeline.atomic."""
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            if path.name == "atomic.py":
                continue
            text = path.read_text()
            assert "os.replace(" not in text and ".tmp-" not in text, f"{path.relative_to(REPO)} renames by hand"


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "figure.png"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target, keep_suffix=True) as tmp:
            assert tmp.suffix == ".png" and tmp.parent == tmp_path
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="a machine with an NVIDIA driver")
def test_cpu_run_logs_no_error_lines(shard_dir, tmp_path):
    """A command that runs TensorFlow ops on a machine without an NVIDIA driver prints no
    error-level log lines (TensorFlow's CUDA probe logs one unless the entry point prevents it),
    nor TensorFlow's start-up notices; a user error is still one line."""
    result = run_cli("graph_api", "extract-features", "--manifest", str(shard_dir / "manifest.json"),
                     "--out", str(tmp_path / "features"), "--weights", "none", "--batch-size", "8",
                     env={"TF_CPP_MIN_LOG_LEVEL": None})
    assert result.returncode == 0, result.stderr
    noisy = [line for line in result.stderr.splitlines()
             if re.match(r"[EF]\d{4} ", line) or "cuInit" in line or "absl::InitializeLog" in line]
    assert not noisy, noisy
    assert (tmp_path / "features" / "manifest.json").is_file()
    bad = run_cli("keras_api", "predict", "--run", str(tmp_path), env={"TF_CPP_MIN_LOG_LEVEL": None})
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'run_config.json'}: not a training run (no run_config.json)"]


def test_code_and_docs_speak_of_the_software_only():
    # Words that speak of how the work was organised; spelled in parts so this file does not match.
    work_words = [r"\bissue \d", r"\(issue", r"\bthis " + "session" + r"\b", r"\.\./shared/", r"DESIGN\.md"]
    insider = re.compile("|".join(work_words), re.IGNORECASE)
    files = [REPO / "README.md", REPO / "Makefile", *sorted((REPO / "docs").rglob("*.md"))]
    files += [p for package in PACKAGES for p in sorted((REPO / package).glob("*.py"))]
    for path in files:
        hits = [line.strip() for line in path.read_text().splitlines() if insider.search(line)]
        assert not hits, f"{path.relative_to(REPO)}: {hits[0]}"
