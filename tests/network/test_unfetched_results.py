"""Tier 2: what the controller keeps for a client's unfetched results is
bounded, expires and is freed when the client goes (issue 13), with real
Tubs and a data channel in one process."""
import pytest
import pytest_twisted
from foolscap.eventual import flushEventualQueue
from twisted.internet import defer, reactor, task

from ipkernel.error import PayloadTooLarge, ResultEvicted

pytestmark = pytest.mark.tier2

MB = 1 << 20
WAIT = 10


async def within(d, seconds=WAIT):
    return await defer.ensureDeferred(d).addTimeout(seconds, reactor)


async def until(check, what, seconds=WAIT):
    """Poll ``check()`` on reactor turns until it is true (bounded)."""
    deadline = reactor.seconds() + seconds
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.01, lambda: None)


async def _cluster_with_array(make_fc_cluster, **kwargs):
    cluster = await make_fc_cluster(1, data_channel=True, **kwargs)
    await within(cluster.client.execute("import numpy; a = numpy.ones(2**20 // 8)"))
    return cluster


def _session(cluster):
    [session] = list(cluster.fc_sme._sessions)
    return session


@pytest_twisted.ensureDeferred
async def test_a_disconnected_clients_unfetched_results_are_freed(make_fc_cluster):
    cluster = await _cluster_with_array(make_fc_cluster)
    client, server = cluster.client, cluster.data_server
    for _ in range(3):
        await within(client.pull("a", targets=0, block=False))
    session = _session(cluster)
    await until(lambda: server.kept_bytes >= 3 * MB, "three kept 1 MB results")
    assert session.sme.unfetched_bytes >= 3 * MB
    await cluster.client_tub.stopService()  # the client goes without fetching them
    await flushEventualQueue()
    await until(lambda: server.kept_bytes == 0, "the kept results to be freed")
    assert session.sme.unfetched_bytes == 0 and session.sme.closed


@pytest_twisted.ensureDeferred
async def test_unfetched_results_expire_with_their_data(make_fc_cluster):
    cluster = await _cluster_with_array(make_fc_cluster)
    client, server = cluster.client, cluster.data_server
    clock = task.Clock()
    session = _session(cluster)
    session.sme.ttl, session.sme.clock = 600, clock.seconds
    deferred_id = await within(client.pull("a", targets=0, block=False))
    await until(lambda: server.kept_bytes >= MB, "the kept result")
    clock.advance(599)
    cluster.fc_sme.expire()  # what the controller's sweep calls
    assert server.kept_bytes >= MB
    clock.advance(2)
    cluster.fc_sme.expire()
    assert server.kept_bytes == 0 and session.sme.unfetched_bytes == 0
    with pytest.raises(ResultEvicted, match="more than 600 s"):
        await within(client.get_pending_deferred(deferred_id, block=True))


@pytest_twisted.ensureDeferred
async def test_over_the_budget_the_oldest_result_and_its_data_go(make_fc_cluster):
    cluster = await _cluster_with_array(make_fc_cluster)
    client, server = cluster.client, cluster.data_server
    sme = _session(cluster).sme
    sme.max_bytes = int(2.5 * MB)
    ids = [await within(client.pull("a", targets=0, block=False)) for _ in range(4)]
    await until(lambda: all(e.done for e in sme._pending.values()), "the four pulls")
    assert 2 * MB < sme.unfetched_bytes <= 2.5 * MB
    await until(lambda: server.kept_bytes <= 2 * MB + 4096, "the oldest blobs to be dropped")
    newest = await within(client.get_pending_deferred(ids[3], block=True))
    assert newest[0].nbytes == MB
    for old in ids[:2]:
        with pytest.raises(ResultEvicted, match="--unfetched-bytes"):
            await within(client.get_pending_deferred(old, block=True))
    assert (await within(client.get_pending_deferred(ids[2], block=True)))[0].nbytes == MB


@pytest_twisted.ensureDeferred
async def test_a_pull_over_the_payload_cap_fails_at_once(make_fc_cluster):
    cluster = await _cluster_with_array(make_fc_cluster, payload_cap=MB // 2)
    started = reactor.seconds()
    with pytest.raises(PayloadTooLarge) as info:
        await within(cluster.client.pull("a", targets=0))
    assert reactor.seconds() - started < 5
    message = str(info.value)
    assert f"payload cap of {MB // 2} bytes" in message and "in pieces" in message
    assert await within(cluster.client.pull("id", targets=0)) == [0]
