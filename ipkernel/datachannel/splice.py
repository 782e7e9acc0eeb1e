"""Moving a blob's bytes from one data-channel socket to another.

On Linux, between two plain sockets, the kernel moves them itself
(socket -> pipe -> socket with ``splice``: the bytes never enter this
process); otherwise (sealed, another system) they go through a buffer here.
"""
import os

from ipkernel.datachannel import frames

#: Bytes moved per splice call (the pipe between the two sockets holds this much).
SPLICE_CHUNK = 1 << 20


class DestinationGone(Exception):
    """Writing to the destination failed; ``left`` bytes of the blob are
    still unread on the source."""

    def __init__(self, left):
        super().__init__(left)
        self.left = left


def can_splice(src, dst):
    """Both plain sockets on Linux: the kernel can move the bytes itself."""
    return hasattr(os, "splice") and frames.is_plain(src) and frames.is_plain(dst)


def _closed_source():
    return ConnectionError("a peer closed its data channel in the middle of a blob")


def splice(src, dst, length):
    """Move ``length`` bytes from socket ``src`` to ``dst`` in the kernel.

    ConnectionError when ``src`` closes first; :class:`DestinationGone`
    when ``dst`` fails.
    """
    read_end, write_end = os.pipe()
    try:
        try:
            import fcntl
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, SPLICE_CHUNK)
            chunk = SPLICE_CHUNK
        except (ImportError, OSError, AttributeError):
            chunk = 64 * 1024  # the default pipe size
        left = length
        while left:
            n = os.splice(src.fileno(), write_end, min(left, chunk))
            if not n:
                raise _closed_source()
            left -= n
            try:
                while n:
                    n -= os.splice(read_end, dst.fileno(), n)
            except OSError as exc:
                raise DestinationGone(left) from exc
    finally:
        os.close(read_end)
        os.close(write_end)


def copy(src, dst, length):
    """Like :func:`splice`, through a buffer of this process (sealed sockets)."""
    buf = frames.uninitialized(min(length, frames.CHUNK) or 1)
    view = memoryview(buf)
    left = length
    while left:
        k = src.recv_into(view, min(left, len(buf)))
        if not k:
            raise _closed_source()
        left -= k
        try:
            dst.sendall(view[:k])
        except OSError as exc:
            raise DestinationGone(left) from exc


def forward(src, dst, length):
    """Move ``length`` bytes from ``src`` to ``dst`` the fastest way there is."""
    (splice if can_splice(src, dst) else copy)(src, dst, length)


def discard(src, length):
    """Read and drop ``length`` bytes from ``src`` (keeps its stream in step)."""
    buf = frames.uninitialized(min(length, frames.CHUNK) or 1)
    view = memoryview(buf)
    while length:
        k = src.recv_into(view, min(length, len(buf)))
        if not k:
            raise _closed_source()
        length -= k
