"""Tier 3: the programs behave like Unix tools (issue 12).

``--version``; ``--log-level`` / ``-v`` / ``-q``; at the default level no
Twisted or Foolscap internals and no error lines for a client that comes,
works and goes; a failing ``--exec-lines`` stops the engine with the
user's traceback instead of registering.
"""
import re
import subprocess
import sys
import textwrap

import pytest
import pytest_twisted

import ipkernel

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]

PROGRAMS = {"ipcontroller": "ipkernel.controller", "ipengine": "ipkernel.engine",
            "ipcluster": "ipkernel.cluster"}

#: The start of a log line: time, then ``[namespace#level]`` (``[-]`` for
#: Twisted's old-style events).
LINE = re.compile(r"^\S+ \[(?P<namespace>[^\]#]*)(?:#(?P<level>\w+))?\] (?P<text>.*)$")


def log_lines(output):
    """``[(namespace, level, text)]`` of the log lines in ``output``
    (continuation lines of a multi-line event are left out)."""
    lines = []
    for line in output.splitlines():
        match = LINE.match(line)
        if match:
            lines.append((match["namespace"], match["level"], match["text"]))
    return lines


def run_program(program, option, cwd):
    """``program option`` run to its end (bounded), as a user types it."""
    return subprocess.run([sys.executable, "-m", PROGRAMS[program], option],
                          capture_output=True, text=True, timeout=60, cwd=cwd,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_version_prints_the_name_and_version_and_exits_0(program, tmp_path):
    done = run_program(program, "--version", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{program} (ipkernel) {ipkernel.__version__}\n"


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_help_documents_the_log_options(program, tmp_path):
    done = run_program(program, "--help", tmp_path)
    assert done.returncode == 0, done.stderr
    for option in ("--version", "--log-level", "-v, --verbose", "-q, --quiet", "-qq"):
        assert option in done.stdout


def test_a_bad_log_level_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ipkernel.controller", "--log-level", "loud"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "invalid level 'loud'" in done.stderr


CLIENT_SCRIPT = textwrap.dedent("""
    import sys
    from ipkernel.client import MultiEngineClient, TaskClient
    from ipkernel.task import StringTask

    cluster_dir = sys.argv[1]
    mec = MultiEngineClient(cluster_dir=cluster_dir, timeout=30)
    mec.execute("a = 1")
    mec.push(dict(b=b"x" * 400_000))      # big enough for the data channel
    assert len(mec.pull("b")[0]) == 400_000
    tc = TaskClient(cluster_dir=cluster_dir, timeout=30)
    assert tc.get_task_result(tc.run(StringTask("c = 2", pull="c")), block=True).ns.c == 2
    tc.close()
    mec.close()
    again = MultiEngineClient(cluster_dir=cluster_dir, timeout=30)
    assert again.get_ids() == [0]
    print("CLIENT DONE")
    # ``again`` is left open: it goes when the interpreter exits
""")


async def client_comes_and_goes(cluster):
    """Run a blocking client in a process of its own until it exits."""
    user = cluster.spawn_code("client", f"import sys; sys.argv = ['client', "
                                        f"{str(cluster.dir)!r}]\n{CLIENT_SCRIPT}")
    code = await cluster.within(user.wait(60), 90, "the client process")
    assert code == 0 and "CLIENT DONE" in user.output, user.output


async def stop_all(cluster):
    for proc in [*cluster.engines, cluster.controller]:
        assert await proc.stop() == 0, proc.output


@pytest_twisted.ensureDeferred
async def test_default_level_has_no_internals_and_no_errors_for_a_client_visit(cluster):
    mec = await cluster.start(n_engines=1)
    await client_comes_and_goes(cluster)
    # The visitor's connections closed before this client's calls below were
    # even sent, so the controller has handled their end by the time it answers.
    await mec.execute("d = 4")
    assert await mec.pull("d") == [4]
    await stop_all(cluster)
    for proc in [cluster.controller, *cluster.engines]:
        lines = log_lines(proc.output)
        assert lines, proc.output
        for namespace, level, text in lines:
            assert namespace.startswith("ipkernel."), (proc.name, namespace, text)
            assert level in ("info", "warn"), (proc.name, level, text)
        assert "Traceback" not in proc.output, proc.output
    texts = [text for _, _, text in log_lines(cluster.controller.output)]
    assert any(t.startswith("ipcontroller ready") for t in texts)
    assert any(t.startswith("registered engine 0") for t in texts)
    assert any(t.startswith("unregistered engine 0") for t in texts)
    assert not any("Starting factory" in t or "starting on" in t for t in texts), [t for t in texts if "tarting" in t]


@pytest_twisted.ensureDeferred
async def test_quiet_hides_the_info_lines_but_not_the_ready_line(cluster):
    mec = await cluster.start(n_engines=1, controller_args=["-q"], engine_args=["-q"])
    await mec.execute("a = 1")
    await stop_all(cluster)
    for proc, ready in ((cluster.controller, "ipcontroller ready"),
                        (cluster.engines[0], "ipengine ready")):
        lines = log_lines(proc.output)
        assert [text.startswith(ready) for _, _, text in lines] == [True], proc.output


@pytest_twisted.ensureDeferred
async def test_verbose_shows_debug_lines_and_twisted_internals(cluster):
    mec = await cluster.start(n_engines=1, controller_args=["-v"])
    await client_comes_and_goes(cluster)
    await mec.execute("a = 1")
    await stop_all(cluster)
    lines = log_lines(cluster.controller.output)
    assert any(ns.startswith("ipkernel.") and level == "debug" and "data channel of" in text
               for ns, level, text in lines), cluster.controller.output
    assert any("Starting factory" in text for _, _, text in lines)
    # the engine ran at the default level
    assert not any("Starting factory" in text for _, _, text in log_lines(
        cluster.engines[0].output))


@pytest_twisted.ensureDeferred
async def test_failing_exec_lines_stop_the_engine_with_the_traceback(cluster):
    mec = await cluster.start(n_engines=0)
    engine = cluster.start_engine("--exec-lines", "import os",
                                  "--exec-lines", "def f():\n    return 1 / 0\nf()")
    code = await cluster.within(engine.wait(60), 90, "the engine to exit")
    assert code == 1, engine.output
    out = engine.output
    assert "--exec-lines 'def f():\\n    return 1 / 0\\nf()' failed" in out
    assert "ZeroDivisionError: division by zero" in out
    assert "return 1 / 0" in out   # the user's traceback
    assert "ipengine ready" not in out
    assert await mec.get_ids() == []


@pytest_twisted.ensureDeferred
async def test_repeated_stop_signals_stop_the_controller_once_without_errors(cluster):
    await cluster.start(n_engines=0)
    controller = cluster.controller
    for name in ("TERM", "TERM", "INT"):   # e.g. to the process and to its group, then Ctrl-C
        controller.signal(name)
    assert await cluster.within(controller.wait(30), 40, "the controller to stop") == 0
    lines = log_lines(controller.output)
    assert [level for _, level, _ in lines if level not in ("info", "debug")] == [], \
        controller.output
    assert "Traceback" not in controller.output
    texts = [text for _, _, text in lines]
    # (pending signals arrive in any order, and some may merge into one)
    assert len([t for t in texts if t.endswith(" received: stopping")]) == 1, controller.output
    assert texts[-1] == "ipcontroller stopped"
