"""Tier 3: an engine whose ``--exec-lines`` (or ``--startup-script``) fail at
start exits with status 1 and the user's traceback instead of registering;
LocalCluster and ``ipcluster start`` fail at once with that text (not a
timeout) and leave no process behind.  Also: ``ipcluster -q`` is quiet
and passes its level on (issue 12)."""
import time

import pytest

from ipkernel.cluster import LaunchError, LocalCluster, pidfiles

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(150)]

TIMEOUT = 60
#: Far below TIMEOUT: the failure is reported as soon as the engine exits.
PROMPT = 30
BAD_LINE = "def f():\n    return 1 / 0\nf()"


def pids_of(cluster):
    return [p.pid for p in [cluster.controller, cluster.zygote, *cluster.engines]
            if p is not None and p.pid is not None]


@pytest.mark.parametrize("engine_start", ["fork", "spawn"])
def test_failing_exec_lines_fail_local_cluster_with_the_traceback(reaper, tmp_path,
                                                                 engine_start):
    cluster = LocalCluster(n=2, cluster_dir=reaper.add_cluster_dir(tmp_path / "c"),
                           engine_args=["--exec-lines", "import os", "--exec-lines", BAD_LINE],
                           timeout=TIMEOUT, engine_start=engine_start)
    started = time.monotonic()
    with pytest.raises(LaunchError) as info:
        cluster.start()
    assert time.monotonic() - started < PROMPT
    reaper.add_pids(*pids_of(cluster))
    message = str(info.value)
    assert message.startswith("ipengine-"), message
    assert "exited with status 1 before it was ready" in message
    assert "failed, so the engine does not register: ZeroDivisionError: division by zero" \
        in message
    assert "return 1 / 0" in message          # the user's traceback
    assert info.value.exit_code == 1
    assert reaper.all_gone(pids_of(cluster), timeout=0)
    assert not [r for r in pidfiles.scan(tmp_path / "c" / "pid") if r.alive]


def test_failing_startup_script_fails_local_cluster_with_the_traceback(reaper, tmp_path):
    script = tmp_path / "startup.py"
    script.write_text("x = 1\nraise RuntimeError('the startup script is broken')\n")
    cluster = LocalCluster(n=1, engine_args=["--startup-script", str(script)], timeout=TIMEOUT)
    with pytest.raises(LaunchError) as info:
        cluster.start()
    reaper.add_pids(*pids_of(cluster))
    message = str(info.value)
    assert f"the startup script {str(script)!r} failed" in message
    assert "RuntimeError: the startup script is broken" in message
    assert f'File "{script}", line 2' in message
    assert reaper.all_gone(pids_of(cluster), timeout=0)


def test_ipcluster_start_daemon_fails_with_the_engines_error(ipcluster, reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    started = time.monotonic()
    done = ipcluster("start", "--daemon", "-n", 2, "--cluster-dir", cluster_dir,
                     "--timeout", TIMEOUT, f"--engine-args=--exec-lines '{BAD_LINE}'")
    assert time.monotonic() - started < PROMPT + 15
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("ipcluster: the cluster did not start: ipengine-")
    assert "ZeroDivisionError: division by zero" in done.stderr
    assert "return 1 / 0" in done.stderr
    assert not [r for r in pidfiles.scan(cluster_dir / "pid") if r.alive]


def test_ipcluster_quiet_is_silent_and_passes_its_level_on(ipcluster, reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    done = ipcluster("start", "--daemon", "-q", "-n", 1, "--cluster-dir", cluster_dir,
                     "--timeout", TIMEOUT)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout == "" and done.stderr == ""
        status = ipcluster("status", "-q", "--cluster-dir", cluster_dir)
        assert status.returncode == 0 and "ipcontroller" in status.stdout   # output, not chatter
    finally:
        stopped = ipcluster("stop", "--cluster-dir", cluster_dir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for name in ("ipcontroller", "ipengine-0"):
        log = (cluster_dir / "log" / f"{name}.log").read_text()
        lines = [line for line in log.splitlines() if line and not line.startswith("----")]
        assert len(lines) == 1 and " ready" in lines[0], log   # only the ready line
