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
from ipkernel.datachannel.blobs import Pieces

log = Logger()

#: Bytes read in one turn of the reactor before it serves others.
READ_BUDGET = 8 << 20
#: A body at least this big is received by a pool thread.
THREAD_MIN = frames.MAP_MIN


class ReactorReader:
    """An IReadDescriptor for the plain socket ``sock`` of a peer: DELIVER and
    ERROR messages go to ``store`` (a BlobStore), ``count(n)`` is told of
    every blob's size, and ``on_lost(why)`` is called once when the
    connection ends (all in the reactor thread); TAKEN messages go to
    ``on_taken(blob_id, extra)`` (in whichever thread reads)."""

    def __init__(self, sock, store, on_lost, count, reactor, on_taken=None):
        self.sock = sock
        self.on_taken = on_taken   # on_taken(blob id, extra): a TAKEN came (any thread)
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
        self._part = False         # the body is a piece of a blob (PART)
        self._threaded = False     # a pool thread receives the body
        #: Blobs relayed in pieces, until they are whole.
        self.pieces = Pieces(frames.new_buffer)

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
        if not self._threaded:  # (a reading thread fails by itself: its socket is shut)
            self.pieces.clear()
        if self._fd != -1:
            self.on_lost(reason.getErrorMessage())
            self._fd = -1

    def _read(self):
        budget = READ_BUDGET
        while budget > 0 and not self._threaded:
            if self._view is None:
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
                self._body_done(True)
        return None

    def _header_done(self):
        if self._fixed is None:
            self._fixed = frames.parse_header(bytes(self._head))
            if self._fixed[3]:  # an extra follows
                return
        kind, blob_id, length, extra_length = self._fixed
        extra = frames.parse_extra(bytes(self._head[frames.HEADER.size:]))
        self._head, self._fixed = bytearray(), None
        if kind in (frames.DELIVER, frames.PART):
            self._body_for(kind, blob_id, length, extra)
            if length >= THREAD_MIN:
                self._in_thread()
            elif not length:
                self._body_done(True)
        else:
            self._other(kind, blob_id, extra, True)

    def _body_for(self, kind, blob_id, length, extra):
        """Get ready to receive the body of a DELIVER or a PART."""
        self._part = kind == frames.PART
        if self._part:
            self._buf = None
            self._view = piece_view(self.pieces, blob_id, length, extra)
        else:
            self._buf = frames.new_buffer(length)
            self._view = memoryview(self._buf)
        self._got = 0
        self._blob_id = blob_id

    def _other(self, kind, blob_id, extra, here):
        """A message without a body (``here``: in the reactor thread)."""
        if kind == frames.ERROR:
            message = str(extra.get("message", "the controller refused bulk data"))
            log.warn("data channel: {message}", message=message)
        elif kind == frames.ABORT:
            self.pieces.abort(blob_id)
            message = aborted_message(blob_id, extra)
        elif kind == frames.TAKEN and self.on_taken is not None:
            self.on_taken(blob_id, extra)
            return
        else:
            raise frames.ProtocolError(f"unexpected {frames.KINDS[kind]} message")
        (self.store.fail_here if here else self.store.fail)(blob_id, message)

    def _in_thread(self):
        """Receive the body in a pool thread; the reactor reads again after it."""
        self.reactor.removeReader(self)
        self._threaded = True

        def done(_):
            self._threaded = False
            if self._fd != -1:
                self.reactor.addReader(self)

        def failed(failure):
            self._threaded = False
            self.connectionLost(failure)
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                      self._read_in_thread)
        d.addCallbacks(done, failed)

    def _read_in_thread(self):
        """(a pool thread) The big body, then, while a blob sent in pieces is
        incomplete, the messages after it: its pieces come one after the
        other, each received in one blocking call, without a trip through
        the reactor per piece."""
        recv_all(self.sock, self._view)
        self._body_done(False)
        while len(self.pieces) and self._fd != -1:
            try:
                kind, blob_id, length, extra = frames.read_header(self.sock)
            except frames.Closed:
                raise ConnectionError("the data channel closed in the middle of a blob") from None
            if kind in (frames.DELIVER, frames.PART):
                self._body_for(kind, blob_id, length, extra)
                recv_all(self.sock, self._view)
                self._body_done(False)
            else:
                self._other(kind, blob_id, extra, False)

    def _body_done(self, here):
        buf, view, self._buf, self._view = self._buf, self._view, None, None
        self.count(len(view))
        if self._part:
            buf = self.pieces.received(self._blob_id, len(view))
            view.release()
            if buf is None:
                return
        (self.store.put_here if here else self.store.put)(self._blob_id, buf)


def piece_view(pieces, blob_id, length, extra):
    """Where the body of a PART goes (see :class:`~ipkernel.datachannel.blobs.Pieces`);
    ProtocolError for a piece that does not fit."""
    at, size = extra.get("at"), extra.get("size")
    if not (isinstance(at, int) and isinstance(size, int) and 0 <= at and length <= size):
        raise frames.ProtocolError("a piece of bulk data without a valid place")
    try:
        return pieces.view(blob_id, at, size, length)
    except ValueError as exc:
        raise frames.ProtocolError(str(exc)) from None


def aborted_message(blob_id, extra):
    """What waiters of an aborted blob are told."""
    return str(extra.get("message") or f"bulk data {blob_id.hex()} was aborted by its sender")


def recv_all(sock, view):
    """Fill ``view`` from the blocking plain socket ``sock`` (few system calls)."""
    got, n = 0, len(view)
    while got < n:
        k = sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
        if not k:
            raise ConnectionError("the data channel closed in the middle of a blob")
        got += k
