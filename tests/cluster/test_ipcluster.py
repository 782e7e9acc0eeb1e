"""Tier 3: the ``ipcluster`` command (start --daemon / status / stop, local, stale pid files)."""
import os
import signal
import subprocess
import sys

import pytest
import pytest_twisted

from ipkernel.cluster import pidfiles
from ipkernel.cluster.app import format_table, format_uptime

from clusterstate import live_pids, registered_ids

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(150)]


@pytest_twisted.ensureDeferred
async def test_start_daemon_status_stop_round_trip(ipcluster, reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    started = ipcluster("start", "-n", 2, "--daemon", "--cluster-dir", cluster_dir)
    assert started.returncode == 0, started.stdout + started.stderr
    assert str(cluster_dir / "security" / "ipcontroller-mec.furl") in started.stdout
    pids = live_pids(cluster_dir)
    assert set(pids) == {"ipcluster", "ipcontroller", "ipengine-0", "ipengine-1"}
    assert await registered_ids(cluster_dir) == [0, 1]

    status = ipcluster("--cluster-dir", cluster_dir, "status")
    assert status.returncode == 0, status.stderr
    for name, pid in pids.items():
        assert any(line.split()[:3] == [name, str(pid), "yes"]
                   for line in status.stdout.splitlines()), status.stdout
    assert "2 engine(s) running" in status.stdout
    assert "registered with the controller: engines [0, 1]" in status.stdout
    url = (cluster_dir / "security" / "ipcontroller-dashboard.url").read_text().strip()
    assert url.startswith("http://127.0.0.1:") and f"dashboard: {url}" in status.stdout
    assert f"  dashboard:        {url}\n" in started.stdout   # where the user starts it

    again = ipcluster("start", "-n", 2, "--daemon", "--cluster-dir", cluster_dir)
    assert again.returncode != 0
    assert "already running" in again.stderr and str(pids["ipcontroller"]) in again.stderr
    local = ipcluster("local", "-n", 1, "--cluster-dir", cluster_dir)
    assert local.returncode != 0 and "already running" in local.stderr
    assert live_pids(cluster_dir) == pids  # nothing new was started

    stopped = ipcluster("stop", "--cluster-dir", cluster_dir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert reaper.all_gone(pids.values(), timeout=0)  # stop waited for them
    assert list((cluster_dir / "pid").iterdir()) == []

    after = ipcluster("status", "--cluster-dir", cluster_dir)
    assert after.returncode == 1 and "no cluster is running" in after.stdout
    assert ipcluster("stop", "--cluster-dir", cluster_dir).returncode == 1
    log = (cluster_dir / "log" / "ipcluster.log").read_text()
    assert "ipcluster ready" in log and "SIGTERM received" in log
    assert f"ipcluster: dashboard: {url}" in log   # the foreground supervisor's line


def test_failing_daemon_start_reports_the_log_tail(ipcluster, reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    started = ipcluster("start", "-n", 1, "--daemon", "--cluster-dir", cluster_dir,
                        "--engine-args=--no-such-option")
    assert started.returncode == 1
    assert "ipengine-0 exited with status 2" in started.stderr
    assert "unrecognized arguments: --no-such-option" in started.stderr
    assert live_pids(cluster_dir) == {}


def start_local(reaper, tmp_path, *args):
    """``ipcluster local`` in the foreground; returns (popen, output file) once ready."""
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    out = tmp_path / "local.out"
    with open(out, "w") as f:
        popen = reaper.add_popen(subprocess.Popen(
            [sys.executable, "-m", "ipkernel.cluster", "local", "--cluster-dir", cluster_dir,
             *map(str, args)], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def ready():
        assert popen.poll() is None, out.read_text()
        return "ipcluster ready" in out.read_text()
    reaper.wait_for(ready, "ipcluster local to be ready", reaper.TIMEOUT)
    return popen, out, cluster_dir


def test_local_stopped_with_sigint_stops_everything(reaper, tmp_path):
    popen, out, cluster_dir = start_local(reaper, tmp_path, "-n", 2)
    pids = live_pids(cluster_dir)
    assert set(pids) == {"ipcluster", "ipcontroller", "ipengine-0", "ipengine-1"}
    assert pids["ipcluster"] == popen.pid
    popen.send_signal(signal.SIGINT)
    assert popen.wait(30) == 0, out.read_text()
    assert reaper.all_gone(pids.values(), timeout=0)
    assert list((cluster_dir / "pid").iterdir()) == []
    text = out.read_text()
    assert "SIGINT received" in text and text.rstrip().endswith("ipcluster: stopped")


def test_local_ends_when_the_controller_exits(reaper, tmp_path):
    popen, out, cluster_dir = start_local(reaper, tmp_path, "-n", 1)
    pids = live_pids(cluster_dir)
    os.kill(pids["ipcontroller"], signal.SIGTERM)
    assert popen.wait(30) == 0, out.read_text()
    assert "ipcontroller exited with status 0" in out.read_text()
    assert reaper.all_gone(pids.values(), timeout=0)


def test_stale_pid_files_are_reported_and_removed(ipcluster, reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    pid_dir = cluster_dir / "pid"
    pid_dir.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=30)
    dead = int(gone.stdout)
    for name in ("ipcontroller", "ipengine-3"):
        (pid_dir / f"{name}.pid").write_text(f"{dead}\n")
    stranger = reaper.add_popen(subprocess.Popen(  # alive, but not a program of ours
        [sys.executable, "-c", "import signal; signal.pause()"]))
    (pid_dir / "ipcluster.pid").write_text(f"{stranger.pid}\n")
    status = ipcluster("status", "--cluster-dir", cluster_dir)
    assert status.returncode == 1
    assert status.stdout.count("stale pid file removed") == 3, status.stdout
    assert list(pid_dir.iterdir()) == []


def test_claim_refuses_a_live_owner_and_replaces_a_stale_one(reaper, tmp_path):
    path = tmp_path / "pid" / "ipcluster.pid"
    owner = reaper.add_popen(subprocess.Popen(
        [sys.executable, "-c", "import signal; signal.pause()", "ipkernel.test-owner"]))
    path.parent.mkdir()
    path.write_text(f"{owner.pid}\n")
    with pytest.raises(pidfiles.AlreadyRunning, match=f"pid {owner.pid}"):
        pidfiles.claim(path)
    owner.kill()
    owner.wait(10)
    assert pidfiles.claim(path) == path
    assert path.read_text() == f"{os.getpid()}\n"
    pidfiles.release(path)
    assert not path.exists()


def test_uptime_and_table_formatting():
    assert format_uptime(0) == "0:00:00"
    assert format_uptime(3 * 3600 + 62.9) == "3:01:02"
    assert format_uptime(2 * 86400 + 5) == "2 d 0:00:05"
    assert format_table(("A", "BB"), [("xyz", 1), ("q", 22)]).splitlines() == [
        "A    BB", "xyz  1", "q    22"]


def test_logdir_puts_every_log_there_and_ports_are_fixed(ipcluster, reaper, tmp_path):
    import socket
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    logs = tmp_path / "logs"
    ports = []
    for _ in range(2):   # two free ports, given back at once (the controller takes them)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    started = ipcluster("local", "-n", 1, "--daemon", "--cluster-dir", cluster_dir,
                        "--logdir", logs, "--client-port", ports[0], "--engine-port", ports[1])
    assert started.returncode == 0, started.stdout + started.stderr
    pids = live_pids(cluster_dir)
    names = {p.name for p in logs.iterdir()}
    assert {"ipcluster.log", "ipcontroller.log", "ipengine-0.log"} <= names, names
    assert not (cluster_dir / "log").exists() or not list((cluster_dir / "log").iterdir())
    furl = (cluster_dir / "security" / "ipcontroller-mec.furl").read_text()
    assert f":{ports[0]}" in furl
    stopped = ipcluster("stop", "--cluster-dir", cluster_dir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert reaper.all_gone(pids.values(), timeout=0)
