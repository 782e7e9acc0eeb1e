"""Tier 2: large values between client and engines go on the data channel."""
import pytest
import pytest_twisted

from ipkernel.datachannel import THRESHOLD
from ipkernel.error import PayloadTooLarge

from awaiting import raises, within

np = pytest.importorskip("numpy")
pytestmark = pytest.mark.tier2

BIG = THRESHOLD // 8 * 4  # float64 items: four times the threshold


def engine_peer(cluster, k):
    return cluster.connectors[k]._reference.data


@pytest_twisted.ensureDeferred
async def test_everyone_joins_the_data_channel(make_fc_cluster):
    cluster = await make_fc_cluster(2, data_channel=True)
    assert cluster.client.data is not None and cluster.client.data.connected
    assert all(engine_peer(cluster, k).connected for k in range(2))
    plain = await make_fc_cluster(1, data_channel=False)
    assert plain.client.data is None and engine_peer(plain, 0) is None


@pytest_twisted.ensureDeferred
async def test_push_and_pull_large_arrays(make_fc_cluster):
    cluster = await make_fc_cluster(2, data_channel=True)
    client = cluster.client
    a = np.arange(BIG, dtype=float)
    await within(client.push({"a": a, "small": 5}, targets=0))
    assert client.data.bytes_sent >= a.nbytes
    assert engine_peer(cluster, 0).bytes_received >= a.nbytes
    assert engine_peer(cluster, 1).bytes_received == 0
    back = await within(client.pull("a", targets=0))
    assert (back[0] == a).all() and back[0].flags.writeable
    assert client.data.bytes_received >= a.nbytes
    await within(client.push({"b": a * 2}))  # to every engine
    sums = await within(client.execute("s = float(b.sum())"))
    assert len(sums) == 2
    assert await within(client.pull("s")) == [float((a * 2).sum())] * 2


@pytest_twisted.ensureDeferred
async def test_scatter_gather_apply_and_serialized_values(make_fc_cluster):
    cluster = await make_fc_cluster(2, data_channel=True)
    client = cluster.client
    a = np.random.default_rng(1).random(4 * BIG)
    await within(client.scatter("part", a))
    assert all(engine_peer(cluster, k).bytes_received > 0 for k in range(2))
    assert (await within(client.gather("part")) == a).all()
    total = await within(client.apply(lambda x: float(x.sum()), (a,), targets=1))
    assert total == [pytest.approx(float(a.sum()))]
    pulled = await within(client.pull_serialized("part", targets=0))
    assert pulled[0].nbytes >= a.nbytes // 2
    await within(client.push_serialized({"again": pulled[0]}, targets=1))
    got = await within(client.pull("again", targets=1))
    assert (got[0] == a[:len(a) // 2]).all()


@pytest_twisted.ensureDeferred
async def test_non_blocking_results_fetch_their_bulk_data(make_fc_cluster):
    cluster = await make_fc_cluster(1, data_channel=True)
    client = cluster.client
    a = np.ones(BIG)
    await within(client.push({"a": a}, targets=0))
    did = await within(client.pull("a", targets=0, block=False))
    value = await within(client.get_pending_deferred(did, block=True))
    assert (value[0] == a).all()


@pytest_twisted.ensureDeferred
async def test_the_payload_cap_holds_on_the_data_channel(make_fc_cluster):
    cluster = await make_fc_cluster(1, data_channel=True, payload_cap=THRESHOLD * 2)
    client = cluster.client
    err = await raises(PayloadTooLarge, client.push({"a": np.ones(BIG)}, targets=0))
    assert "payload cap" in str(err)
    # nothing was lost: the engine still works
    await within(client.push({"b": 1}, targets=0))
    assert await within(client.pull("b", targets=0)) == [1]


@pytest_twisted.ensureDeferred
async def test_a_client_without_the_data_channel_still_gets_large_results(make_fc_cluster):
    cluster = await make_fc_cluster(1, data_channel=True)
    client = cluster.client
    client.close()  # as if it could not reach the data port
    a = np.arange(BIG, dtype=float)
    await within(client.push({"a": a}, targets=0))  # through Foolscap
    assert engine_peer(cluster, 0).bytes_received == 0
    back = await within(client.pull("a", targets=0))  # the engine offloads; Foolscap hands it over
    assert engine_peer(cluster, 0).bytes_sent >= a.nbytes
    assert (back[0] == a).all()
    assert cluster.data_server.kept_bytes == 0
