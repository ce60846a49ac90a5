"""The suite's own promise (tests/conftest.py): under `pytest -n 2 --dist loadgroup` every test
that uses a shared run fixture runs in one worker, so the fixture (a benchmark run, the parity
runs: a minute or two each) is built once, not once per worker."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO, SHARED_RUN_FIXTURES

USERS = 6  # more tests than workers: spread one by one, they would reach both


def test_the_tests_of_a_shared_fixture_run_in_one_worker_that_builds_it_once(tmp_path):
    name = SHARED_RUN_FIXTURES[0]
    log = tmp_path / "log.txt"
    (tmp_path / "conftest.py").write_text(  # the suite's hook, loaded from its file under another name
        "import importlib.util\nimport sys\n"
        f"sys.path.insert(0, {str(REPO / 'tests')!r})  # the suite's helper modules, as pytest finds them\n"
        f"spec = importlib.util.spec_from_file_location('suite_conftest', {str(REPO / 'tests' / 'conftest.py')!r})\n"
        "suite = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(suite)\n"
        "pytest_collection_modifyitems = suite.pytest_collection_modifyitems\n")
    tests = [
        "import os", "import pytest", "",
        f"LOG = {str(log)!r}", "",
        '@pytest.fixture(scope="session")',
        f"def {name}():",
        "    with open(LOG, 'a') as f:",
        "        f.write('built\\n')",
        "", "",
    ]
    for i in range(USERS):
        tests += [f"def test_user_{i}({name}):",
                  "    with open(LOG, 'a') as f:",
                  "        f.write(os.environ['PYTEST_XDIST_WORKER'] + '\\n')",
                  "", ""]
    tests += [f"def test_other_{i}():\n    pass\n\n" for i in range(USERS)]
    (tmp_path / "test_grouped.py").write_text("\n".join(tests))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
                             "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = log.read_text().split()
    assert lines.count("built") == 1, lines
    assert len(set(lines) - {"built"}) == 1, lines  # every user in the same worker
