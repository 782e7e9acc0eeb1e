"""One lane connection: framed calls and answers, either side may call.

A frame (little-endian)::

    rest:u64 | kind:u8 | call id:u32 | text length:u32 | buffers:u32 |
    buffer lengths:u64 * buffers | text (codec JSON) | buffers

Kinds: ``HELLO`` (the joining side's token, the only frame accepted before
it), ``WELCOME``, ``CALL`` (text: ``(method, args, kwargs)``), ``ANSWER``
(text: the result) and ``FAIL`` (text: ``(violation, name, message)``).

Calls are checked against the RemoteInterface of the object they go to,
outbound by the caller and inbound by the callee, as Foolscap does; a call
is dispatched to ``remote_<method>`` of the local object the moment its
frame arrives, so calls run in the order they were made.  A local object
may take some calls more directly: its ``lane_handler(method)`` returns
``handler(args, kwargs, answer)`` (or None), which either arranges for
``answer(result)`` to be called with what ``remote_<method>`` would have
given and returns True, or returns False to let ``remote_<method>`` have
the call (an exception it raises fails the call as one from
``remote_<method>`` would).  Failures look
like Foolscap's: a refused argument is a :class:`~foolscap.api.Violation`
(wrapped in a :class:`~foolscap.api.RemoteException` when the other side
refused it), a fault in the
other side's method a RemoteException, a closed lane a ConnectionLost.
"""
import functools
import struct
import time

from foolscap.api import RemoteException, Violation
from foolscap.remoteinterface import getRemoteInterface
from twisted.internet import defer, error as net_error, tcp, unix
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from zope.interface import implementer

from ipkernel import memtrim
from ipkernel.traffic import LANES
from ipkernel.error import PayloadTooLarge
from ipkernel.lane import codec

log = Logger()

_HEAD = struct.Struct("<QBIII")
_LEN = struct.Struct("<Q")
HELLO, WELCOME, CALL, ANSWER, FAIL = range(1, 6)
#: Largest frame accepted once joined (bytes after the length field), unless
#: a lane is given a smaller ``max_frame``.
MAX_FRAME = 1 << 34
#: Largest call a lane carries (64 MiB), both ways: a bigger one is sent
#: through Foolscap instead (see :class:`FrameTooLarge`), and the
#: controller's lanes refuse bigger frames from clients on the header,
#: before reading the body.  Lanes carry small calls: bulk data goes on the
#: data channel, so normal use never comes near it.
LANE_MAX_FRAME = 64 << 20
#: What a frame carries beyond its user data (header, call text), allowed on
#: top of a payload cap.
FRAME_OVERHEAD = 1 << 20
#: Largest frame accepted before the HELLO was checked.
MAX_HELLO = 4096
#: Received buffers at least this big stay views of the read they came in.
KEEP_VIEW = 64 * 1024
#: Seconds a new connection has to say HELLO.
HELLO_TIMEOUT = 10.0


class _Refusals:
    """Logs refused lane connections (no or a wrong token) at most once every
    ``every`` seconds, with the count of those left out: a flood of them
    cannot flood the log."""

    def __init__(self, every=60.0, clock=time.monotonic):
        self.every = every
        self.clock = clock
        self.last = None
        self.left_out = 0

    def note(self, why):
        now = self.clock()
        if self.last is not None and now - self.last < self.every:
            self.left_out += 1
            return
        more = (f" ({self.left_out} more refused in the last {self.every:g} s, not logged)"
                if self.left_out else "")
        log.warn("refused a lane connection: {why}{more}", why=why, more=more)
        self.last, self.left_out = now, 0


#: The refusals of this process's lane server.
REFUSALS = _Refusals()


class LaneError(Exception):
    """The other side broke the lane protocol; the connection is closed."""


class FrameTooLarge(LaneError):
    """A call is bigger than this lane carries (``send_limit``); nothing was
    sent, and the lane stays open (the caller sends it another way)."""


def _remote_failure(name, message, violation):
    """A Failure shaped like the one Foolscap delivers for a remote fault."""
    if violation:
        inner = Violation(message)
    else:
        cls = type(name if name.isidentifier() else "RemoteFault", (Exception,), {})
        inner = cls(message)
    return Failure(RemoteException(Failure(inner)))


def failure_of(text, buffers):
    """The Failure a FAIL frame's text and buffers describe."""
    violation, name, message = codec.decode(text, buffers)
    return _remote_failure(str(name), str(message), bool(violation))


def encode_frame(kind, call_id, text, buffers=()):
    """One frame as bytes (the length field first)."""
    if not buffers:
        return _HEAD.pack(_HEAD.size - 8 + len(text), kind, call_id, len(text), 0) + text
    sizes = [memoryview(b).nbytes for b in buffers]
    rest = _HEAD.size - 8 + 8 * len(sizes) + len(text) + sum(sizes)
    head = _HEAD.pack(rest, kind, call_id, len(text), len(sizes))
    if sizes:
        head += struct.pack(f"<{len(sizes)}Q", *sizes)
    # One join: a socket send takes one buffer, and frames may be views.
    return b"".join([head, text, *buffers])


def decode_frame(frame):
    """``(kind, call id, text, buffers)`` of one whole frame (a memoryview,
    the length field first); LaneError when its lengths do not add up."""
    _, kind, call_id, text_len, nbufs = _HEAD.unpack_from(frame)
    pos = _HEAD.size
    sizes = struct.unpack_from(f"<{nbufs}Q", frame, pos) if nbufs else ()
    pos += 8 * nbufs
    text = frame[pos:pos + text_len]
    pos += text_len
    buffers = []
    for n in sizes:
        # small buffers are copied, so a value kept for long (a pending
        # result) does not pin the whole read it arrived in
        part = frame[pos:pos + n]
        buffers.append(part if n >= KEEP_VIEW else bytes(part))
        pos += n
    if pos != len(frame):
        raise LaneError("a frame's lengths do not add up")
    return kind, call_id, text, buffers


def check_call(interface, method, args, kwargs, inbound):
    """Check a call's arguments against ``interface`` as Foolscap does;
    Violation when they do not fit (or the method is not offered)."""
    _schema(interface, method).checkAllArgs(args, kwargs, inbound)


#: Argument types whose values cannot change once made: a call with these
#: arguments is encoded the same way every time.
_IMMUTABLE = frozenset({str, int, float, bool, type(None)})
#: The largest encoded call kept for the next one (bytes): a kept call holds
#: its arguments alive, so a large one (long source text) is not kept.
_KEPT_TEXT = 64 * 1024
#: The largest incoming call text kept to compare the next one with.
_KEPT_IN_TEXT = 4096


class _LastCall:
    """The last outgoing call checked and encoded, when its arguments are
    immutable and it is small: a call made to many engines with the same
    argument objects (execute on all, a heartbeat round) is checked and
    encoded once.  It holds the arguments, so their identities stay theirs
    while it is kept."""

    __slots__ = ("interface", "method", "args", "text")

    def __init__(self):
        self.interface = self.method = self.args = self.text = None

    def encoded(self, interface, method, args, kwargs):
        """``(text, buffers)`` of the call, checked against ``interface``
        (None: unchecked); Violation or CodecError as for any call."""
        if (not kwargs and method == self.method and interface is self.interface
                and len(args) == len(self.args)
                and all(a is b for a, b in zip(args, self.args))):
            return self.text, ()  # (a kept call has no buffers)
        if interface is not None:
            check_call(interface, method, args, kwargs, False)
        text, buffers = codec.encode((method, args, kwargs))
        if (not kwargs and not buffers and len(text) <= _KEPT_TEXT
                and all(type(a) in _IMMUTABLE for a in args)):
            self.interface, self.method, self.args, self.text = interface, method, args, text
        return text, buffers


_last_call = _LastCall()
_UNSET = object()


def _kept_in(text, buffers, method, args, kwargs, schema):
    """What a lane keeps of an incoming call it checked, so that the same
    text again (a command sent in a loop) is neither decoded nor checked
    again: only a small call whose arguments are immutable values (the
    reused arguments are then the same values), else None."""
    if (buffers or kwargs or len(text) > _KEPT_IN_TEXT
            or any(type(a) not in _IMMUTABLE for a in args)):
        return None
    return (bytes(text), method, args, kwargs, schema)


@implementer(IHandshakeListener)
class LaneProtocol(Protocol):
    """A lane between this process and a peer.

    ``local``: the Referenceable whose ``remote_*`` methods the peer may call
    (None: calls are refused); ``remote_interface``: what the peer offers
    (the RemoteInterface :meth:`callRemote` checks arguments against).
    ``on_hello(protocol, token)``: set on the accepting side; returns True to
    let the peer in.  ``ready`` fires with the protocol once joined.
    ``max_frame``: the largest frame accepted (a bigger one is refused on its
    header: a CALL gets a FAIL naming the limit, then the lane is closed);
    ``send_limit``: the largest call :meth:`callRemote` sends (bigger ones
    fail with :class:`FrameTooLarge` before anything is sent).
    ``tubid``: on the joining side of a TLS lane, the tub id the other
    side's certificate must have; the HELLO (the token) is sent only once
    it was checked (see :mod:`ipkernel.transport.tls`).

    ``calls_in`` and ``answers_in`` count the CALL and ANSWER frames that
    arrived (what went on this lane rather than through Foolscap);
    ``handled_in`` the calls the local object's lane handler took.
    """

    def __init__(self, local=None, remote_interface=None, on_hello=None, token=None,
                 max_frame=MAX_FRAME, send_limit=LANE_MAX_FRAME, tubid=None):
        self.local = local
        self.tubid = tubid
        self.calls_in = 0
        self.answers_in = 0
        self.handled_in = 0
        self._direct = False  # frames may go straight to the socket (plain TCP)
        self.remote_interface = remote_interface
        self.on_hello = on_hello
        self.token = token
        self.max_frame = max_frame
        self.send_limit = send_limit
        self.ready = defer.Deferred()
        self.connected = False
        self.joined = False
        self._chunks = []  # received bytes not yet a whole frame
        self._have = 0     # their total length
        self._need = 8     # bytes needed before a frame can be complete
        self._skip = 0     # bytes of a refused answer still to read past
        self._next_id = 0
        self._waiting = {}  # call id -> Deferred
        self._on_lost = []
        self._hello_timer = None
        self._local_interface = None
        self._handlers = {}  # method -> the local object's lane handler, or None
        self._last_in = None  # the last incoming call, when it may be reused (_kept_in)

    # -- connection ------------------------------------------------------------------

    def connectionMade(self):
        self.connected = True
        # Only a plain TCP transport may be written to past itself: under
        # TLS the socket is the wrapped transport's, and bytes written to
        # it directly would skip the encryption.
        self._direct = isinstance(self.transport, tcp.Connection)
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        if self.on_hello is not None:
            from twisted.internet import reactor
            self._hello_timer = reactor.callLater(HELLO_TIMEOUT, self._drop,
                                                  "no HELLO in time")
        elif self.tubid is None:
            self._send(HELLO, 0, b"null", [self.token])
        # else: TLS, the HELLO waits for the certificate check (handshakeCompleted)

    def handshakeCompleted(self):
        """TLS is set up: on the joining side, check the other side's
        certificate, then say HELLO (or refuse the lane, saying why)."""
        if self.on_hello is not None or self.tubid is None or not self.connected:
            return
        from ipkernel.transport import tls
        try:
            tls.check_tubid(self.transport.peer_certificate(), self.tubid,
                            "the controller's lane port")
        except tls.WrongCertificate as exc:
            log.warn("refusing a lane: {why}", why=str(exc))
            if not self.ready.called:
                self.ready.errback(exc)
            self.transport.abortConnection()
            return
        self._send(HELLO, 0, b"null", [self.token])

    def connectionLost(self, reason=None):
        self.connected = False
        self.joined = False
        # a frame cut short is dropped now, not when this object goes
        partial, self._chunks, self._have, self._need = self._have, [], 0, 8
        memtrim.freed(partial)
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        self._hello_timer = None
        why = reason.getErrorMessage() if reason is not None else "closed"
        if self.on_hello is not None and not self.joined and _is_tls_error(reason):
            REFUSALS.note(f"its TLS handshake failed ({why})")
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(net_error.ConnectionLost(f"the lane closed ({why})"))
        if not self.ready.called:
            self.ready.errback(net_error.ConnectionLost(f"the lane closed before it was "
                                                        f"joined ({why})"))
        hooks, self._on_lost = self._on_lost, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.failure("a lane-lost hook raised")

    @property
    def encrypted(self):
        """True when this lane runs TLS."""
        return getattr(self.transport, "encrypted", False) is True

    @property
    def on_local_socket(self):
        """True when this lane runs on a Unix socket (both ends on this host)."""
        return isinstance(self.transport, (unix.Server, unix.Client))

    def notifyOnDisconnect(self, hook):
        """Call ``hook()`` once when the lane closes."""
        self._on_lost.append(hook)

    def close(self):
        """Close the lane; calls waiting for answers fail with ConnectionLost."""
        if self.transport is not None and self.connected:
            self.transport.loseConnection()

    def _drop(self, why):
        if self.joined or self.on_hello is None:
            log.warn("closing a lane: {why}", why=why)
        else:
            REFUSALS.note(why)  # before the HELLO: anyone on this host can cause it
        timer, self._hello_timer = self._hello_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self.transport is not None:
            self.transport.abortConnection()

    # -- frames ------------------------------------------------------------------------

    def _send(self, kind, call_id, text, buffers=()):
        frame = encode_frame(kind, call_id, text, buffers)
        LANES.bytes_out += len(frame)
        if self._direct:
            write_now(self.transport, frame)
        else:
            self.transport.write(frame)

    def dataReceived(self, data):
        LANES.bytes_in += len(data)
        # Chunks are joined once a frame is complete (not on every arrival), and
        # frames are zero-copy slices of immutable bytes, so the buffers a
        # Serialized keeps stay valid.
        if self._skip:  # the body of a refused answer: read past, never kept
            take = min(len(data), self._skip)
            self._skip -= take
            if take == len(data):
                return
            data = data[take:]
        self._chunks.append(data)
        self._have += len(data)
        if self._have < self._need:
            return
        data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks, self._have, self._need = [], 0, 8
        view, pos, size = memoryview(data), 0, len(data)
        while size - pos >= 8:
            (rest,) = _LEN.unpack_from(view, pos)
            limit = self.max_frame if self.joined else MAX_HELLO
            if rest > limit:
                if self.joined and size - pos < _HEAD.size:
                    self._need = _HEAD.size  # wait for the call id (the whole 21-byte head)
                    break
                if self.joined and _HEAD.unpack_from(view, pos)[1] == ANSWER:
                    pos = self._skip_answer(view, pos, size, rest, limit)
                    if self._skip or not self.connected:
                        return
                    continue
                self._refuse_frame(view, pos, rest, limit)
                return
            end = pos + 8 + rest
            if end > size:
                self._need = end - pos
                break
            try:
                self._frame(view[pos:end])
            except (LaneError, codec.CodecError, struct.error) as exc:
                self._drop(str(exc))
                return
            pos = end
            if not self.connected:
                return
        if pos < size:
            self._chunks.append(data[pos:])
            self._have = size - pos

    def _skip_answer(self, view, pos, size, rest, limit):
        """An ANSWER over ``limit`` at ``pos``: its call fails with
        PayloadTooLarge and its body is read past without being kept; the
        lane stays in step and open.  Returns where the data goes on."""
        _, _, call_id, _, _ = _HEAD.unpack_from(view, pos)
        d = self._waiting.pop(call_id, None)
        if d is None:
            self._drop(f"an answer to an unknown call {call_id}")
            return size
        end = pos + 8 + rest
        self._skip = max(0, end - size)
        d.errback(PayloadTooLarge(
            f"the answer is too large for this lane: {rest} bytes, at most {limit} (the "
            f"controller's payload cap); fetch the value in smaller pieces, or start the "
            f"controller with a larger --payload-cap"))
        return min(end, size)

    def _refuse_frame(self, view, pos, rest, limit):
        """A frame over ``limit`` announced at ``pos``: refused before its body
        is read.  A CALL is answered with a FAIL (the caller sees a refused,
        too large argument), then the lane is closed."""
        why = f"a frame of {rest} bytes is too large for this lane (at most {limit} bytes)"
        if self.joined:
            _, kind, call_id, _, _ = _HEAD.unpack_from(view, pos)
            if kind == CALL and self.connected:
                text, _ = codec.encode((True, "Violation", f"the call is too large for this "
                                                          f"lane: {rest} bytes, at most {limit}"))
                self._send(FAIL, call_id, text)
        self._chunks, self._have, self._need = [], 0, 8
        self._drop(why)

    def _frame(self, frame):
        kind, call_id, text, buffers = decode_frame(frame)
        if not self.joined:
            self._hello_frame(kind, buffers)
        elif kind == CALL:
            self.calls_in += 1
            self._call_arrived(call_id, text, buffers)
        elif kind == ANSWER:
            self.answers_in += 1
            self._settle(call_id).callback(codec.decode(text, buffers))
        elif kind == FAIL:
            self._settle(call_id).errback(failure_of(text, buffers))
        else:
            raise LaneError(f"unexpected frame kind {kind}")

    def _hello_frame(self, kind, buffers):
        if self.on_hello is not None:  # the accepting side
            if kind != HELLO or len(buffers) != 1:
                raise LaneError("the first frame is not a HELLO")
            if self._hello_timer is not None and self._hello_timer.active():
                self._hello_timer.cancel()
            self._hello_timer = None
            if not self.on_hello(self, bytes(buffers[0])):
                raise LaneError("a lane token was refused")
            self.joined = True
            self._send(WELCOME, 0, b"null")
        else:
            if kind != WELCOME:
                raise LaneError("the other side did not welcome this lane")
            self.joined = True
        self.ready.callback(self)

    def _settle(self, call_id):
        d = self._waiting.pop(call_id, None)
        if d is None:
            raise LaneError(f"an answer to an unknown call {call_id}")
        return d

    # -- calling --------------------------------------------------------------------

    def callRemote(self, method, *args, **kwargs):
        """Call ``remote_<method>`` on the other side; a Deferred of its result
        (FrameTooLarge when the call is over ``send_limit``: nothing was sent)."""
        try:
            text, buffers = _last_call.encoded(self.remote_interface, method, args, kwargs)
            if self.send_limit is not None:
                size = len(text) + sum(memoryview(b).nbytes for b in buffers)
                if size > self.send_limit:
                    raise FrameTooLarge(f"{method}: {size} bytes is more than a lane carries "
                                        f"({self.send_limit})")
        except Exception:
            return defer.fail()
        if not self.joined:
            return defer.fail(net_error.ConnectionLost("the lane is not open"))
        self._next_id = call_id = (self._next_id + 1) & 0xFFFFFFFF
        d = self._waiting[call_id] = defer.Deferred()
        self._send(CALL, call_id, text, buffers)
        return d

    # -- being called --------------------------------------------------------------------

    def _call_arrived(self, call_id, text, buffers):
        kept = self._last_in
        if kept is not None and not buffers and text == kept[0]:
            _, method, args, kwargs, schema = kept  # the same text, already checked
        else:
            try:
                method, args, kwargs = codec.decode(text, buffers)
                if type(method) is not str or type(args) is not tuple or type(kwargs) is not dict:
                    raise Violation("a lane call is malformed")
                if self.local is None:
                    raise Violation("this side of the lane takes no calls")
                if self._local_interface is None:
                    self._local_interface = getRemoteInterface(self.local)
                schema = _schema(self._local_interface, method)
                schema.checkAllArgs(args, kwargs, True)
            except (Violation, codec.CodecError) as exc:
                self._fail(Failure(exc), call_id)
                return
            self._last_in = _kept_in(text, buffers, method, args, kwargs, schema)
        handler = self._handlers.get(method, _UNSET)
        if handler is _UNSET:
            find = getattr(self.local, "lane_handler", None)
            handler = self._handlers[method] = None if find is None else find(method)
        if handler is not None:
            try:
                if handler(args, kwargs, functools.partial(self._answer, call_id, schema)):
                    self.handled_in += 1
                    return
            except Exception:
                self._fail(Failure(), call_id)
                return
        d = defer.maybeDeferred(self.local.doRemoteCall, method, args, kwargs)
        d.addCallbacks(self._answered, self._fail, (call_id, schema), None, (call_id,))

    def _answered(self, result, call_id, schema):
        self._answer(call_id, schema, result)

    def _answer(self, call_id, schema, result):
        if not self.connected:
            return
        try:
            schema.checkResults(result, False)  # as Foolscap does before answering
            text, buffers = codec.encode(result)
        except Exception:
            self._fail(Failure(), call_id)
            return
        self._send(ANSWER, call_id, text, buffers)

    def _fail(self, failure, call_id):
        violation = failure.check(Violation) is not None
        if not violation:
            log.failure("a lane call failed in this process", failure)
        if not self.connected:
            return
        name = getattr(failure.type, "__name__", "Exception")
        text, _ = codec.encode((violation, name, failure.getErrorMessage()))
        self._send(FAIL, call_id, text)


def write_now(transport, data):
    """Write ``data`` on ``transport``, sending at once what the socket takes.

    A Twisted TCP transport only buffers in ``write`` and sends on the next
    turn of the reactor, after two epoll changes; for a small message that
    is most of the cost of sending it.  When nothing is buffered ahead of
    it, the data goes straight to the socket and only what the socket does
    not take is left to ``write``.  Other transports just get ``write``
    (a wrapping one, such as TLS, above all: its ``socket`` is the one
    below it, which must not see the frame unencrypted).
    """
    sock = None if isinstance(transport, ProtocolWrapper) else getattr(transport, "socket", None)
    if (sock is None or getattr(transport, "dataBuffer", True)
            or getattr(transport, "_tempDataBuffer", True)
            or not transport.connected or transport.disconnecting):
        transport.write(data)
        return
    try:
        sent = sock.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        sent = 0  # the transport finds and reports the error itself
    if sent < len(data):
        transport.write(data[sent:])


def _is_tls_error(reason):
    from ipkernel.transport.memtls import TLSFailed
    return reason is not None and reason.check(TLSFailed) is not None


def _schema(interface, method):
    if interface is None:
        raise Violation("this side of the lane offers no RemoteInterface")
    try:
        return interface[method]
    except KeyError:
        raise Violation(f"{interface.__remote_name__} does not offer {method}") from None
