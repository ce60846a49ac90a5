"""The layout's promises (docs/architecture.md): imports point one way, between the packages
and between the benchmark wings; the data package is data only; the two APIs mirror each other;
mode names live in the mode table; every writer is atomic; CPU runs log no errors."""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from plumbing.atomic import atomic_path, atomic_write_bytes

from conftest import REPO, assert_user_error, run_cli

PACKAGES = ("plumbing", "data_pipeline", "model_contract", "api_runs", "graph_api", "keras_api", "benchmarks")
# Who may import whom (besides itself and third-party code).
ALLOWED = {"plumbing": set(), "data_pipeline": {"plumbing"}, "model_contract": {"plumbing", "data_pipeline"},
           "api_runs": {"plumbing", "data_pipeline", "model_contract"},
           "graph_api": {"plumbing", "data_pipeline", "model_contract", "api_runs"},
           "keras_api": {"plumbing", "data_pipeline", "model_contract", "api_runs"},
           "benchmarks": {"plumbing", "data_pipeline", "model_contract", "api_runs", "graph_api", "keras_api"}}
# The benchmark wings: who may import whom inside `benchmarks` ("" is the package's own top
# level: config, modes, tasks, sources, presets; cli and __main__ wire everything and are left out).
WINGS = ("", "measure", "analyse", "present", "parity")
WING_ALLOWED = {"": {""}, "analyse": {""}, "measure": {"", "analyse"}, "present": {"", "analyse"},
                "parity": {"", "measure", "analyse", "present"}}
ONLY_GRAPH = {"layers.py", "graph.py", "early_stopping.py", "cluster_loop.py"}
ONLY_KERAS = {"callbacks.py"}
MODEL_NAMES = re.compile(r"resnet|vgg16_transfer|vgg16_head|graph_api|keras_api", re.IGNORECASE)


def _modules(path: Path) -> set[str]:
    """Every module `path` imports (absolute names), at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _imports(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _modules(path)}


def _sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down_only(package):
    for path in _sources(package):
        wrong = (_imports(path) & set(PACKAGES)) - ALLOWED[package] - {package}
        assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"


def _wing(module: str) -> str | None:
    """The wing of a benchmarks module name ("" for the top level), None outside benchmarks."""
    parts = module.split(".")
    if parts[0] != "benchmarks":
        return None
    return parts[1] if len(parts) > 2 and parts[1] in WINGS else ""


def test_benchmark_wings_import_one_way():
    checked = 0
    for path in _sources("benchmarks"):
        rel = path.relative_to(REPO / "benchmarks")
        if rel.name in ("cli.py", "__main__.py") and len(rel.parts) == 1:
            continue
        own = rel.parts[0] if len(rel.parts) > 1 else ""
        for module in _modules(path):
            wing = _wing(module)
            if wing is not None and module.split(".")[-1] not in WINGS[1:]:
                assert wing in WING_ALLOWED[own] | {own}, f"benchmarks/{rel} ({own or 'top'}) imports {module}"
                checked += 1
    assert checked > 40  # the rule looked at the wings' real imports


def test_mode_names_appear_only_in_the_mode_table():
    """Code asks a mode's record; its name is spelled once, in benchmarks/modes.py."""
    from benchmarks.modes import MODES
    for path in _sources("benchmarks"):
        if path.name == "modes.py":
            continue
        literals = [node.value for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.Constant) and isinstance(node.value, str)]
        spelled = sorted(set(literals) & set(MODES))
        assert not spelled, f"{path.relative_to(REPO)} spells mode names {spelled}"


def _compared_names(packages: tuple[str, ...], names: set[str]) -> tuple[list[str], int]:
    """Where a comparison in `packages` holds one of `names` as a string literal -> (those
    places, the comparisons looked at)."""
    found, compared = [], 0
    for package in packages:
        for path in _sources(package):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Compare):
                    compared += 1
                    held = {n.value for side in (node.left, *node.comparators) for n in ast.walk(side)
                            if isinstance(n, ast.Constant) and isinstance(n.value, str)} & names
                    found += [f"{path.relative_to(REPO)}:{node.lineno} {sorted(held)}"] if held else []
    return found, compared


def test_code_branches_on_a_tables_record_not_on_a_name():
    """No comparison holds a task's, a data source's or a device's name in benchmarks/
    (`config.task == "train"`, `data == "numpy"`, `device == "cpu"`), nor a precision's, a
    model's, a batch-norm mode's, a feed's or a variable update's in any package (`precision ==
    "mixed_float16"`, `model == "vgg16_head"`, `bn == "fused"`, `feed == "feed_dict"`,
    `variable_update == "replicated"`): code asks the record's fields (benchmarks/tasks.py,
    benchmarks/sources.py, benchmarks/devices.py, model_contract/precisions.py,
    model_contract/image_models.py, model_contract/small_models.py,
    model_contract/batch_norm_modes.py, graph_api/graph.py's feeds, api_runs/devices.py's
    variable updates)."""
    from api_runs.devices import VARIABLE_UPDATES
    from benchmarks.devices import DEVICES
    from benchmarks.sources import SOURCES
    from benchmarks.tasks import TASKS
    from graph_api.graph import FEEDS
    from model_contract.batch_norm_modes import BN_MODES, KERAS_BN
    from model_contract.image_models import IMAGE_MODELS
    from model_contract.precisions import PRECISIONS
    from model_contract.small_models import SMALL_MODELS
    found, compared = _compared_names(("benchmarks",), set(TASKS) | set(SOURCES) | set(DEVICES))
    assert not found, f"task, data source or device names compared: {found}"
    assert compared > 100  # the rule looked at the package's real comparisons
    # "keras" names a batch-norm mode and the package a module comes from (`k.__name__ == "keras"`)
    names = set(PRECISIONS) | set(IMAGE_MODELS) | set(SMALL_MODELS) | (set(BN_MODES) - {KERAS_BN.name})
    found, compared = _compared_names(PACKAGES, names)
    assert not found, f"precision, model or batch-norm mode names compared: {found}"
    assert compared > 500
    # where the graph's feeds and variable updates are read ("dataset" is also RxRx1's metadata column)
    found, _ = _compared_names(("graph_api", "api_runs", "benchmarks"), set(FEEDS) | set(VARIABLE_UPDATES))
    assert not found, f"feed or variable update names compared: {found}"


def test_command_line_mode_choices_come_from_the_table():
    from benchmarks.cli import build_parser
    from benchmarks.modes import MODES
    run = next(a for a in build_parser()._actions if a.dest == "command").choices["run"]
    help_text = next(a for a in run._actions if a.dest == "modes").help
    assert all(name in help_text for name in MODES)


def test_data_pipeline_is_data_only():
    """It names no model, and no other package takes anything but data from it: the error
    contract, atomic writes, progress, logging and figures come from `plumbing`."""
    for path in _sources("data_pipeline"):
        hits = [line for line in path.read_text().splitlines() if MODEL_NAMES.search(line)]
        assert not hits, f"{path.relative_to(REPO)}: {hits[0].strip()}"
    plumbing = {p.stem for p in _sources("plumbing")} - {"__init__"}
    for package in set(PACKAGES) - {"data_pipeline"}:
        for path in _sources(package):
            wrong = {m for m in _modules(path) if m.startswith("data_pipeline.") and m.split(".")[1] in plumbing}
            assert not wrong, f"{path.relative_to(REPO)} takes plumbing from data_pipeline: {sorted(wrong)}"


def test_graph_and_keras_apis_mirror_each_other():
    graph = {p.name for p in (REPO / "graph_api").glob("*.py")}
    keras = {p.name for p in (REPO / "keras_api").glob("*.py")}
    assert graph - ONLY_GRAPH == keras - ONLY_KERAS
    readme = (REPO / "README.md").read_text()
    for name in sorted(ONLY_GRAPH | ONLY_KERAS):
        assert f"`{name}`" in readme or f"`{name[:-3]}" in readme, f"README does not explain {name}"


def _packages_on_disk() -> set[str]:
    """Every package and benchmark wing, as `name/` or `benchmarks/wing/`."""
    return {p.parent.relative_to(REPO).as_posix() for p in [*REPO.glob("*/__init__.py"),
                                                              *REPO.glob("benchmarks/*/__init__.py")]}


def test_readme_layout_table_matches_the_tree():
    readme = (REPO / "README.md").read_text()
    listed = set(re.findall(r"^\| `([\w/]+?)/` \|", readme, re.MULTILINE))
    assert listed == _packages_on_disk()


def test_architecture_doc_matches_the_tree():
    """Every package and wing is drawn in docs/architecture.md, and every file it names exists."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    for package in sorted(_packages_on_disk()):
        assert f"{package.split('/')[-1]}/" in doc, f"docs/architecture.md does not show {package}/"
    named = set(re.findall(r"`((?:[a-z_]+/)+[a-z_0-9]+\.py)`", doc))
    assert named, "docs/architecture.md names no file"
    for rel in sorted(named):
        assert (REPO / rel).is_file(), f"docs/architecture.md names {rel}, which does not exist"


def test_docs_link_only_inside_the_repository():
    for doc in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)", doc.read_text()):
            if target.startswith("http"):
                continue
            assert (doc.parent / target).resolve().is_relative_to(REPO), f"{doc.name} links outside: {target}"
            assert (doc.parent / target).exists(), f"{doc.name}: dangling link {target}"


def test_every_documented_python_m_command_runs_something():
    """A `python -m <module>` of the project in the docs names a package with a `__main__` or a
    module with a main guard (a module without one exits 0 having done nothing)."""
    for doc in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for module in re.findall(r"python -m ([A-Za-z_][\w.]*)", doc.read_text()):
            path = REPO / module.replace(".", "/")
            if not (path.is_dir() or path.with_suffix(".py").exists()):
                continue  # not the project's (pytest, pip, venv)
            runs = (path / "__main__.py").exists() if path.is_dir() else \
                'if __name__ == "__main__"' in path.with_suffix(".py").read_text()
            assert runs, f"{doc.name}: python -m {module} runs nothing"

def test_no_writer_renames_by_hand():
    """Every temp-then-rename goes through plumbing.atomic."""
    for package in PACKAGES:
        for path in _sources(package):
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


@pytest.mark.slow
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
    assert_user_error(bad, "run_config.json",
                      line=f"error: {tmp_path / 'run_config.json'}: not a training run (no run_config.json)")


def test_code_and_docs_speak_of_the_software_only():
    # Words that speak of how the work was organised; spelled in parts so this file does not match.
    work_words = [r"\bissue \d", r"\(issue", r"\bthis " + "session" + r"\b", r"\.\./shared/", r"DESIGN\.md"]
    insider = re.compile("|".join(work_words), re.IGNORECASE)
    files = [REPO / "README.md", REPO / "Makefile", *sorted((REPO / "docs").rglob("*.md"))]
    files += [p for package in PACKAGES for p in _sources(package)]
    for path in files:
        hits = [line.strip() for line in path.read_text().splitlines() if insider.search(line)]
        assert not hits, f"{path.relative_to(REPO)}: {hits[0]}"


def test_benchmarks_build_through_the_apis_exported_surface():
    """The harness imports only what graph_api and keras_api export from their __init__."""
    import graph_api
    import keras_api
    exported = {"graph_api": set(graph_api.__all__), "keras_api": set(keras_api.__all__)}
    for path in _sources("benchmarks"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in exported:
                assert node.module in exported, f"{path.relative_to(REPO)} reaches into {node.module}"
                assert {a.name for a in node.names} <= exported[node.module], path
            elif isinstance(node, ast.Import):
                inner = [a.name for a in node.names if a.name.split(".")[0] in exported and "." in a.name]
                assert not inner, f"{path.relative_to(REPO)} imports {inner}"
    for package in exported.values():
        for name in package:  # every export resolves
            assert getattr(graph_api if name in graph_api.__all__ else keras_api, name) is not None


@pytest.mark.slow
@pytest.mark.parametrize("package", ["plumbing", "data_pipeline", "api_runs", "graph_api", "keras_api", "benchmarks"])
def test_python_m_package_without_a_command_lists_its_commands(package):
    if package in ("plumbing", "api_runs"):  # no command line of their own
        assert not (REPO / package / "__main__.py").exists()
        return
    result = run_cli(package)
    assert result.returncode == 2 and result.stdout.startswith(f"usage: python -m {package} <command>")
    assert "commands:" in result.stdout and "error" not in result.stderr.lower()


def test_every_function_local_import_says_why():
    """An import inside a function keeps TensorFlow or Keras out of an import that must not pay
    for them (or out of a process that must set its state first); a comment on it, or on the
    line above, says which."""
    silent = []
    for package in PACKAGES:
        for path in _sources(package):
            lines = path.read_text().splitlines()
            for function in ast.walk(ast.parse(path.read_text())):
                if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(function):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        here, above = lines[node.lineno - 1], lines[node.lineno - 2].strip()
                        if "#" not in here and not above.startswith("#"):
                            silent.append(f"{path.relative_to(REPO)}:{node.lineno}: {here.strip()}")
    assert not silent, silent


def test_the_suites_costly_fixtures_are_built_once_per_worker():
    """Each of conftest's SHARED_RUN_FIXTURES is session-scoped: a module-scoped one is torn
    down and built again whenever its worker runs another module's test in between."""
    from conftest import SHARED_RUN_FIXTURES
    scopes = {}
    for path in (REPO / "tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name in SHARED_RUN_FIXTURES:
                for decorator in node.decorator_list:
                    if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "pytest.fixture":
                        scopes[node.name] = {k.arg: ast.literal_eval(k.value) for k in decorator.keywords}.get("scope")
    assert scopes == dict.fromkeys(SHARED_RUN_FIXTURES, "session"), scopes
