"""Tier 3: ipkernel.cluster.Cluster on local engines (start, add, remove,
restart under the same id, stop), and its argument checks."""
import re
from pathlib import Path

import pytest

from ipkernel.cluster import Cluster
from ipkernel.cluster.engineset import canonical_mode

SESSION = Path(__file__).with_name("cluster_api_session.py")


@pytest.mark.tier3
@pytest.mark.timeout(180)
def test_engines_are_added_removed_and_restarted_under_their_id(reaper):
    output = reaper.run_session(SESSION, ok="CLUSTER API SESSION OK", timeout=150)
    pids = [int(p) for p in re.search(r"^pids (.*)$", output, re.M).group(1).split()]
    assert len(pids) >= 5  # 2 + 1 engines, the restarted one, the controller
    assert reaper.all_gone(pids, timeout=10)


def test_modes_and_their_aliases_are_checked():
    assert canonical_mode("mpirun") == "mpiexec"
    with pytest.raises(ValueError, match="unknown launcher mode 'condor'.*slurm"):
        Cluster(engines="condor")
    with pytest.raises(ValueError, match="controller runs here"):
        Cluster(engines="ssh", controller="ssh", hosts={"node1": 2})
    with pytest.raises(ValueError, match="needs clusterfile= or hosts="):
        Cluster(engines="ssh")
    assert Cluster(engines="ssh", hosts={"node1": 2, "node2": 3}).n == 5
    assert Cluster(engines="slurm").n == 4
    with pytest.raises(ValueError, match="non-negative number of engines"):
        Cluster(n=-1)


def test_a_cluster_that_is_not_started_says_so():
    with pytest.raises(RuntimeError, match="not running: call start"):
        Cluster(n=1).multiengine_client()
