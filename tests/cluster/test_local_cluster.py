"""Tier 3: LocalCluster starts real ipcontroller/ipengine processes and always stops them."""
import os
import subprocess
import sys
import textwrap

import pytest
import pytest_twisted
from foolscap.eventual import flushEventualQueue

from ipkernel import asyncclient, fcutil
from ipkernel.cluster import LaunchError, LocalCluster
from ipkernel.cluster import pidfiles
from ipkernel.pids import process_alive

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]

TIMEOUT = 60


def pids_of(cluster):
    return [cluster.controller.pid, *(e.pid for e in cluster.engines)]


@pytest_twisted.ensureDeferred
async def test_starts_n_engines_and_all_are_registered(reaper):
    cluster = LocalCluster(n=3, timeout=TIMEOUT)
    with cluster:
        reaper.add_pids(*pids_of(cluster))
        assert cluster.is_running()
        assert all(e.is_alive() for e in cluster.engines)
        tub = fcutil.make_tub()
        tub.startService()
        try:
            mec = await asyncclient.get_multiengine_client(str(cluster.mec_furl_file), tub=tub)
            assert await mec.get_ids() == [0, 1, 2]
            engine_pids = await mec.apply(os.getpid)
            assert sorted(engine_pids) == sorted(e.pid for e in cluster.engines)
        finally:
            await tub.stopService()
            await flushEventualQueue()
        temp_dir = cluster.cluster_dir
        assert temp_dir.is_dir() and oct(temp_dir.joinpath("security").stat().st_mode & 0o777) \
            == oct(0o700)
    assert not cluster.is_running()
    assert reaper.all_gone(pids_of(cluster), timeout=0)
    assert not temp_dir.exists()


def test_failing_engine_start_shows_its_log_tail_and_leaves_nothing(reaper):
    cluster = LocalCluster(n=2, engine_args=["--no-such-option"], timeout=TIMEOUT)
    with pytest.raises(LaunchError) as info:
        cluster.start()
    reaper.add_pids(*pids_of(cluster))
    message = str(info.value)
    assert message.startswith("ipengine-0 exited with status 2 before it was ready")
    assert "ipengine: error: unrecognized arguments: --no-such-option" in message
    assert info.value.name == "ipengine-0"
    assert reaper.all_gone(pids_of(cluster), timeout=0)
    assert not cluster.is_running()
    assert not cluster.cluster_dir.exists()  # the temporary directory is removed too


def test_failing_controller_start_shows_its_log_tail(reaper, tmp_path):
    cluster = LocalCluster(n=1, cluster_dir=tmp_path / "c", controller_args=["--bogus"],
                           timeout=TIMEOUT)
    with pytest.raises(LaunchError, match=r"(?s)^ipcontroller exited with status 2 .*"
                                          r"unrecognized arguments: --bogus"):
        cluster.start()
    # engines start beside the controller (they wait for its FURL file); a
    # failed start stops every one of them with it
    pids = [cluster.controller.pid] + [e.pid for e in cluster.engines if e.pid is not None]
    reaper.add_pids(*pids)
    assert reaper.all_gone(pids, timeout=0)
    assert (tmp_path / "c" / "log" / "ipcontroller.log").exists()  # a given directory stays


def test_processes_stop_after_an_exception_in_the_with_block(reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    with pytest.raises(KeyError):
        with LocalCluster(n=2, cluster_dir=cluster_dir, timeout=TIMEOUT) as cluster:
            reaper.add_pids(*pids_of(cluster))
            names = {r.name for r in pidfiles.scan(cluster_dir / "pid") if r.alive}
            assert names == {"ipcontroller", "ipengine-0", "ipengine-1"}
            raise KeyError("boom")
    assert reaper.all_gone(pids_of(cluster), timeout=0)
    assert list((cluster_dir / "pid").iterdir()) == []
    assert (cluster_dir / "log" / "ipengine-1.log").exists()
    assert cluster.engines[0].exit_code == 0  # stopped politely
    cluster.stop()  # a second stop does nothing


def test_restart_after_stop_and_refuse_double_start(reaper):
    cluster = LocalCluster(n=1, timeout=TIMEOUT)
    cluster.start()
    try:
        reaper.add_pids(*pids_of(cluster))
        with pytest.raises(RuntimeError, match="already running"):
            cluster.start()
    finally:
        cluster.stop()
    first = pids_of(cluster)
    with cluster:
        reaper.add_pids(*pids_of(cluster))
        assert cluster.is_running() and pids_of(cluster) != first
    assert reaper.all_gone(pids_of(cluster), timeout=0)


def test_multiengine_client_needs_a_running_cluster():
    with pytest.raises(RuntimeError, match="not running"):
        LocalCluster(n=1).multiengine_client()
    with pytest.raises(ValueError):
        LocalCluster(n=-1)


SCRIPT = textwrap.dedent("""
    import signal, sys
    from ipkernel.cluster import LocalCluster
    cluster = LocalCluster(n=2, timeout=60).start()
    print(cluster.controller.pid, *(e.pid for e in cluster.engines), flush=True)
    if sys.argv[1] == "wait":
        signal.pause()
""")


def test_processes_stop_at_interpreter_exit(reaper, tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, "exit"], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=tmp_path)
    pids = [int(p) for p in done.stdout.split()]
    reaper.add_pids(*pids)
    assert done.returncode == 0, done.stderr
    assert len(pids) == 3
    assert reaper.all_gone(pids, timeout=0)


def test_processes_stop_when_the_launching_process_is_killed(reaper, tmp_path):
    out = tmp_path / "out"
    with open(out, "w") as f:
        parent = reaper.add_popen(subprocess.Popen(
            [sys.executable, "-c", SCRIPT, "wait"], stdout=f, stderr=subprocess.STDOUT,
            cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp_path)}))  # keeps its temp dir
    line = reaper.wait_for(lambda: out.read_text().endswith("\n") and out.read_text(),
                           "the pids of the cluster", TIMEOUT)
    pids = [int(p) for p in line.split()]
    reaper.add_pids(*pids)
    assert all(process_alive(p) for p in pids)
    parent.kill()
    parent.wait(10)
    # the controller and the engines watch their parent (once a second)
    assert reaper.all_gone(pids, timeout=20)


@pytest.mark.parametrize("engine_start", ["fork", "spawn"])
def test_logs_are_private_whatever_the_umask(reaper, tmp_path, engine_start):
    # Logs name ports, pids and what the engines ran: owner only, like security/.
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    (cluster_dir / "log").mkdir(parents=True, mode=0o755)
    old = cluster_dir / "log" / "ipengine-0.log"
    old.write_text("an earlier run's log\n")
    old.chmod(0o666)
    previous_umask = os.umask(0)
    try:
        with LocalCluster(n=1, cluster_dir=cluster_dir, timeout=TIMEOUT,
                          engine_start=engine_start) as cluster:
            reaper.add_pids(*pids_of(cluster))
            logs = sorted(p.name for p in (cluster_dir / "log").iterdir())
            modes = {p.name: p.stat().st_mode & 0o777 for p in (cluster_dir / "log").iterdir()}
    finally:
        os.umask(previous_umask)
    assert {"ipcontroller.log", "ipengine-0.log"} <= set(logs), logs
    assert (cluster_dir / "log").stat().st_mode & 0o777 == 0o700
    assert modes == {name: 0o600 for name in logs}, modes
    assert old.read_text().startswith("an earlier run's log\n")  # appended to, not replaced
