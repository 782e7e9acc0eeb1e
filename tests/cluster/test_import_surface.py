"""Tier 3: IPython 0.10's import surface (``from ipkernel import client``,
the ``get_*_client`` factories with the default FURL files, positional task
arguments, any picklable callable, ``adapt_to_blocking_client`` in a script)
in a fresh Python process against real processes started by LocalCluster."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(240)]

SESSION = Path(__file__).with_name("import_surface_session.py")


def test_import_surface_on_a_local_cluster(reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    env = dict(os.environ, IPKERNEL_DIR=str(cluster_dir))
    popen = reaper.add_popen(subprocess.Popen(
        [sys.executable, str(SESSION)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True))
    output, _ = popen.communicate(timeout=180)
    assert popen.returncode == 0, output
    assert output.strip().endswith("IMPORT SURFACE OK"), output
