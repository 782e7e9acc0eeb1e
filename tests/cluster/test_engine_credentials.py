"""Tier 3 (issue 13): under LocalCluster and ipcluster the engine FURL is not
on disk; each engine registers with its own one-time credential.

The session (engine_credentials_session.py) checks on real processes: no
engine FURL file, engines work (map, push/pull), a credential used twice is
refused with a clear error, an engine killed with SIGKILL is restarted and
registers with a new credential, and a controller killed and restarted with
``-r`` gets its engines back under their ids.  The ipcluster tests check
the option that keeps the file for engines started by hand.
"""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(200)]

SESSION = Path(__file__).with_name("engine_credentials_session.py")


def test_engines_register_with_one_time_credentials(reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    popen = reaper.add_popen(subprocess.Popen(
        [sys.executable, str(SESSION), str(cluster_dir)], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True))
    output, _ = popen.communicate(timeout=180)
    assert popen.returncode == 0, output
    assert output.strip().endswith("ENGINE CREDENTIALS SESSION OK"), output
    assert "back after the controller restart" in output


def test_ipcluster_writes_no_engine_furl_file_by_default(ipcluster, reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    started = ipcluster("start", "-n", 1, "--daemon", "--cluster-dir", cluster_dir)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        security = Path(cluster_dir) / "security"
        assert not (security / "ipcontroller-engine.furl").exists()
        assert (security / "ipcontroller-engine-gate.furl").exists()
        # an engine started by hand finds no engine FURL and says so
        done = subprocess.run(
            [sys.executable, "-m", "ipkernel.engine", "--cluster-dir", str(cluster_dir),
             "--furl-wait", "1", "--logfile", str(tmp_path / "hand.log")],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert "ipcontroller-engine.furl" in (tmp_path / "hand.log").read_text()
    finally:
        stopped = ipcluster("stop", "--cluster-dir", cluster_dir)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_ipcluster_engine_furl_lets_a_hand_started_engine_join(ipcluster, reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    started = ipcluster("start", "-n", 1, "--daemon", "--engine-furl", "--cluster-dir",
                        cluster_dir)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        assert (Path(cluster_dir) / "security" / "ipcontroller-engine.furl").exists()
        log = tmp_path / "hand.log"
        reaper.add_popen(subprocess.Popen(
            [sys.executable, "-m", "ipkernel.engine", "--cluster-dir", str(cluster_dir),
             "--stop-wait", "1", "--logfile", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        reaper.wait_for(lambda: log.exists() and "ipengine ready" in log.read_text(),
                        "the hand-started engine to register")
    finally:
        stopped = ipcluster("stop", "--cluster-dir", cluster_dir)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
