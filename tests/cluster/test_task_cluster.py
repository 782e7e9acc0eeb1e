"""Tier 3: the task farm on real ipcontroller/ipengine processes (LocalCluster),
including an engine killed with SIGKILL during a long task."""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(240)]

SESSION = Path(__file__).with_name("task_session.py")


def test_task_client_on_a_local_cluster_survives_kill_9(reaper, tmp_path):
    popen = reaper.add_popen(subprocess.Popen(
        [sys.executable, str(SESSION), str(tmp_path)], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True))
    output, _ = popen.communicate(timeout=180)
    assert popen.returncode == 0, output
    assert output.strip().endswith("TASK SESSION OK"), output
