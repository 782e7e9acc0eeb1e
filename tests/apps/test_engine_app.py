"""Tier 3: the ipengine program (main-thread user code, signals, start-up options)."""
import os
import signal
import textwrap
import time

import pytest
import pytest_twisted

from ipkernel.pids import process_alive
from ipkernel.error import CompositeError

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]

#: "Promptly": far below the 60 s the interrupted code would otherwise take.
PROMPT = 5.0


async def interrupt_when_running(cluster, mec, engine_id):
    """Send interrupt until the engine says user code was running (it was)."""
    async def attempt():
        return (await mec.interrupt(targets=engine_id)) == [True]
    await cluster.poll(attempt, f"user code to be running on engine {engine_id}")


@pytest.mark.parametrize("code", ["while True: pass", "import time; time.sleep(60)"],
                         ids=["busy-loop", "sleep"])
@pytest_twisted.ensureDeferred
async def test_interrupt_stops_running_user_code_promptly(cluster, code):
    mec = await cluster.start()
    running = await mec.execute(code, targets=0, block=False)
    other = await mec.execute("import time; time.sleep(1); done = id", targets=1, block=False)

    await interrupt_when_running(cluster, mec, 0)
    started = time.monotonic()
    with pytest.raises(CompositeError) as info:
        await cluster.within(mec.get_pending_deferred(running, block=True), 2 * PROMPT,
                             "the interrupted command")
    assert time.monotonic() - started < PROMPT
    assert [type(e) for e in info.value.exceptions] == [KeyboardInterrupt]

    # the engine survives the interrupt, and engine 1 was not touched
    assert await mec.get_ids() == [0, 1]
    await mec.execute("after = 'still here'", targets=0)
    assert await mec.pull("after", targets=0) == ["still here"]
    await cluster.within(mec.get_pending_deferred(other, block=True), 30, "engine 1")
    assert await mec.pull("done", targets=1) == [1]
    assert not cluster.engines[0].ended and not cluster.engines[1].ended


@pytest_twisted.ensureDeferred
async def test_interrupt_of_an_idle_engine_does_nothing(cluster):
    mec = await cluster.start(n_engines=1)
    assert await mec.interrupt(targets=0) == [False]
    await mec.execute("x = 1")
    assert await mec.pull("x") == [1]


@pytest_twisted.ensureDeferred
async def test_sigterm_to_an_idle_engine_stops_it_cleanly(cluster):
    # (SIGINT to an idle engine is harmless: see test_engine_control.py)
    mec = await cluster.start()
    pids = await cluster.engine_pids(mec)
    engine = cluster.process_with_pid(pids[1])
    engine.signal("TERM")
    assert await engine.wait() == 0
    await cluster.wait_for_ids(mec, [0])
    assert "SIGTERM received" in engine.output


@pytest_twisted.ensureDeferred
async def test_sigint_while_busy_interrupts_without_stopping(cluster, tmp_path):
    mec = await cluster.start(n_engines=1)
    pids = await cluster.engine_pids(mec)
    engine = cluster.process_with_pid(pids[0])
    marker = tmp_path / "running"
    busy = await mec.execute(f"import time\nopen({str(marker)!r}, 'w').close()\n"
                             f"while True: time.sleep(0.01)", block=False)
    await cluster.poll(marker.exists, "the loop to start")

    engine.signal("INT")  # Ctrl-C from outside, while user code runs
    with pytest.raises(CompositeError) as info:
        await cluster.within(mec.get_pending_deferred(busy, block=True), 2 * PROMPT,
                             "the interrupted loop")
    assert [type(e) for e in info.value.exceptions] == [KeyboardInterrupt]
    assert await mec.get_ids() == [0]
    await mec.execute("x = 1")
    assert not engine.ended


@pytest_twisted.ensureDeferred
async def test_kill_of_one_engine_stops_that_process(cluster):
    mec = await cluster.start()
    pids = await cluster.engine_pids(mec)
    await mec.kill(targets=1)
    assert await cluster.process_with_pid(pids[1]).wait() == 0
    await cluster.wait_for_ids(mec, [0])
    assert not cluster.process_with_pid(pids[0]).ended


@pytest_twisted.ensureDeferred
async def test_exec_lines_and_startup_script_run_at_start_and_after_reset(cluster, tmp_path):
    script = tmp_path / "startup.py"
    script.write_text("z = x + y\nfrom math import tau\n")
    mec = await cluster.start(n_engines=1, engine_args=[
        "--exec-lines", "x = 5", "--exec-lines", "y = x + 1", "--startup-script", str(script)])
    assert await mec.pull(("x", "y", "z")) == [[5, 6, 11]]
    await mec.execute("x = 100")
    await mec.reset()
    assert await mec.pull(("x", "z")) == [[5, 11]]
    assert "tau" in (await mec.keys())[0]


@pytest_twisted.ensureDeferred
async def test_mpi_rank_becomes_the_engine_id(cluster, tmp_path):
    fake = tmp_path / "fake_mpi"
    (fake / "mpi4py").mkdir(parents=True)
    (fake / "mpi4py" / "__init__.py").write_text("")
    (fake / "mpi4py" / "MPI.py").write_text(textwrap.dedent("""
        import os

        class _World:
            def Get_rank(self):
                return int(os.environ["FAKE_MPI_RANK"])

            def Get_size(self):
                return 4

        COMM_WORLD = _World()
    """))
    env = cluster.child_env(pythonpath=[fake], FAKE_MPI_RANK="3")
    mec = await cluster.start(n_engines=0)
    cluster.start_engine("--mpi", "mpi4py", env=env)
    await cluster.wait_for_ids(mec, [3])
    await mec.execute("r = (mpi.rank, mpi.size, id)")
    assert await mec.pull("r") == [(3, 4, 3)]


@pytest_twisted.ensureDeferred
async def test_mpi_without_mpi4py_fails_clearly(cluster, tmp_path):
    # mpi4py may be installed here (scripts/ci/mpi.sh): a module found first
    # on the path makes it missing, as on a machine without it
    hide = tmp_path / "no_mpi"
    hide.mkdir()
    (hide / "mpi4py.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'mpi4py'\", name='mpi4py')\n")
    engine = cluster.start_engine("--mpi", "mpi4py", env=cluster.child_env(pythonpath=[hide]))
    assert await engine.wait() == 1
    assert "--mpi=mpi4py needs the mpi4py package" in engine.output


@pytest_twisted.ensureDeferred
async def test_missing_furl_file_is_waited_for_then_reported(cluster):
    engine = cluster.start_engine("--furl-wait", "1")
    assert await engine.wait() == 1
    assert "did not appear within 1 s" in engine.output
    assert str(cluster.engine_furl_file) in engine.output


@pytest_twisted.ensureDeferred
async def test_engine_started_before_the_controller_waits_for_it(cluster):
    engine = cluster.start_engine()
    await cluster.poll(lambda: "waiting up to" in engine.output, "the engine to start waiting")
    cluster.start_controller()
    mec = await cluster.connect()
    await cluster.wait_for_ids(mec, [0])


def _gone(pid):
    """True when ``pid`` no longer runs (it exited; a zombie counts as gone)."""
    return not process_alive(pid)


@pytest_twisted.ensureDeferred
async def test_engine_stops_when_the_launcher_named_by_parent_pid_exits(cluster, tmp_path):
    # a parent starts an engine (which waits for a FURL file that never comes), then exits
    logfile = tmp_path / "engine.log"
    parent = cluster.spawn_code("parent", textwrap.dedent(f"""
        import os, subprocess, sys
        p = subprocess.Popen([sys.executable, "-m", "ipkernel.engine", "--cluster-dir",
                              {str(cluster.dir)!r}, "--parent-pid", str(os.getpid()),
                              "--furl-wait", "60",
                              "--logfile", {str(logfile)!r}],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        print("child", p.pid, flush=True)
    """))
    assert await parent.wait() == 0
    child = int(parent.output.split("child", 1)[1].split()[0])
    try:
        await cluster.poll(lambda: _gone(child), "the orphaned engine to exit", timeout=15)
        assert "the parent process exited" in logfile.read_text()
    finally:
        if not _gone(child):
            os.kill(child, signal.SIGKILL)
