"""The messages of the data channel: a fixed header, a JSON extra, a body.

::

    magic "IPKD" | kind u8 | blob id 16 bytes | body length u64 | extra length u32
    extra (UTF-8 JSON object) | body (raw bytes)

Kinds:

``AUTH``    first message of a peer: the body is the token it was given over Foolscap
            (and, over TLS, the peer's sealing secret after it).  The controller
            answers with an AUTH too: extra ``{"max_blob": payload cap}`` and,
            over TLS, its own sealing secret as the body; from then on both
            ends talk sealed records (:mod:`ipkernel.transport.seal`).
``PUT``     a peer sends a blob; extra ``{"to": [engine ids] | "all" | "controller"}``.
``DELIVER`` the controller hands a blob to a peer (relayed or fetched).
``FETCH``   a peer asks for a blob kept by the controller (no body).
``ERROR``   the controller could not do what was asked about a blob;
            extra ``{"message": ...}``.
``PART``    the controller hands on the next piece of a blob relayed in pieces;
            extra ``{"at": offset, "size": whole blob's size}``.  Pieces of
            different blobs interleave on one connection.
``ABORT``   the rest of a blob sent in pieces will not come: its receiver drops
            what it has; extra ``{"message": why}``.
``TAKEN``   the controller is done with a blob it was to read from the client's
            memory (a PUT with extra ``"memory"``, see
            :mod:`~ipkernel.datachannel.memread`); extra ``{"ok": true}``, or
            ``{"ok": false, "message": why}`` when it read nothing and the client
            must send the bytes.
"""
import ipaddress
import json
import mmap
import socket
import struct

from ipkernel.datachannel.bufferpool import BufferPool

MAGIC = b"IPKD"
HEADER = struct.Struct("<4sB16sQI")

AUTH, PUT, DELIVER, FETCH, ERROR, PART, ABORT, TAKEN = range(1, 9)
KINDS = {AUTH: "AUTH", PUT: "PUT", DELIVER: "DELIVER", FETCH: "FETCH", ERROR: "ERROR",
         PART: "PART", ABORT: "ABORT", TAKEN: "TAKEN"}
#: Bytes of the token in an AUTH message.
TOKEN_SIZE = 32

#: Largest JSON extra accepted (it holds a route or a message, nothing big).
MAX_EXTRA = 1 << 20
#: Bytes moved per socket call when a body is streamed.
CHUNK = 4 << 20
NO_ID = bytes(16)
#: A body at least this big is received into a memory mapping of its own.
MAP_MIN = 2 << 20


class ProtocolError(Exception):
    """The other side broke the data-channel protocol; the connection is closed."""


class Closed(ConnectionError):
    """The other side closed the data channel between two messages: the
    normal end of a connection (a close inside a message is a plain
    ConnectionError)."""


def header(kind, blob_id=NO_ID, body_length=0, extra=None):
    """The bytes that start a message (the body follows)."""
    data = json.dumps(extra, separators=(",", ":")).encode() if extra else b""
    return HEADER.pack(MAGIC, kind, blob_id, body_length, len(data)) + data


def _uninitialized_maker():
    try:
        import ctypes
        make = ctypes.pythonapi.PyByteArray_FromStringAndSize
    except (ImportError, AttributeError, OSError):  # not CPython
        return bytearray
    make.restype = ctypes.py_object
    make.argtypes = (ctypes.c_char_p, ctypes.c_ssize_t)
    return lambda n: make(None, n)


#: ``bytearray(n)`` without zero-filling it (CPython's C API with a NULL
#: source), for a buffer that a receive overwrites whole before anyone reads it.
uninitialized = _uninitialized_maker()


def _new_mapping(n):
    buf = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        buf.madvise(mmap.MADV_HUGEPAGE)
    except (AttributeError, OSError):  # no transparent huge pages: small pages, still lazy
        pass
    return buf


_mappings = BufferPool(_new_mapping)


def new_buffer(n):
    """A writable buffer of ``n`` bytes to receive a body into (its
    contents are undefined until then).

    A small one is an uninitialized bytearray: ``bytearray(n)`` would
    zero-fill it first.  A big one is an anonymous private mapping that asks
    for transparent huge pages: it is faulted in 2 MB at a time as the data
    lands (a fresh bytearray costs about 40 ms per 100 MB here in 4 KB page
    faults).  It is unmapped when the last reference (a numpy array, say)
    goes and the buffer pool lets go of it; until then a body of the same size
    reuses it, pages and all (:mod:`ipkernel.datachannel.bufferpool`).
    """
    if n < MAP_MIN or not hasattr(mmap, "MAP_ANONYMOUS"):
        return uninitialized(n)
    return _mappings.take(n)


#: Buffers given to one sendmsg call at most (below any system's IOV_MAX).
MAX_IOV = 512


def send_all(sock, buffers, more=False):
    """Send ``buffers`` (bytes-like, in order) on ``sock``, gathered into as few
    system calls as the socket allows: one message header and its body leave
    together.  ``more``: more bytes follow at once (the last segment may wait
    for them: ``MSG_MORE``).  A sealed socket gets one ``sendall`` per buffer.
    """
    if not is_plain(sock):
        for buf in buffers:
            sock.sendall(buf)
        return
    views = [v for v in (memoryview(b).cast("B") for b in buffers) if v.nbytes]
    flags = getattr(socket, "MSG_MORE", 0) if more else 0
    first = 0
    while first < len(views):
        sent = sock.sendmsg(views[first:first + MAX_IOV], (), flags)
        while sent and first < len(views):
            n = views[first].nbytes
            if sent >= n:
                sent -= n
                first += 1
            else:
                views[first] = views[first][sent:]
                sent = 0


def is_plain(sock):
    """True for a plain socket (the bytes on the wire are the bytes read):
    the kernel may move them itself (``sendmsg``, ``splice``)."""
    return isinstance(sock, socket.socket)


def recv_exactly(sock, n):
    """``n`` bytes from ``sock``; ConnectionError if it closes first."""
    buf = bytearray(n)
    recv_into_fully(sock, memoryview(buf))
    return bytes(buf)


def recv_into_fully(sock, view):
    """Fill ``view`` from ``sock``; ConnectionError if it closes first."""
    got, n = 0, len(view)
    while got < n:
        k = sock.recv_into(view[got:], min(n - got, CHUNK))
        if not k:
            raise ConnectionError("the data channel closed in the middle of a message")
        got += k


def parse_header(data):
    """``(kind, blob_id, body_length, extra_length)`` from the fixed header bytes."""
    magic, kind, blob_id, body_length, extra_length = HEADER.unpack(data)
    if magic != MAGIC or kind not in KINDS:
        raise ProtocolError("not a data-channel message")
    if extra_length > MAX_EXTRA:
        raise ProtocolError(f"a message extra of {extra_length} bytes is too big")
    return kind, blob_id, body_length, extra_length


def parse_extra(data):
    """The JSON object of a message extra (``{}`` when empty)."""
    if not data:
        return {}
    try:
        extra = json.loads(data)
    except ValueError:
        raise ProtocolError("a message extra is not JSON") from None
    if not isinstance(extra, dict):
        raise ProtocolError("a message extra is not a JSON object")
    return extra


def read_header(sock, idle_ok=False):
    """``(kind, blob_id, body_length, extra)`` of the next message;
    :class:`Closed` if the connection ends before it.

    ``idle_ok``: ``sock`` has a receive timeout (``SO_RCVTIMEO``) meant for
    the middle of a message; while no byte of the next one has come, the
    wait goes on.
    """
    head = bytearray(HEADER.size)
    while True:
        try:
            got = sock.recv_into(head, HEADER.size)
            break
        except BlockingIOError:
            if not idle_ok:
                raise
        except ConnectionResetError:  # a reset between two messages: nothing was cut short
            raise Closed("the data channel was closed") from None
    if not got:
        raise Closed("the data channel was closed")
    if got < HEADER.size:
        recv_into_fully(sock, memoryview(head)[got:])
    kind, blob_id, body_length, extra_length = parse_header(head)
    extra = parse_extra(recv_exactly(sock, extra_length)) if extra_length else {}
    return kind, blob_id, body_length, extra


def is_loopback(host):
    """True for an address of this host's loopback interface (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
