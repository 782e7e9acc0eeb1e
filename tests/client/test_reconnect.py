"""Tier 2: a blocking client whose connection was lost connects again on its next call."""
import pytest
import pytest_twisted
from twisted.internet import defer, reactor

pytestmark = pytest.mark.tier2

WAIT = 10


def disconnected(remote):
    """Deferred firing once ``remote`` (a RemoteReference) has lost its connection."""
    d = defer.Deferred()
    remote.notifyOnDisconnect(lambda: d.called or d.callback(None))
    return d.addTimeout(WAIT, reactor)


@pytest_twisted.ensureDeferred
async def test_next_call_reconnects_after_a_lost_connection(blocking):
    await blocking.start(2)
    mec = await blocking.run(blocking.client)
    await blocking.run(mec.push, {"a": 5})
    old = mec._holder[0]

    lost = disconnected(old.remote)
    old.remote.tracker.broker.transport.loseConnection()
    await lost
    assert not old.remote.isConnected()

    # the engines kept their namespaces; the client is a new session
    assert await blocking.run(mec.pull, "a") == [5, 5]
    assert mec._holder[0] is not old
    assert mec._holder[0].remote.isConnected()
    assert await blocking.run(mec.get_ids) == [0, 1]
