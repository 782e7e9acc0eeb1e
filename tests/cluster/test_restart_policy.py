"""The back-off of engine restarts (issue 13; tier 1)."""
import pytest

from ipkernel.cluster import LocalCluster
from ipkernel.cluster.restarts import RestartPolicy

pytestmark = pytest.mark.tier1


def test_restart_policy_delays():
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 10)] == [0, 1, 2, 4, 8, 16, 30, 30, 30]
    assert policy.streak(3, 1.0) == 4 and policy.streak(3, 31.0) == 1
    assert policy.streak(0, None) == 1
    assert [policy.gives_up(n) for n in range(7)] == [False] * 5 + [True] * 2
    assert RestartPolicy(max_start_failures=1).gives_up(1)
    short = RestartPolicy(quick=5, base=0.5, cap=2)
    assert [short.delay(n) for n in range(1, 6)] == [0, 0.5, 1, 2, 2]
    for bad in ({"quick": -1}, {"cap": "x"}, {"max_start_failures": 0}, {"base": True}):
        with pytest.raises(ValueError):
            RestartPolicy(**bad)
    with pytest.raises(TypeError, match="restart must be"):
        LocalCluster(1, restart="yes")
