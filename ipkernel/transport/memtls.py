"""TLS under a Twisted protocol with the standard library's ``ssl`` (memory BIOs).

Twisted's own TLS layer (``twisted.protocols.tls``) goes through pyOpenSSL:
a handful of Python calls and an exception or two per record, about three
times the cost of the C code of ``ssl.SSLObject`` for a small message.  A
lane's calls are small messages, so :class:`TLSLayer` sits between a TCP
transport and the protocol instead: bytes from the socket go into one BIO,
records out of the other go to the socket at once
(:func:`~ipkernel.lane.protocol.write_now`).  It offers the protocol what
a lane uses of a transport (write, loseConnection, abortConnection, the
addresses, the peer's certificate) and tells it when the handshake is done
(``handshakeCompleted``, as Twisted's TLS does for an IHandshakeListener).
"""
import ssl

from twisted.internet import error as net_error, tcp
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

#: Bytes asked of the TLS object per read (a record holds at most 16 KiB).
READ_SIZE = 1 << 16


class TLSFailed(net_error.ConnectionLost):
    """The TLS layer broke (a failed handshake, a bad record): the
    connection was dropped."""


class TLSLayer(Protocol):
    """TLS with ``context`` (an ``ssl.SSLContext``) between a TCP transport
    and ``inner`` (a Protocol; ``server_side``: the accepting end)."""

    encrypted = True

    def __init__(self, context, server_side, inner):
        self.context = context
        self.server_side = server_side
        self.inner = inner
        self.connected = False
        self.disconnecting = False
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = None
        self._handshaken = False
        self._pending = []  # written before the handshake was done
        self._failure = None
        self._aborted = False

    # -- the side of the TCP transport ---------------------------------------------

    def makeConnection(self, transport):
        self.transport = transport
        self.connected = True
        self._tls = self.context.wrap_bio(self._incoming, self._outgoing,
                                          server_side=self.server_side)
        self.inner.makeConnection(self)
        self._handshake()

    def dataReceived(self, data):
        if self._aborted:
            return
        self._incoming.write(data)
        if not self._handshaken:
            self._handshake()
            if not self._handshaken:
                return
        self._read()

    def connectionLost(self, reason=None):
        self.connected = False
        if self._failure is not None:
            reason = self._failure
        self.inner.connectionLost(reason)

    # -- TLS ------------------------------------------------------------------------

    def _handshake(self):
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError) as exc:
            self._fail(exc)
            return
        self._handshaken = True
        self._flush()
        if IHandshakeListener.providedBy(self.inner):
            self.inner.handshakeCompleted()
        pending, self._pending = self._pending, []
        for data in pending:
            self.write(data)
        self._read()  # what came with the end of the handshake

    def _read(self):
        while self.connected and not self._aborted:
            try:
                data = self._tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                data = b""
            except (ssl.SSLError, OSError) as exc:
                self._fail(exc)
                break
            if not data:  # the other side said close_notify: it closes too
                self.transport.loseConnection()
                break
            self.inner.dataReceived(data)
            if not self._incoming.pending and not self._tls.pending():
                break  # all read: spare the read that would say so by raising
        self._flush()

    def _flush(self):
        if self._outgoing.pending and self.transport is not None:
            data = self._outgoing.read()
            if isinstance(self.transport, tcp.Connection):
                from ipkernel.lane.protocol import write_now
                write_now(self.transport, data)
            else:
                self.transport.write(data)

    def _fail(self, exc):
        """The TLS layer broke: drop the connection, telling ``inner`` why."""
        if self._failure is None:
            self._failure = Failure(TLSFailed(f"TLS failed: {exc}"))
        self.abortConnection()

    # -- the transport ``inner`` sees -----------------------------------------------

    def write(self, data):
        if self.disconnecting or not self.connected:
            return
        if not self._handshaken:
            self._pending.append(bytes(data))
            return
        view = memoryview(data)
        try:
            while view.nbytes:
                view = view[self._tls.write(view):]
        except (ssl.SSLError, OSError) as exc:
            self._fail(exc)
            return
        self._flush()

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        """Say close_notify, then close the TCP connection."""
        if self.disconnecting or not self.connected:
            return
        self.disconnecting = True
        if self._handshaken:
            try:
                self._tls.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError, OSError):
                pass  # the other side's answer is not waited for
            self._flush()
        self.transport.loseConnection()

    def abortConnection(self):
        self.disconnecting = self._aborted = True
        self.transport.abortConnection()

    def getPeer(self):
        return self.transport.getPeer()

    def getHost(self):
        return self.transport.getHost()

    def setTcpNoDelay(self, enabled):
        self.transport.setTcpNoDelay(enabled)

    def peer_certificate(self):
        """The DER bytes of the certificate the other side showed (None
        before the handshake, or when it showed none)."""
        if not self._handshaken:
            return None
        return self._tls.getpeercert(binary_form=True)
