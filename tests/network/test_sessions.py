"""Each client gets its own session: its non-blocking results are private."""
import pytest
import pytest_twisted

from ipkernel import asyncclient
from ipkernel.error import InvalidDeferredID

pytestmark = pytest.mark.tier2


@pytest_twisted.ensureDeferred
async def test_pending_results_are_private_to_each_client(make_fc_cluster, make_tub):
    cluster = await make_fc_cluster(2)
    alice = cluster.client
    bob = await asyncclient.get_multiengine_client(cluster.mec_furl, tub=make_tub())

    alice_id = await alice.execute("a = 1", block=False)
    bob_id = await bob.execute("b = 2", block=False)

    # Bob can neither fetch Alice's result nor clear it away.
    with pytest.raises(InvalidDeferredID):
        await bob.get_pending_deferred(alice_id, block=True)
    await bob.clear_pending_deferreds()
    with pytest.raises(InvalidDeferredID):
        await bob.get_pending_deferred(bob_id, block=True)

    results = await alice.get_pending_deferred(alice_id, block=True)
    assert [r["input"]["raw"] for r in results] == ["a = 1", "a = 1"]


@pytest_twisted.ensureDeferred
async def test_sessions_share_the_engines(make_fc_cluster, make_tub):
    cluster = await make_fc_cluster(2)
    other = await asyncclient.get_multiengine_client(cluster.mec_furl, tub=make_tub())
    await cluster.client.push({"shared": 42})
    assert await other.pull("shared") == [42, 42]
