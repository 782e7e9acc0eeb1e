"""Tier 2: a CompositeError keeps what the healthy engines returned, also
when that is bulk data on the data channel, and also for non-blocking calls
fetched later (issue 13: the healthy engines' results were thrown away)."""
import time

import pytest
import pytest_twisted

from ipkernel.controller import multiengine
from ipkernel.datachannel import THRESHOLD
from ipkernel.error import CompositeError, EngineError

from awaiting import composite, within

np = pytest.importorskip("numpy")
pytestmark = pytest.mark.tier2

BIG = THRESHOLD // 8 * 4  # float64 items: four times the threshold


@pytest_twisted.ensureDeferred
async def test_bulk_results_of_the_healthy_engines_come_with_the_error(make_fc_cluster):
    cluster = await make_fc_cluster(3, data_channel=True)
    client = cluster.client
    a = np.arange(BIG, dtype=float)
    await within(client.push({"a": a}, targets=[0, 2]))
    err = await composite(client.pull("a"))
    assert err.engine_ids == [0, 1, 2] and err.failed == [1]
    assert (err.results[0] == a).all() and (err.results[2] == a).all()
    assert isinstance(err.results[1], NameError)
    assert sorted(err.successes) == [0, 2]
    assert "2 of 3 engines succeeded" in str(err)


@pytest_twisted.ensureDeferred
async def test_a_non_blocking_call_carries_the_results_too(make_fc_cluster):
    cluster = await make_fc_cluster(2, data_channel=True)
    client = cluster.client
    await within(client.execute("x = 7", targets=0))
    pending = await within(client.pull("x", block=False))
    err = await composite(client.get_pending_deferred(pending, True))
    assert err.successes == {0: 7} and err.failed == [1]


@pytest_twisted.ensureDeferred
async def test_an_engine_lost_while_bulk_data_was_relayed_is_reported(make_fc_cluster,
                                                                     monkeypatch):
    # The data of a push to 'all' reached the controller while engine 1 was
    # registered; engine 1 was gone when the push call itself arrived.  The
    # push must fail for engine 1, not answer for engine 0 alone.
    cluster = await make_fc_cluster(2, data_channel=True)
    client, controller, server = cluster.client, cluster.controller, cluster.data_server
    t0 = time.monotonic()
    await within(client.push({"first": np.ones(BIG)}))
    (arrived,) = server._relayed.values()  # the data channel notes when bulk data came
    assert server.relayed_at(next(iter(server._relayed))) == arrived >= t0

    data_came = time.monotonic()
    controller.unregister_engine(1)   # lost after the data came, before the call did
    monkeypatch.setattr(server, "relayed_at", lambda blob_id: data_came)
    err = await composite(client.push({"big": np.ones(BIG)}))
    assert err.engine_ids == [0, 1] and err.failed == [1]
    assert err.successes == {0: None}
    (lost,) = err.exceptions
    assert isinstance(lost, EngineError) and "[1:push]" in str(err)
    assert "was lost while this push to 'all' was on its way" in str(lost)
    # a call without such data began when it came: engine 1 is just not a target
    assert await within(client.push({"small": 1})) == [None]
    assert multiengine.call_started.get() is None
