"""Tier 1: :class:`~ipkernel.transport.memtls.TLSLayer` between two in-memory
transports: the handshake, the certificate shown, data both ways (also many
records long), writes made before the handshake, a clean close and a broken
peer."""
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from ipkernel import fcutil
from ipkernel.transport import tls
from ipkernel.transport.memtls import TLSFailed, TLSLayer

pytestmark = pytest.mark.tier1


@implementer(IHandshakeListener)
class Recorder(Protocol):
    def __init__(self):
        self.received = b""
        self.handshakes = 0
        self.lost = None

    def dataReceived(self, data):
        self.received += data

    def handshakeCompleted(self):
        self.handshakes += 1

    def connectionLost(self, reason=None):
        self.lost = reason


class Pair:
    """A joining and an accepting TLSLayer on StringTransports; :meth:`pump`
    carries what each wrote to the other."""

    def __init__(self, tmp_path):
        pem = fcutil.new_cert_pem()
        (tmp_path / "c.pem").write_text(pem)
        self.der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
        self.client, self.server = Recorder(), Recorder()
        self.joining = TLSLayer(tls.stdlib_client_context(), False, self.client)
        self.accepting = TLSLayer(tls.stdlib_server_context(str(tmp_path / "c.pem")), True,
                                  self.server)
        self.wire = {self.joining: StringTransport(), self.accepting: StringTransport()}
        self.accepting.makeConnection(self.wire[self.accepting])
        self.joining.makeConnection(self.wire[self.joining])

    def pump(self):
        for _ in range(10):
            moved = False
            for sender, receiver in ((self.joining, self.accepting),
                                     (self.accepting, self.joining)):
                data = self.wire[sender].value()
                if data:
                    self.wire[sender].clear()
                    receiver.dataReceived(data)
                    moved = True
            if not moved:
                return


@pytest.fixture
def pair(tmp_path):
    return Pair(tmp_path)


def test_the_handshake_tells_the_protocols_and_shows_the_certificate(pair):
    assert pair.joining.peer_certificate() is None   # not before the handshake
    pair.pump()
    assert pair.client.handshakes == pair.server.handshakes == 1
    assert pair.joining.peer_certificate() == pair.der
    assert pair.joining.encrypted and pair.accepting.encrypted


def test_data_goes_both_ways_encrypted_also_many_records_long(pair):
    pair.pump()
    big = bytes(range(256)) * 1000   # about 16 records
    pair.joining.write(b"hello")
    raw = pair.wire[pair.joining].value()
    assert raw and b"hello" not in raw   # what goes on the wire is not the data
    pair.pump()
    pair.accepting.write(memoryview(big))
    pair.pump()
    assert pair.server.received == b"hello" and pair.client.received == big


def test_writes_before_the_handshake_arrive_after_it(pair):
    pair.joining.writeSequence([b"early ", b"bird"])
    pair.pump()
    assert pair.server.received == b"early bird"


def test_a_clean_close_says_close_notify_and_closes_the_tcp_connection(pair):
    pair.pump()
    pair.joining.loseConnection()
    assert pair.wire[pair.joining].disconnecting
    pair.joining.write(b"too late")   # dropped: the lane is closing
    pair.pump()
    assert pair.server.received == b""
    assert pair.wire[pair.accepting].disconnecting   # it closed on the close_notify


def test_garbage_from_the_peer_drops_the_connection_with_a_tls_failure(pair):
    pair.accepting.dataReceived(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)))
    assert pair.wire[pair.accepting].disconnecting
    pair.accepting.dataReceived(b"more")   # ignored once aborted
    pair.accepting.connectionLost(None)
    assert pair.server.lost.check(TLSFailed) and "TLS failed" in pair.server.lost.getErrorMessage()
    assert pair.server.received == b"" and pair.server.handshakes == 0
