"""Tier 3 (issue 13): ``ipcluster stop`` ends the engines a user started by hand.

The controller tells its engines it is shutting down; an ``ipengine`` that
ipcluster did not start then waits ``--stop-wait`` seconds for it to come
back and exits with status 0 and a clear line (before, it reconnected
forever without a word).
"""
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(150)]


def test_ipcluster_stop_ends_a_hand_started_engine(ipcluster, reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    # --engine-furl: the engine FURL file a hand-started engine needs (issue 13)
    started = ipcluster("start", "-n", 1, "--daemon", "--engine-furl", "--cluster-dir",
                        cluster_dir)
    assert started.returncode == 0, started.stdout + started.stderr
    log = tmp_path / "by-hand.log"
    engine = reaper.add_popen(subprocess.Popen(
        [sys.executable, "-m", "ipkernel.engine", "--cluster-dir", str(cluster_dir),
         "--stop-wait", "2", "--logfile", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    reaper.wait_for(lambda: log.exists() and "ipengine ready" in log.read_text(),
                    "the hand-started engine to register")

    stopped = ipcluster("stop", "--cluster-dir", cluster_dir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert engine.wait(30) == 0
    text = log.read_text()
    assert "says it is shutting down" in text
    assert "was shut down and did not come back within 2 s: this engine exits" in text
