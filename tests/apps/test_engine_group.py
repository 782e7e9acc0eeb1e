"""Tier 3: ``ipengine -n N``, N engines forked from one process."""
import os
import signal

import pytest
import pytest_twisted

from ipkernel import credentials
from ipkernel.engine.app import READY
from ipkernel.engine.group import engine_log
from ipkernel.pids import process_alive

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]


def parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def test_each_engine_of_a_group_logs_to_its_own_file():
    assert engine_log("/x/ipengine.log", 0) == "/x/ipengine-0.log"
    assert engine_log("/x/run.d/eng", 12) == "/x/run.d/eng-12"
    assert engine_log(None, 3) is None


async def start_group(cluster, tmp_path, n, exit_with_parent=True):
    cluster.start_controller()
    args = ["-n", str(n), "--logfile", str(tmp_path / "eng.log")]
    if exit_with_parent:
        group = cluster.start_engine(*args)
    else:
        group = cluster.spawn("ipengine-group", "ipkernel.engine",
                              ["--cluster-dir", str(cluster.dir), *args])
    mec = await cluster.connect()
    await cluster.wait_for_ids(mec, range(n))
    return mec, group


@pytest_twisted.ensureDeferred
async def test_a_group_registers_n_engines_each_a_process_forked_from_it(cluster, tmp_path):
    mec, group = await start_group(cluster, tmp_path, 3)
    pids = await cluster.engine_pids(mec)
    assert len(set(pids.values())) == 3 and group.pid not in pids.values()
    assert all(parent_of(pid) == group.pid for pid in pids.values())
    await mec.execute("import os; x = os.getpid() * 2")
    assert await mec.pull("x") == [pids[i] * 2 for i in range(3)]
    for k in range(3):
        assert READY in (tmp_path / f"eng-{k}.log").read_text()
    assert "started 3 engines" in group.output


@pytest_twisted.ensureDeferred
async def test_sigterm_to_the_group_stops_every_engine(cluster, tmp_path):
    mec, group = await start_group(cluster, tmp_path, 2)
    pids = await cluster.engine_pids(mec)
    group.signal("TERM")
    assert await group.wait() == 0
    assert not any(process_alive(pid) for pid in pids.values())
    await cluster.wait_for_ids(mec, [])


@pytest_twisted.ensureDeferred
async def test_an_engine_that_ignores_sigterm_is_killed_after_the_grace_period(cluster,
                                                                              tmp_path):
    from ipkernel.engine.group import STOP_TIMEOUT

    mec, group = await start_group(cluster, tmp_path, 2)
    pids = await cluster.engine_pids(mec)
    # engine 1's user code turns SIGTERM away (it runs in the engine's main thread)
    await mec.execute("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)",
                      targets=1)
    group.signal("TERM")
    assert await group.wait(STOP_TIMEOUT + 30) == 128 + signal.SIGKILL
    out = group.output
    assert f"engine pid {pids[1]} did not stop within {STOP_TIMEOUT:g} s: killing it" in out
    assert f"engine pid {pids[0]} did not stop" not in out   # it stopped when asked
    assert not any(process_alive(pid) for pid in pids.values())


@pytest_twisted.ensureDeferred
async def test_the_group_runs_until_its_last_engine_exits_and_reports_its_status(
        cluster, tmp_path):
    mec, group = await start_group(cluster, tmp_path, 2)
    pids = await cluster.engine_pids(mec)
    await mec.kill(targets=0)
    await cluster.wait_for_ids(mec, [1])
    await cluster.poll(lambda: not process_alive(pids[0]), "engine 0 to exit")
    assert not group.ended and process_alive(pids[1])
    assert "1 engine(s) still run" in group.output
    # the last engine dies with status 3: the group ends with it, with that status
    mec.execute("import os; os._exit(3)", targets=1, block=False).addErrback(lambda _: None)
    assert await group.wait(cluster.START_TIMEOUT) == 3
    assert f"(pid {pids[1]}) exited with status 3" in group.output


@pytest_twisted.ensureDeferred
async def test_engines_of_a_killed_group_stop_by_themselves(cluster, tmp_path):
    # (without --exit-with-parent: the engines watch the group all the same)
    mec, group = await start_group(cluster, tmp_path, 2, exit_with_parent=False)
    pids = list((await cluster.engine_pids(mec)).values())
    group.signal("KILL")
    await group.wait()
    try:
        await cluster.poll(lambda: not any(map(process_alive, pids)),
                           "the engines of the killed group to exit", timeout=15)
    finally:
        for pid in pids:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
    await cluster.wait_for_ids(mec, [])


@pytest.mark.parametrize("args, env, words", [
    (["-n", "2", "--engine-id", "4"], {}, "--engine-id names one engine"),
    (["-n", "2", "--mpi", "mpi4py"], {}, "use mpiexec -n 2"),
    (["-n", "2"], {credentials.CREDENTIAL_ENV: "abc"}, "registers one engine"),
    (["-n", "0"], {}, "the number of engines is 1 or more, not '0'"),
])
@pytest_twisted.ensureDeferred
async def test_a_group_refuses_options_meant_for_one_engine(cluster, args, env, words):
    engine = cluster.start_engine(*args, env=cluster.child_env(**env))
    assert await engine.wait(cluster.START_TIMEOUT) == 2
    assert words in engine.output
    assert "forked" not in engine.output


@pytest.mark.parametrize("args", [["-n", "2"], ["-n3"], ["--engines", "2"], ["--engines=2"]])
def test_launchers_that_watch_one_engine_per_process_refuse_a_group(tmp_path, args):
    from ipkernel.cluster.launcher import EngineLauncher
    from ipkernel.cluster.ssh import SSHEngineSet

    with pytest.raises(ValueError, match="one engine per process: leave .* out"):
        EngineLauncher(tmp_path, 0, ["--log-level", "info", *args])
    with pytest.raises(ValueError, match=r"an engine set \(ssh\)"):
        SSHEngineSet(tmp_path, engine_args=args, engines={"localhost": 2})
    EngineLauncher(tmp_path, 0, ["--engine-id", "3", "--no-pulse"])  # (others pass)
