"""Tier 3: the user guide's examples (quick start and multi-engine guide) in a
fresh Python process with the real blocking client, against a cluster started
through LocalCluster and through the ``ipcluster`` command."""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(240)]

SESSION = Path(__file__).with_name("user_guide_session.py")


def run_session(where, reaper, timeout=180):
    popen = reaper.add_popen(subprocess.Popen(
        [sys.executable, str(SESSION), str(where)], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True))
    output, _ = popen.communicate(timeout=timeout)
    return popen.returncode, output


def test_user_guide_on_a_local_cluster(reaper):
    code, output = run_session("local", reaper)
    assert code == 0, output
    assert output.strip().endswith("USER GUIDE OK"), output


def test_user_guide_on_a_cluster_started_by_ipcluster(ipcluster, reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    started = ipcluster("--cluster-dir", cluster_dir, "start", "-n", "4", "--daemon")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        code, output = run_session(cluster_dir, reaper)
        assert code == 0, output
        assert output.strip().endswith("USER GUIDE OK"), output
    finally:
        stopped = ipcluster("--cluster-dir", cluster_dir, "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
