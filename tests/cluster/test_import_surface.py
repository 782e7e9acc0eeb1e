"""Tier 3: IPython 0.10's import surface (``from ipkernel import client``,
the ``get_*_client`` factories with the default FURL files, positional task
arguments, any picklable callable, ``adapt_to_blocking_client`` in a script)
in a fresh Python process against real processes started by LocalCluster."""
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(240)]

SESSION = Path(__file__).with_name("import_surface_session.py")


def test_import_surface_on_a_local_cluster(reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    env = dict(os.environ, IPKERNEL_DIR=str(cluster_dir))
    reaper.run_session(SESSION, ok="IMPORT SURFACE OK", timeout=180, env=env)
