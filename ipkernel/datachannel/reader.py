"""Reading a peer's data connection in the reactor thread.

A plain (loopback) data connection is read by the reactor itself, without
blocking: the bytes of a blob go straight from the socket into the buffer
the value will keep, and the blob is handed to its waiter in the same
thread that got the answer referring to it, so no thread has to be woken
for it.  The socket stays in blocking mode for the threads that send on
it; reads here use ``MSG_DONTWAIT``.  A big body (``THREAD_MIN`` bytes or
more) is received by a pool thread in one blocking call instead, which
costs far fewer system calls and reactor turns than reading it piecemeal.
(A TLS connection is read by a thread of its own: see
:class:`~ipkernel.datachannel.peer.DataChannelPeer`.)
"""
import socket

from twisted.internet import error as net_error, threads
from twisted.logger import Logger

from ipkernel.datachannel import frames

log = Logger()

#: Bytes read in one turn of the reactor before it serves others.
READ_BUDGET = 8 << 20
#: A body at least this big is received by a pool thread.
THREAD_MIN = frames.MAP_MIN


class ReactorReader:
    """An IReadDescriptor for the plain socket ``sock`` of a peer: DELIVER and
    ERROR messages go to ``store`` (a BlobStore), ``count(n)`` is told of
    every blob's size, and ``on_lost(why)`` is called once when the
    connection ends (all in the reactor thread)."""

    def __init__(self, sock, store, on_lost, count, reactor):
        self.sock = sock
        self.reactor = reactor
        self.store = store
        self.on_lost = on_lost
        self.count = count          # count(n): n blob bytes received
        self._fd = sock.fileno()
        self._head = bytearray()   # the fixed header, then the extra
        self._fixed = None         # the parsed fixed header
        self._buf = None           # the body being received
        self._view = None
        self._got = 0
        self._blob_id = None
        self._threaded = False     # a pool thread receives the body

    def fileno(self):
        return self._fd

    def logPrefix(self):
        return "ipkernel-data"

    def doRead(self):
        try:
            return self._read()
        except frames.ProtocolError as exc:
            return net_error.ConnectionLost(str(exc))
        except OSError as exc:
            return net_error.ConnectionLost(str(exc) or type(exc).__name__)

    def connectionLost(self, reason):
        if self._fd != -1:
            self.on_lost(reason.getErrorMessage())
            self._fd = -1

    def _read(self):
        budget = READ_BUDGET
        while budget > 0 and not self._threaded:
            if self._buf is None:
                need = (frames.HEADER.size if self._fixed is None
                        else frames.HEADER.size + self._fixed[3]) - len(self._head)
                try:
                    data = self.sock.recv(need, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    return None
                if not data:
                    return net_error.ConnectionDone("the controller closed the data channel")
                self._head += data
                if len(data) == need:
                    self._header_done()
                continue
            left = len(self._view) - self._got
            try:
                k = self.sock.recv_into(self._view[self._got:], min(left, frames.CHUNK),
                                        socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return None
            if not k:
                return net_error.ConnectionLost("the data channel closed in the middle of a blob")
            self._got += k
            budget -= k
            if self._got == len(self._view):
                self._body_done()
        return None

    def _header_done(self):
        if self._fixed is None:
            self._fixed = frames.parse_header(bytes(self._head))
            if self._fixed[3]:  # an extra follows
                return
        kind, blob_id, length, extra_length = self._fixed
        extra = frames.parse_extra(bytes(self._head[frames.HEADER.size:]))
        self._head, self._fixed = bytearray(), None
        if kind == frames.DELIVER:
            self._buf = frames.new_buffer(length)
            self._view = memoryview(self._buf)
            self._got = 0
            self._blob_id = blob_id
            if length >= THREAD_MIN:
                self._in_thread()
            elif not length:
                self._body_done()
        elif kind == frames.ERROR:
            message = str(extra.get("message", "the controller refused bulk data"))
            log.warn("data channel: {message}", message=message)
            self.store.fail_here(blob_id, message)
        else:
            raise frames.ProtocolError(f"unexpected {frames.KINDS[kind]} message")

    def _in_thread(self):
        """Receive the body in a pool thread; the reactor reads again after it."""
        self.reactor.removeReader(self)
        self._threaded = True

        def done(_):
            self._threaded = False
            self._got = len(self._view)
            self._body_done()
            if self._fd != -1:
                self.reactor.addReader(self)

        def failed(failure):
            self._threaded = False
            self.connectionLost(failure)
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                      recv_all, self.sock, self._view)
        d.addCallbacks(done, failed)

    def _body_done(self):
        buf, self._buf, self._view = self._buf, None, None
        self.count(len(buf))
        self.store.put_here(self._blob_id, buf)


def recv_all(sock, view):
    """Fill ``view`` from the blocking plain socket ``sock`` (few system calls)."""
    got, n = 0, len(view)
    while got < n:
        k = sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
        if not k:
            raise ConnectionError("the data channel closed in the middle of a blob")
        got += k
