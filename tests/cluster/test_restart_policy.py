"""The back-off of engine restarts (issue 13; tier 1)."""
import pytest

from ipkernel.cluster import LocalCluster
from ipkernel.cluster.restarts import RestartPolicy

pytestmark = pytest.mark.tier1


def test_restart_policy_delays():
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 5)] == [0, 1, 2, 4]
    assert policy.delay(5) is None
    long = RestartPolicy(max_quick_deaths=10)
    assert [long.delay(n) for n in range(1, 10)] == [0, 1, 2, 4, 8, 16, 30, 30, 30]
    assert long.delay(10) is None
    assert policy.streak(3, 1.0) == 4 and policy.streak(3, 31.0) == 1
    assert policy.streak(0, None) == 1
    assert RestartPolicy(max_quick_deaths=2).delay(2) is None
    for bad in ({"quick": -1}, {"cap": "x"}, {"max_quick_deaths": 1}, {"base": True}):
        with pytest.raises(ValueError):
            RestartPolicy(**bad)
    with pytest.raises(TypeError, match="restart must be"):
        LocalCluster(1, restart="yes")
