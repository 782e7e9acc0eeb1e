"""Passing a client's blob on to engines a piece at a time.

A piece is read from the client with no lock held; only then is it sent
to each target engine, holding that engine's send lock for that piece
alone.  So the pieces of other clients' blobs (and everything else sent
to that engine) go in between, and a client that stops in the middle of
a blob, or dies, holds nobody up: once its connection fails or has been
silent for ``stall`` seconds in the middle of the blob, each target gets
an ABORT for it (its partial blob is dropped and whoever waits for it is
told why at once) and the client's connection is closed.

A blob that fits in one piece goes as one DELIVER message; a bigger one
as PART messages (see ``ipkernel.datachannel.frames``).  Between two
plain sockets on Linux a piece is moved through a pipe in the kernel
(socket -> pipe with no lock, pipe -> socket under the lock); otherwise
through a buffer here.
"""
import errno
import os
import socket

from ipkernel.datachannel import frames, splice
from ipkernel.datachannel.memread import MemorySource

#: Seconds a client may stay silent in the middle of a blob it sends to engines.
STALL_TIMEOUT = 30.0


class SenderGone(ConnectionError):
    """The client stopped sending in the middle of a blob (died, closed it,
    or stayed silent); its connection is out of step and must be closed."""


def set_stall_timeout(sock, seconds):
    """Make a blocking receive on ``sock`` give up after ``seconds`` of
    silence (``SO_RCVTIMEO``: the socket stays blocking for its senders)."""
    whole = int(seconds)
    micro = int((seconds - whole) * 1e6)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                    whole.to_bytes(8, "little", signed=True)
                    + micro.to_bytes(8, "little", signed=True))


_SILENT = (BlockingIOError, TimeoutError)


def _gone(exc, stall):
    if isinstance(exc, _SILENT) or getattr(exc, "errno", None) == errno.EAGAIN:
        return SenderGone(f"it sent nothing for {stall:g} s")
    return SenderGone(str(exc) or type(exc).__name__)


class _Buffered:
    """Pieces through a buffer of this process (sealed, several targets)."""

    def __init__(self, src, length):
        self.src = src
        self.size = min(length, frames.CHUNK)
        self.view = memoryview(frames.uninitialized(self.size))

    def fill(self, n):
        got = 0
        while got < n:
            k = self.src.recv_into(self.view[got:n], n - got)
            if not k:
                raise ConnectionError("it closed its data channel")
            got += k

    def send(self, dst, head, n):
        frames.send_all(dst, [head, self.view[:n]])

    def close(self):
        self.view.release()


class _FromMemory(_Buffered):
    """Pieces read from the client's memory (see ``ipkernel.datachannel.memread``)."""

    def fill(self, n):
        self.src.read_into(self.view[:n])


class _Piped:
    """Pieces through a pipe, in the kernel (one target, plain sockets)."""

    def __init__(self, src):
        self.src = src
        self.read_end, self.write_end = os.pipe()
        try:
            import fcntl
            self.size = fcntl.fcntl(self.write_end, fcntl.F_SETPIPE_SZ, splice.SPLICE_CHUNK)
        except (ImportError, OSError, AttributeError):
            self.size = 64 * 1024  # the default pipe size
        self.size = min(self.size, splice.SPLICE_CHUNK)

    def fill(self, n):
        while n:
            k = os.splice(self.src.fileno(), self.write_end, n)
            if not k:
                raise ConnectionError("it closed its data channel")
            n -= k

    def send(self, dst, head, n):
        frames.send_all(dst, [head], more=n > 0)
        while n:
            n -= os.splice(self.read_end, dst.fileno(), n)

    def close(self):
        os.close(self.read_end)
        os.close(self.write_end)


def relay(src, blob_id, length, targets, stall=STALL_TIMEOUT):
    """Move a blob of ``length`` bytes arriving on the socket ``src`` (or read
    from a :class:`~ipkernel.datachannel.memread.MemorySource`) to each of
    ``targets`` (connections with ``sock``, ``send_lock`` and ``close()``).
    A target whose socket fails is closed and left out.

    SenderGone (after the ABORTs) when ``src`` fails in the middle.
    """
    live = list(targets)
    if not length:
        _each(live, lambda c: frames.send_all(c.sock, [frames.header(frames.DELIVER, blob_id)]))
        return
    from_memory = isinstance(src, MemorySource)
    if from_memory:
        mover = _FromMemory(src, length)
    elif len(live) == 1 and splice.can_splice(src, live[0].sock):
        mover = _Piped(src)
    else:
        mover = _Buffered(src, length)
    at = 0
    try:
        while at < length:
            n = min(mover.size, length - at)
            try:
                mover.fill(n)
            except OSError as exc:
                gone = _gone(exc, stall)
                abort(live, blob_id, f"the client sending bulk data {blob_id.hex()} stopped "
                                     f"after {at} of {length} bytes ({gone}); what needed it "
                                     f"cannot run")
                raise gone from None
            if n == length:
                head = frames.header(frames.DELIVER, blob_id, length)
            else:
                head = frames.header(frames.PART, blob_id, n, {"at": at, "size": length})
            live = _each(live, lambda c: mover.send(c.sock, head, n))
            at += n
            if not live:  # nobody takes the rest: read it and drop it
                if not from_memory:
                    splice.discard(src, length - at)
                return
    finally:
        mover.close()


def abort(conns, blob_id, message):
    """Tell each of ``conns`` that the rest of ``blob_id`` will not come."""
    head = frames.header(frames.ABORT, blob_id, 0, {"message": message})
    _each(conns, lambda c: frames.send_all(c.sock, [head]))


def _each(conns, send):
    """``send(conn)`` under each conn's send lock; those that fail are closed."""
    ok = []
    for c in conns:
        try:
            with c.send_lock:
                send(c)
            ok.append(c)
        except OSError:
            c.close()  # its reader thread drops it; that engine never gets this blob
    return ok
