"""A lane for one ordinary thread: calls without the reactor.

A blocking client's thread hands each call to the reactor thread and waits
for it to hand the answer back: two thread hand-offs, each a wake-up and a
change of GIL owner, on every call.  A :class:`BlockingLane` is one more
lane joined like any other (HELLO with a one-time token), on a blocking
socket (stdlib ``ssl`` over it to another host, the certificate checked
against the FURL's tub id): a call is one frame written and one frame read
by the calling thread.  Arguments are checked against the RemoteInterface before
sending and errors take the shapes :class:`~ipkernel.lane.LaneProtocol`
gives them (Violation, RemoteException, ConnectionLost), so the code
above it cannot tell the two apart.

One call at a time: :meth:`BlockingLane.acquire` says whether the lane is
free.  A lane that timed out, was interrupted, or broke is closed for good
(an answer may still be on its way, so the next frame would be the wrong
one).
"""
import socket
import threading
import time

from twisted.internet import error as net_error

from ipkernel.lane import codec
from ipkernel.lane.server import local_address, local_sockets_usable
from ipkernel.transport import tls
from ipkernel.lane.protocol import (ANSWER, CALL, FAIL, HELLO, MAX_FRAME, MAX_HELLO, WELCOME,
                                    LaneError, _LEN, check_call, decode_frame, encode_frame,
                                    failure_of)


#: Seconds between two checks of the waiting thread (see ``_read_into``).
POLL_INTERVAL = 0.1


class TooLargeForLane(Exception):
    """The call's buffers exceed the caller's limit; nothing was sent."""


class LaneTimeout(TimeoutError):
    """No answer within the timeout; the lane was closed."""


class BlockingLane:
    """A joined lane on a blocking socket; see the module doc.

    ``remote_interface``: what the other side offers (the calls are checked
    against it).  Make one with :meth:`join`.
    """

    def __init__(self, sock, remote_interface):
        self._sock = sock
        self.remote_interface = remote_interface
        self._lock = threading.Lock()
        self._next_id = 0
        self.closed = False
        #: Calls answered on this lane.
        self.calls = 0

    @classmethod
    def join(cls, port, token, remote_interface, timeout, host="127.0.0.1", tls_always=False,
             tubid=None, local_path=""):
        """Connect to ``host``:``port`` and say HELLO with ``token``; the
        joined lane, or ConnectionLost/OSError/LaneError.

        TLS (stdlib ``ssl``) when :func:`~ipkernel.transport.tls.wants_tls`
        says so for ``host``: the certificate must be of the tub ``tubid``
        (else :class:`~ipkernel.transport.tls.WrongCertificate`, and the
        token is never sent).  A plain lane to loopback joins on the
        abstract Unix socket ``local_path`` (``@name``) when one is given
        and can be reached."""
        host = tls.host_of(host)
        encrypt = tls.wants_tls(host, tls_always)
        if encrypt and tubid is None:
            raise tls.WrongCertificate(f"the lane at {host}:{port} needs TLS, and there is no "
                                       f"tub id to check its certificate against")
        sock = None
        if local_path.startswith("@") and not encrypt and local_sockets_usable():
            sock = _connect_local(local_address(local_path), timeout)
        if sock is None:
            sock = _connect_tcp(host, port, timeout, tubid if encrypt else None)
        lane = cls(sock, remote_interface)
        try:
            sock.sendall(encode_frame(HELLO, 0, b"null", [token]))
            sock.settimeout(POLL_INTERVAL)
            kind, _, _, _ = lane._read_frame(time.monotonic() + timeout, MAX_HELLO)
            if kind != WELCOME:
                raise LaneError("the other side did not welcome this lane")
        except BaseException:
            lane.close()
            raise
        return lane

    # -- use by one thread at a time ------------------------------------------------

    def acquire(self):
        """True (and the lane is yours until :meth:`release`) when it is open
        and no other thread is calling on it."""
        if self.closed or not self._lock.acquire(blocking=False):
            return False
        if self.closed:
            self._lock.release()
            return False
        return True

    def release(self):
        self._lock.release()

    def close(self):
        """Close the socket (idempotent; any thread)."""
        self.closed = True
        try:
            self._sock.close()
        except OSError:
            pass

    # -- calling (holding the lane) -------------------------------------------------

    def call(self, method, args, kwargs, timeout=None, max_buffers=None):
        """``remote_<method>(*args, **kwargs)`` on the other side; its result.

        Raises Violation (arguments refused here), :class:`TooLargeForLane`
        (raw buffers of ``max_buffers`` bytes or more: nothing was sent),
        RemoteException (refused or failed there), :class:`LaneTimeout`
        (no answer within ``timeout`` seconds) or ConnectionLost.
        """
        if self.closed:
            raise net_error.ConnectionLost("the lane is closed")
        check_call(self.remote_interface, method, args, kwargs, False)
        text, buffers = codec.encode((method, args, kwargs))
        if max_buffers is not None and sum(memoryview(b).nbytes for b in buffers) >= max_buffers:
            raise TooLargeForLane(method)
        self._next_id = call_id = (self._next_id + 1) & 0xFFFFFFFF
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(encode_frame(CALL, call_id, text, buffers))
            self._sock.settimeout(POLL_INTERVAL)
            kind, answer_id, text, buffers = self._read_frame(deadline, MAX_FRAME)
            if answer_id != call_id or kind not in (ANSWER, FAIL):
                raise LaneError(f"a frame of kind {kind} for call {answer_id} came instead of "
                                f"the answer to call {call_id}")
        except BaseException as exc:  # the lane cannot be trusted any more
            self.close()
            if isinstance(exc, socket.timeout):
                raise LaneTimeout(f"no answer to {method} within {timeout:g} s") from None
            if isinstance(exc, (OSError, LaneError, codec.CodecError)):
                raise net_error.ConnectionLost(f"the lane closed ({exc})") from None
            raise
        self.calls += 1
        if kind == FAIL:
            failure_of(text, buffers).raiseException()
        return codec.decode(text, buffers)

    def _read_frame(self, deadline, limit):
        head = self._read_exactly(8, deadline)
        (rest,) = _LEN.unpack(head)
        if rest > limit:
            raise LaneError(f"a frame of {rest} bytes is larger than allowed ({limit})")
        frame = bytearray(8 + rest)
        frame[:8] = head
        self._read_into(memoryview(frame)[8:], deadline)
        return decode_frame(memoryview(frame))

    def _read_exactly(self, n, deadline):
        buf = bytearray(n)
        self._read_into(memoryview(buf), deadline)
        return bytes(buf)

    def _read_into(self, view, deadline):
        # The socket times out every POLL_INTERVAL, so an exception raised
        # in this thread from outside (as the blocking clients' tests and
        # tools do) is seen while waiting, not only after the answer.
        while view.nbytes:
            try:
                got = self._sock.recv_into(view)
            except socket.timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue
            if not got:
                raise ConnectionError("the other side closed the lane")
            view = view[got:]


def _connect_local(path, timeout):
    """A socket connected to the Unix socket address ``path``, or None (then
    loopback TCP)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _connect_tcp(host, port, timeout, tubid):
    """A socket connected to ``host``:``port``, under TLS checked against
    ``tubid`` when that is given."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tubid is not None:
            sock = tls.stdlib_client_context().wrap_socket(sock)
            tls.check_tubid(sock.getpeercert(binary_form=True), tubid,
                            "the controller's lane port")
    except BaseException:
        sock.close()
        raise
    return sock
