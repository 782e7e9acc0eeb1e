"""Tier 3: the task farm on real ipcontroller/ipengine processes (LocalCluster),
including an engine killed with SIGKILL during a long task."""
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(240)]

SESSION = Path(__file__).with_name("task_session.py")


def test_task_client_on_a_local_cluster_survives_kill_9(reaper, tmp_path):
    reaper.run_session(SESSION, str(tmp_path), ok="TASK SESSION OK", timeout=180)
