"""The tests' command server: a forked command is a process of its own, started as
`python -m` starts one (argv, environment, working directory, output, exit status)."""
import json
import os
import signal
import subprocess
import textwrap

import pytest
from command_server import CommandServer, needs_fresh_process

PROBE = """
    import json, os, sys, tempfile, threading, time
    if sys.argv[1:] == ["sleep"]:
        time.sleep(600)
    if sys.argv[1:] == ["kill"]:
        os.kill(os.getpid(), signal.SIGKILL)
    import atexit, signal
    def late():  # a thread still running when the module ends: the interpreter waits for it
        time.sleep(0.2)
        print("thread done", flush=True)
    threading.Thread(target=late).start()
    atexit.register(lambda: print("atexit ran", flush=True))
    print(json.dumps({"pid": os.getpid(), "argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0],
                      "probe": os.environ.get("PROBE_VALUE"), "gone": "PROBE_GONE" in os.environ,
                      "name": __name__, "tf": "tensorflow" in sys.modules, "tmp": tempfile.gettempdir()}))
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = CommandServer(tmp_path_factory.mktemp("server-cwd"))
    yield started
    started.close()


def test_a_forked_command_has_its_own_argv_environment_folder_output_and_exit_status(server, tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "__init__.py").write_text("")
    (probe / "__main__.py").write_text("import signal\n" + textwrap.dedent(PROBE))
    (tmp_path / "scratch").mkdir()
    env = dict(server.env, PROBE_VALUE="42", TMPDIR=str(tmp_path / "scratch"))
    results = [server.run(["probe", "3"], env, tmp_path, 60), server.run(["probe", "0"], env, tmp_path, 60)]
    seen = [json.loads(r.stdout.splitlines()[0]) for r in results]
    assert [r.returncode for r in results] == [3, 0]
    assert all(r.stderr == "to stderr\n" for r in results)
    # the interpreter ended as a process's does: threads joined, then atexit handlers
    assert all(r.stdout.splitlines()[1:] == ["thread done", "atexit ran"] for r in results)
    first, second = seen
    assert first["pid"] != second["pid"] and os.getpid() not in (first["pid"], second["pid"])
    assert first["argv"] == [str(probe / "__main__.py"), "3"] and first["name"] == "__main__"
    assert first["cwd"] == first["path0"] == str(tmp_path) and first["probe"] == "42"
    assert first["tmp"] == str(tmp_path / "scratch")  # not the server's cached temporary folder
    assert first["tf"]  # imported once, by the server
    gone = server.run(["probe", "0"], {k: v for k, v in env.items() if k != "PROBE_VALUE"}, tmp_path, 60)
    assert json.loads(gone.stdout.splitlines()[0])["probe"] is None
    killed = server.run(["probe", "kill"], env, tmp_path, 60)
    assert killed.returncode == -signal.SIGKILL
    with pytest.raises(subprocess.TimeoutExpired):
        server.run(["probe", "sleep"], env, tmp_path, 1)
    # the server goes on after a command it had to kill
    assert server.run(["probe", "5"], env, tmp_path, 60).returncode == 5


def test_started_commands_run_side_by_side_as_this_process_s_children(server, tmp_path):
    """`start`: children of the test process (only a parent can wait for a process), in
    sessions of their own, both streams appended to one log."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "__init__.py").write_text("")
    (probe / "__main__.py").write_text(textwrap.dedent("""
        import os, sys, time
        print(f"out {os.getsid(0) == os.getpid()}", flush=True)
        print("err", file=sys.stderr, flush=True)
        if sys.argv[1] == "sleep":
            time.sleep(600)
        sys.exit(int(sys.argv[1]))
    """))
    log = tmp_path / "log.txt"
    log.write_text("before\n")
    sleeper = server.start(["probe", "sleep"], server.env, tmp_path, log, append=True, new_session=True)
    quick = server.start(["probe", "4"], server.env, tmp_path, log, append=True, new_session=True)
    assert quick.wait(60) == 4 and sleeper.poll() is None  # one ended while the other runs
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(0.5)
    os.killpg(sleeper.pid, signal.SIGKILL)
    assert sleeper.wait(60) == -signal.SIGKILL and sleeper.poll() == -signal.SIGKILL
    lines = log.read_text().splitlines()
    assert lines[0] == "before" and sorted(lines[1:]) == ["err", "err", "out True", "out True"]


def test_a_variable_read_while_tensorflow_is_imported_needs_a_fresh_process():
    base = {"HOME": "/h", "TF_CPP_MIN_LOG_LEVEL": "3"}
    assert not needs_fresh_process(dict(base, GRAPH_API_WORKER_WAIT_S="5"), base)
    assert needs_fresh_process({"HOME": "/h"}, base)  # the log level removed
    assert needs_fresh_process(dict(base, TF_USE_LEGACY_KERAS="1"), base)
    assert needs_fresh_process(dict(base, PYTHONPATH="/x"), base)
    assert not needs_fresh_process(dict(base, TF_CONFIG="{}"), base)  # read when a cluster is made
