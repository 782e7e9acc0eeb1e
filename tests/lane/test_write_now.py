"""Tier 1: ``write_now`` sends what the socket takes at once and leaves the
rest, in order, to the transport's own buffering."""
import pytest
from twisted.internet.testing import StringTransport

from ipkernel.lane.protocol import write_now

pytestmark = pytest.mark.tier1


class FakeSocket:
    def __init__(self, takes=None, error=None):
        self.takes, self.error, self.sent = takes, error, []

    def send(self, data):
        if self.error is not None:
            raise self.error
        n = len(data) if self.takes is None else min(self.takes, len(data))
        self.sent.append(bytes(data[:n]))
        return n


class FakeTransport:
    """The attributes of a Twisted TCP connection that write_now looks at."""

    def __init__(self, sock):
        self.socket = sock
        self.dataBuffer = b""
        self._tempDataBuffer = []
        self.connected = True
        self.disconnecting = False
        self.written = []

    def write(self, data):
        self.written.append(bytes(data))
        self._tempDataBuffer.append(data)


def test_everything_the_socket_takes_is_sent_at_once():
    transport = FakeTransport(FakeSocket())
    write_now(transport, b"frame")
    assert transport.socket.sent == [b"frame"] and transport.written == []


def test_what_the_socket_does_not_take_is_left_to_the_transport():
    transport = FakeTransport(FakeSocket(takes=2))
    write_now(transport, b"abcdef")
    assert transport.socket.sent == [b"ab"] and transport.written == [b"cdef"]
    # with data buffered ahead, later frames queue behind it (order kept)
    write_now(transport, b"next")
    assert transport.socket.sent == [b"ab"] and transport.written == [b"cdef", b"next"]


@pytest.mark.parametrize("error", [BlockingIOError(), ConnectionResetError()])
def test_a_socket_that_cannot_send_leaves_it_all_to_the_transport(error):
    transport = FakeTransport(FakeSocket(error=error))
    write_now(transport, b"frame")
    assert transport.written == [b"frame"]


def test_a_closing_or_other_transport_just_gets_write():
    closing = FakeTransport(FakeSocket())
    closing.disconnecting = True
    write_now(closing, b"x")
    assert closing.written == [b"x"] and closing.socket.sent == []
    other = StringTransport()
    write_now(other, b"y")
    assert other.value() == b"y"


def test_a_wrapping_transport_is_never_written_past():
    # A TLS wrapper finds its attributes on the transport below (socket,
    # dataBuffer, ...): writing to that socket would skip the encryption.
    from twisted.internet.protocol import Protocol
    from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

    below = FakeTransport(FakeSocket())
    wrapper = ProtocolWrapper(WrappingFactory(None), Protocol())
    wrapper.transport = below
    assert wrapper.socket is below.socket   # what made it look like a TCP transport
    written = []
    wrapper.write = written.append
    write_now(wrapper, b"secret frame")
    assert written == [b"secret frame"] and below.socket.sent == []
