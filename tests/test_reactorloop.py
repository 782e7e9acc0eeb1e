"""Tier 2: the lean reactor turn (ipkernel.reactorloop) on a private epoll
reactor run in a thread, with real TCP connections on 127.0.0.1: data,
large writes, a clean end, a protocol that raises and a reset all behave as
under the reactor's own loop."""
import select
import socket
import struct
import threading

import pytest
from twisted.internet import error as net_error
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.selectreactor import SelectReactor

from ipkernel import reactorloop

pytestmark = pytest.mark.tier2

WAIT = 10


class Recorder(Protocol):
    """Answers b"big" with 8 MiB (more than a socket takes at once), raises on
    b"raise", echoes anything else; notes how its connection ended."""

    def __init__(self, ended):
        self.ended = ended

    def dataReceived(self, data):
        if data == b"raise":
            raise RuntimeError("the handler failed")
        if data == b"big":
            self.transport.write(b"x" * (8 << 20))
        else:
            self.transport.write(b"echo:" + data)

    def connectionLost(self, reason):
        self.ended.append(reason)
        self.ended_event.set()


@pytest.fixture
def served():
    """``(reactor, port number, ends)``: a lean-looped private reactor serving
    Recorder; ``ends`` gets (reason, event) pairs as connections end."""
    reactor = EPollReactor()
    reactor._registerAsIOThread = False
    assert reactorloop.install(reactor)
    ends = []
    reactor.dispatched = []   # what went through the reactor's own dispatch
    own = reactor._doReadOrWrite

    def dispatch(selectable, fd, event):
        reactor.dispatched.append((type(selectable).__name__, event))
        return own(selectable, fd, event)
    reactor._doReadOrWrite = dispatch

    def build(addr):
        proto = Recorder([])
        proto.ended_event = threading.Event()
        ends.append(proto)
        return proto
    factory = Factory()
    factory.buildProtocol = build
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                              name="lean-reactor", daemon=True)
    thread.start()
    yield reactor, port.getHost().port, ends
    reactor.callFromThread(port.stopListening)
    reactor.callFromThread(reactor.stop)
    thread.join(WAIT)
    assert not thread.is_alive(), "the reactor did not stop"
    reactor.waker.connectionLost(None)
    reactor._poller.close()


def _recv_exactly(sock, n):
    got = bytearray()
    while len(got) < n:
        part = sock.recv(n - len(got))
        assert part, "the connection ended early"
        got += part
    return bytes(got)


def test_data_and_large_writes(served):
    reactor, number, ends = served
    with socket.create_connection(("127.0.0.1", number), timeout=WAIT) as sock:
        sock.sendall(b"hello")
        assert _recv_exactly(sock, 10) == b"echo:hello"
        sock.sendall(b"big")
        assert _recv_exactly(sock, 8 << 20) == b"x" * (8 << 20)
        server_events = [e for kind, e in reactor.dispatched if kind == "Server"]
        # reads were handled by the lean turn; the big write's rest went the usual way
        assert server_events and all(not e & select.EPOLLIN for e in server_events)
    assert ends[0].ended_event.wait(WAIT)
    assert ends[0].ended[0].check(net_error.ConnectionDone)


def test_a_raising_protocol_loses_its_connection_with_the_error(served):
    _, number, ends = served
    with socket.create_connection(("127.0.0.1", number), timeout=WAIT) as sock:
        sock.sendall(b"raise")
        assert sock.recv(10) == b""
        assert ends[0].ended_event.wait(WAIT)
        assert ends[0].ended[0].check(RuntimeError)
    with socket.create_connection(("127.0.0.1", number), timeout=WAIT) as again:
        again.sendall(b"still")
        assert _recv_exactly(again, 10) == b"echo:still"


def test_a_reset_connection_is_lost(served):
    _, number, ends = served
    sock = socket.create_connection(("127.0.0.1", number), timeout=WAIT)
    sock.sendall(b"one")
    assert _recv_exactly(sock, 8) == b"echo:one"
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()   # an RST, not a FIN
    assert ends[0].ended_event.wait(WAIT)
    assert ends[0].ended[0].check(net_error.ConnectionLost, net_error.ConnectionDone)


def test_only_epoll_reactors_are_changed():
    reactor = SelectReactor()
    try:
        assert not reactorloop.usable(reactor) and reactorloop.install(reactor) is False
        assert "doIteration" not in vars(reactor)
    finally:
        reactor.waker.connectionLost(None)
