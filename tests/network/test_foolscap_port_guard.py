"""Tier 2: a Foolscap port bounds the connections that have not negotiated yet."""
import pytest
import pytest_twisted
from foolscap.api import Referenceable
from twisted.internet import defer, protocol, reactor, task

from awaiting import within
from ipkernel import fcutil

pytestmark = pytest.mark.tier2


class Echo(Referenceable):
    def remote_echo(self, value):
        return value


class Idle(protocol.Protocol):
    """A raw connection that sends nothing; ``lost`` fires when it closes."""

    def __init__(self):
        self.lost = defer.Deferred()

    def connectionLost(self, reason):
        self.lost.callback(None)


async def open_idle(port, count):
    made = []
    for _ in range(count):
        endpoint = protocol.ClientCreator(reactor, Idle)
        made.append(await within(endpoint.connectTCP("127.0.0.1", port)))
    return made


async def close_idle(idle):
    for conn in idle:
        if not conn.lost.called:
            conn.transport.abortConnection()
    await defer.DeferredList([c.lost for c in idle])


async def turn(n=3):
    for _ in range(n):
        await task.deferLater(reactor, 0.01, lambda: None)


@pytest_twisted.ensureDeferred
async def test_a_flood_of_idle_connections_closes_the_oldest_and_a_real_peer_gets_in(make_tub):
    server = make_tub()
    port = await fcutil.listen(server, reactor)
    furl = fcutil.register(server, Echo())
    bound = fcutil.MAX_NEGOTIATING_PER_PEER
    idle = await open_idle(port, bound + 5)
    try:
        await within(defer.DeferredList([c.lost for c in idle[:5]]))  # the five oldest
        await turn()
        assert not any(c.lost.called for c in idle[5:])  # the newest are still pending
        rref = await within(make_tub().getReference(furl))
        assert await within(rref.callRemote("echo", 7)) == 7
    finally:
        await close_idle(idle)


@pytest_twisted.ensureDeferred
async def test_a_connection_that_never_negotiates_is_closed_at_the_deadline(make_tub,
                                                                            monkeypatch):
    monkeypatch.setattr(fcutil.SharedContextNegotiation, "SERVER_TIMEOUT", 0.3)
    server = make_tub()
    port = await fcutil.listen(server, reactor)
    (conn,) = await open_idle(port, 1)
    conn.transport.write(b"GET /id/")  # half a request, then nothing
    try:
        await within(conn.lost, 5)
    finally:
        await close_idle([conn])


def test_the_deadline_is_shorter_than_foolscaps():
    assert fcutil.SharedContextNegotiation.SERVER_TIMEOUT == fcutil.NEGOTIATION_DEADLINE <= 30
