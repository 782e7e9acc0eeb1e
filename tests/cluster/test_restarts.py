"""Tier 3: engines that crash are restarted with a back-off (issue 13).

A poison task costs restarts, not the cluster (LocalCluster, in a session
script: blocking clients cannot run in pytest's reactor thread); a crash
loop backs off and is given up; restarts can be turned off; deliberate
stops are never restarted; ``ipcluster`` restarts and ``--no-restart``.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted

from ipkernel.cluster import LocalCluster
from ipkernel.cluster.launcher import ProcessLauncher
from ipkernel.cluster.restarts import EngineRestarter, RestartPolicy

from clusterstate import live_pids, registered_ids

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]

SESSION = Path(__file__).with_name("restarts_session.py")
WAIT = 60


def test_a_poison_task_costs_restarts_not_the_cluster(reaper):
    popen = reaper.add_popen(subprocess.Popen(
        [sys.executable, str(SESSION)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True))
    output, _ = popen.communicate(timeout=100)
    assert popen.returncode == 0, output
    assert "RESTARTS SESSION OK" in output, output
    # each restart was logged with the slot, the exit status and the delay
    assert "ipengine-0 (pid" in output and "exited with status 3" in output
    assert "restarting it now (death 1 in a row; slot 0)" in output
    assert "restarting it in 1 s (death 2 in a row" in output


def test_a_crash_loop_backs_off_and_is_given_up(reaper, tmp_path):
    marker = tmp_path / "crash"
    crash_at_start = f"import os; os.path.exists({str(marker)!r}) and os._exit(3)"
    policy = RestartPolicy()
    with LocalCluster(n=1, cluster_dir=reaper.add_cluster_dir(tmp_path / "cluster"),
                      engine_args=["--exec-lines", crash_at_start]) as cluster:
        engine = cluster.engines[0]
        marker.touch()
        os.kill(engine.pid, signal.SIGKILL)
        exits = cluster.wait_for_engine_exits(
            lambda ex: ex if ex and ex[-1].action == "given up" else None, WAIT)
        assert exits, f"the slot was not given up: {cluster.engine_exits}"
        # the killed engine had registered: restarted at once; then each
        # restart dies before registering, 5 times in a row, with growing waits
        assert [e.action for e in exits] == ["restart"] * 5 + ["given up"], exits
        assert [e.status for e in exits] == [-signal.SIGKILL] + [3] * 5, exits
        assert [e.delay for e in exits[:5]] == [0, 1, 2, 4, 8], exits
        for restart in exits[:5]:
            # each restart came no sooner than its delay after the death
            assert restart.restarted_at - restart.at >= restart.delay - 0.01, restart
        for earlier, later in zip(exits, exits[1:]):
            assert later.pid == earlier.new_pid, (earlier, later)
            assert later.uptime < policy.quick
        assert not engine.is_alive()
        log = engine.log_file.read_text()
        assert log.count(f"---- {engine.name} started") == 6
    assert [e.action for e in cluster.engine_exits] == ["restart"] * 5 + ["given up"]


def test_restart_false_leaves_a_dead_engine_dead(reaper, tmp_path):
    with LocalCluster(n=1, cluster_dir=reaper.add_cluster_dir(tmp_path / "cluster"),
                      restart=False) as cluster:
        engine = cluster.engines[0]
        process = engine.process
        os.kill(engine.pid, signal.SIGKILL)
        assert engine.wait(WAIT) == -signal.SIGKILL
        assert engine.process is process and not engine.is_alive()
        assert cluster.engine_exits == []
        with pytest.raises(RuntimeError, match="restart=True"):
            cluster.wait_for_engine_exits(bool, 1)


class Controller:
    """Stands for the controller's launcher."""

    def __init__(self):
        self.alive = True

    def is_alive(self):
        return self.alive


def child(tmp_path, index, code):
    launcher = ProcessLauncher(f"child-{index}", [sys.executable, "-c", code],
                               tmp_path / f"child-{index}.log")
    launcher.index = index
    return launcher


def test_deliberate_stops_and_a_dead_controller_are_not_restarted(tmp_path):
    # real processes under the restarter, each ending in its own way
    go = tmp_path / "go"
    wait_go = (f"import os, sys, time\nwhile not os.path.exists({str(go)!r}): "
               f"time.sleep(0.01)\n")
    launchers = [child(tmp_path, 0, "import time; time.sleep(60)"),
                 child(tmp_path, 1, wait_go + "sys.exit(0)"),
                 child(tmp_path, 2, wait_go + "os._exit(7)"),
                 child(tmp_path, 3, "import time; time.sleep(60)")]
    for launcher in launchers:
        launcher.start()
    controller = Controller()
    # (a second quick death waits 3 s: time enough to see the controller go first)
    restarter = EngineRestarter(launchers, controller, RestartPolicy(base=3.0)).start()
    try:
        launchers[0].shutdown(timeout=5)              # through its launcher
        restarter.wait_for(lambda ex: len(ex) == 1, WAIT)
        go.touch()                                    # 1 exits 0, 2 crashes with 7
        # (the restarted child 2 may die again before child 1's exit is seen)
        exits = restarter.wait_for(lambda ex: {0, 1, 2} <= {e.index for e in ex} and ex, WAIT)
        by_index = {}
        for e in exits:
            by_index.setdefault(e.index, e)   # the first exit of each
        assert by_index[0].action == "stopped" and by_index[0].status == -signal.SIGTERM
        assert by_index[1].action == "stopped" and by_index[1].status == 0
        assert by_index[2].action == "restart" and by_index[2].status == 7
        restarted = restarter.wait_for(lambda ex: by_index[2].new_pid, WAIT)
        assert restarted and restarted == launchers[2].pid
        # the restarted child ends with 7 again (go exists): a quick death, 3 s later
        again = restarter.wait_for(lambda ex: [e for e in ex if e.index == 2][1:2], WAIT)[0]
        assert again.action == "restart" and again.delay == 3 and again.pid == restarted
        controller.alive = False
        os.kill(launchers[3].pid, signal.SIGKILL)
        gone = restarter.wait_for(lambda ex: [e for e in ex if e.index == 3], WAIT)
        assert gone[0].action == "controller gone" and gone[0].status == -signal.SIGKILL
        # the restart that was due is dropped too: the controller is gone
        assert restarter.wait_for(lambda ex: again.action == "controller gone", WAIT)
        assert again.new_pid is None and not launchers[2].is_alive()
    finally:
        restarter.stop()
        for launcher in launchers:
            launcher.shutdown(timeout=5, now=True)
    assert not any(launcher.is_alive() for launcher in launchers)


# -- ipcluster --------------------------------------------------------------------------


def log_has(cluster_dir, text):
    return text in (cluster_dir / "log" / "ipcluster.log").read_text()


async def wait_registered(cluster_dir, count):
    deadline = time.monotonic() + WAIT
    while True:
        ids = await registered_ids(cluster_dir)
        if len(ids) == count or time.monotonic() > deadline:
            return ids


@pytest_twisted.ensureDeferred
async def test_ipcluster_restarts_a_killed_engine_and_stop_restarts_nothing(
        ipcluster, reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    started = ipcluster("start", "-n", 2, "--daemon", "--cluster-dir", cluster_dir)
    assert started.returncode == 0, started.stdout + started.stderr
    pids = live_pids(cluster_dir)
    os.kill(pids["ipengine-0"], signal.SIGKILL)
    reaper.wait_for(lambda: log_has(cluster_dir, "ipengine-0 restarted as pid"),
                    "the restart of ipengine-0")
    new_pid = live_pids(cluster_dir).get("ipengine-0")
    assert new_pid and new_pid != pids["ipengine-0"]
    assert log_has(cluster_dir, f"ipengine-0 (pid {pids['ipengine-0']}) exited with status -9")
    ids = await wait_registered(cluster_dir, 2)
    assert len(ids) == 2 and 2 in ids, ids   # the restarted engine has a new id
    stopped = ipcluster("stop", "--cluster-dir", cluster_dir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    log = (cluster_dir / "log" / "ipcluster.log").read_text()
    after_stop = log[log.index("SIGTERM received"):]
    assert "restart" not in after_stop, after_stop
    assert live_pids(cluster_dir) == {}


@pytest_twisted.ensureDeferred
async def test_ipcluster_no_restart_leaves_the_dead_engine_dead(ipcluster, reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    started = ipcluster("start", "-n", 2, "--daemon", "--no-restart",
                        "--cluster-dir", cluster_dir)
    assert started.returncode == 0, started.stdout + started.stderr
    pids = live_pids(cluster_dir)
    os.kill(pids["ipengine-0"], signal.SIGKILL)
    reaper.wait_for(lambda: log_has(
        cluster_dir, f"ipengine-0 (pid {pids['ipengine-0']}) exited with status -9 "
                     f"(not restarted: --no-restart)"), "ipcluster to see the engine die")
    ids = await wait_registered(cluster_dir, 1)
    assert len(ids) == 1 and ids[0] in (0, 1), ids   # no new engine came
    assert "ipengine-0" not in live_pids(cluster_dir)
    assert not log_has(cluster_dir, "restarted as pid")
    engine_log = (cluster_dir / "log" / "ipengine-0.log").read_text()
    assert engine_log.count("---- ipengine-0 started") == 1
    status = ipcluster("status", "--cluster-dir", cluster_dir)
    assert "1 engine(s) running" in status.stdout, status.stdout
    stopped = ipcluster("stop", "--cluster-dir", cluster_dir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
