"""Letting peers into the data channel: one thread for every connection
that has not authenticated yet.

A new connection costs a socket and a few bytes of state here, never a
thread: one selector thread accepts on every listening socket, runs the
TLS handshake without blocking and reads the AUTH message.  Only a peer
that presented a good token gets a thread of its own (see
:class:`~ipkernel.datachannel.server.DataChannelServer`).  The bounds:

* ``auth_timeout`` seconds from the accept to the end of the AUTH message,
  however slowly the bytes come;
* at most ``max_per_peer`` pending connections from one address and
  ``max_pending`` in all: a new one beyond either bound closes the oldest
  pending one (a flood cannot lock out a peer that authenticates at once).

Refusals are logged at most once a minute per peer address, with a count
of those left out (:class:`RateLimitedLog`); what the peer sent is never
repeated (it may be a token).
"""
import errno
import selectors
import socket
import ssl
import threading
import time

from twisted.logger import Logger

from ipkernel.datachannel import frames
from ipkernel.transport.seal import SECRET_SIZE

log = Logger()

#: Seconds from the accept to a complete AUTH message.
AUTH_TIMEOUT = 10.0
#: Connections not authenticated yet, from one address and in all.
MAX_PER_PEER = 16
MAX_PENDING = 256
#: Seconds between two log lines about one peer address.
LOG_EVERY = 60.0
#: Seconds accepting pauses when the process is out of file descriptors.
ACCEPT_PAUSE = 0.5

#: The body of an AUTH: the token, then over TLS the peer's sealing secret.
_BODY_PLAIN = frames.TOKEN_SIZE
_BODY_TLS = frames.TOKEN_SIZE + SECRET_SIZE


class RateLimitedLog:
    """``log(key, message)`` emits at most one line per ``key`` every
    ``every`` seconds; the next line (or :meth:`flush`) says how many were
    left out.  At most ``max_keys`` keys are remembered."""

    def __init__(self, emit, every=LOG_EVERY, clock=time.monotonic, max_keys=1024):
        self._emit = emit
        self._every = every
        self._clock = clock
        self._max_keys = max_keys
        self._seen = {}  # key -> [time of its last line, lines left out since]

    def __call__(self, key, message):
        """Emit ``message`` unless ``key`` had a line less than ``every`` s ago."""
        now = self._clock()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self._every:
            entry[1] += 1
            return False
        left_out = entry[1] if entry is not None else 0
        self._seen.pop(key, None)
        self._seen[key] = [now, 0]
        while len(self._seen) > self._max_keys:
            del self._seen[next(iter(self._seen))]
        self._emit(message + self._more(left_out))
        return True

    def flush(self):
        """Report the lines left out for keys whose quiet time is over."""
        now = self._clock()
        for key, entry in list(self._seen.items()):
            if now - entry[0] >= self._every:
                del self._seen[key]
                if entry[1]:
                    self._emit(f"data channel: {entry[1]} more lines like the last one about "
                               f"{key} were not logged in the last {self._every:g} s")

    def _more(self, left_out):
        return (f" ({left_out} more from there in the last {self._every:g} s not logged)"
                if left_out else "")


class _Pending:
    """A connection that has not authenticated yet."""

    __slots__ = ("sock", "role", "host", "deadline", "tls", "shaken", "data", "events")

    def __init__(self, sock, role, host, deadline, tls):
        self.sock = sock
        self.role = role
        self.host = host
        self.deadline = deadline
        self.tls = tls
        self.shaken = not tls   # TLS handshake done
        self.data = bytearray()
        self.events = selectors.EVENT_READ


class Refused(Exception):
    """A pending connection is closed; the message says why (never what it sent)."""


class Gate:
    """Accepts on ``listeners`` (``{role: (listening socket, SSLContext)}``)
    and authenticates new connections in one thread.

    ``wants_tls(host)``: whether a peer at ``host`` talks TLS.
    ``admit(role, sock, token, secret)`` (in the gate's thread): a blocking
    socket that presented ``token`` (and over TLS its sealing ``secret``,
    else None); it returns None when it took the socket, or why it refused
    it.  ``clock`` is for tests.
    """

    def __init__(self, listeners, wants_tls, admit, auth_timeout=AUTH_TIMEOUT,
                 max_per_peer=MAX_PER_PEER, max_pending=MAX_PENDING, clock=time.monotonic):
        self.listeners = dict(listeners)
        self.wants_tls = wants_tls
        self.admit = admit
        self.auth_timeout = auth_timeout
        self.max_per_peer = max_per_peer
        self.max_pending = max_pending
        self.clock = clock
        self.refusals = RateLimitedLog(lambda message: log.warn("{message}", message=message))
        #: Connections refused or dropped before authenticating (for tests).
        self.refused = 0
        self._pending = {}   # _Pending -> None, oldest first
        self._by_host = {}   # host -> {_Pending: None}, oldest first
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopped = False
        self._paused_until = 0.0
        self._thread = None

    @property
    def pending(self):
        """Connections waiting to authenticate now."""
        return len(self._pending)

    def start(self):
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        for role, (sock, _) in self.listeners.items():
            sock.setblocking(False)
            self._sel.register(sock, selectors.EVENT_READ, role)
        self._thread = threading.Thread(target=self._run, name="ipkernel-data-gate",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout=5.0):
        """End the thread and close every pending connection (not the listeners)."""
        self._stopped = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the gate's thread ---------------------------------------------------------------

    def _run(self):
        try:
            while not self._stopped:
                now = self.clock()
                wait = 1.0
                if self._pending:
                    wait = min(wait, max(0.0, next(iter(self._pending)).deadline - now))
                for key, _ in self._sel.select(wait):
                    if self._stopped:
                        break
                    try:
                        self._dispatch(key.data)
                    except Exception:  # a bug must not stop the gate for everyone
                        log.failure("data channel: the gate failed on a connection")
                        if isinstance(key.data, _Pending):
                            self._forget(key.data)
                self._expire(self.clock())
        finally:
            for pending in list(self._pending):
                self._forget(pending)
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()

    def _dispatch(self, data):
        if data is None:
            self._drain_wake()
        elif isinstance(data, str):
            self._accept(data)
        else:
            self._progress(data)

    def _drain_wake(self):
        try:
            while self._wake_r.recv(512):
                pass
        except (BlockingIOError, OSError):
            pass

    def _expire(self, now):
        if self._paused_until and now >= self._paused_until:
            self._paused_until = 0.0
            for role, (sock, _) in self.listeners.items():
                try:
                    self._sel.register(sock, selectors.EVENT_READ, role)
                except (KeyError, ValueError, OSError):
                    pass
        while self._pending:
            oldest = next(iter(self._pending))
            if oldest.deadline > now:
                break
            self._refuse(oldest, f"it did not authenticate within {self.auth_timeout:g} s")
        self.refusals.flush()

    def _accept(self, role):
        sock, ctx = self.listeners[role]
        while True:
            try:
                raw, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.refusals("accepting", f"data channel: cannot accept connections "
                                               f"({exc.strerror}); trying again shortly")
                    self._pause_accepting()
                return  # the listening socket closed (stop) or a transient error
            self._admit_new(role, raw, addr[0], ctx)

    def _pause_accepting(self):
        self._paused_until = self.clock() + ACCEPT_PAUSE
        for sock, _ in self.listeners.values():
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError):
                pass

    def _admit_new(self, role, raw, host, ctx):
        try:
            raw.setblocking(False)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self.wants_tls(host)
            sock = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False) \
                if tls else raw
        except (OSError, ssl.SSLError):
            raw.close()
            return
        from_host = self._by_host.get(host, {})
        if len(from_host) >= self.max_per_peer:
            self._refuse(next(iter(from_host)),
                         f"more than {self.max_per_peer} connections from there were "
                         f"waiting to authenticate (the oldest is closed)")
        if len(self._pending) >= self.max_pending:
            self._refuse(next(iter(self._pending)),
                         f"more than {self.max_pending} connections were waiting to "
                         f"authenticate (the oldest is closed)")
        pending = _Pending(sock, role, host, self.clock() + self.auth_timeout, tls)
        self._pending[pending] = None
        self._by_host.setdefault(host, {})[pending] = None
        self._sel.register(sock, selectors.EVENT_READ, pending)
        self._progress(pending)  # the AUTH may be here already

    def _progress(self, pending):
        try:
            token = self._read_auth(pending)
        except Refused as exc:
            self._refuse(pending, str(exc))
            return
        except frames.ProtocolError as exc:
            self._refuse(pending, str(exc))
            return
        except (OSError, ssl.SSLError, ValueError) as exc:
            # the peer went away or broke TLS: nothing worth a warning
            log.debug("data channel: a connection from {host} failed before it "
                      "authenticated ({why})", host=pending.host, why=type(exc).__name__)
            self.refused += 1
            self._forget(pending)
            return
        if token is None:
            return
        token, secret = token[:frames.TOKEN_SIZE], token[frames.TOKEN_SIZE:] or None
        self._forget(pending, close=False)
        sock = pending.sock
        try:
            sock.setblocking(True)
            why = self.admit(pending.role, sock, token, secret)
        except (OSError, ssl.SSLError) as exc:
            why = f"it failed as it was admitted ({type(exc).__name__})"
        if why is not None:
            self.refused += 1
            self._log_refusal(pending, why)
            _close(sock)

    def _read_auth(self, pending):
        """The AUTH body (token, secret) once it is all here, else None (later)."""
        sock = pending.sock
        body = _BODY_TLS if pending.tls else _BODY_PLAIN
        whole = frames.HEADER.size + body
        try:
            if not pending.shaken:
                sock.do_handshake()
                pending.shaken = True
            while len(pending.data) < whole:
                chunk = sock.recv(whole - len(pending.data))
                if not chunk:
                    raise ConnectionError("closed")
                pending.data += chunk
                if len(pending.data) >= frames.HEADER.size:
                    kind, _, length, extra_length = frames.parse_header(
                        bytes(pending.data[:frames.HEADER.size]))
                    if kind != frames.AUTH or length != body or extra_length:
                        raise Refused("its first message was not an AUTH with a token"
                                      + (" and a sealing secret" if pending.tls else ""))
            if pending.tls and sock.pending():
                raise Refused("it sent more than its AUTH before it was let in")
        except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
            self._want(pending, selectors.EVENT_READ)
            return None
        except ssl.SSLWantWriteError:
            self._want(pending, selectors.EVENT_WRITE)
            return None
        return bytes(pending.data[frames.HEADER.size:])

    def _want(self, pending, events):
        if pending.events != events:
            pending.events = events
            self._sel.modify(pending.sock, events, pending)

    def _refuse(self, pending, why):
        self.refused += 1
        self._log_refusal(pending, why)
        self._forget(pending)

    def _log_refusal(self, pending, why):
        self.refusals(pending.host, f"data channel: refused a {pending.role} connection from "
                                    f"{pending.host}: {why}")

    def _forget(self, pending, close=True):
        if pending in self._pending:
            del self._pending[pending]
            from_host = self._by_host.get(pending.host)
            if from_host is not None:
                from_host.pop(pending, None)
                if not from_host:
                    del self._by_host[pending.host]
            try:
                self._sel.unregister(pending.sock)
            except (KeyError, ValueError, OSError):
                pass
        if close:
            _close(pending.sock)


def _close(sock):
    try:
        sock.close()
    except OSError:
        pass
