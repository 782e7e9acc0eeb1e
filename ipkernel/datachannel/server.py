"""The controller's end of the data channel: authenticate peers, relay blobs.

One listening socket per role (clients, engines).  A peer on another host
talks TLS: the port presents that role's Foolscap certificate, which the
peer checks against the tub id of the FURL it was given.  A peer on this
host (loopback) talks plain TCP: encryption would protect nothing there
and would cost most of the speed (AES in OpenSSL moves about a third of
what loopback TCP does here).  A peer proves itself with a token it
got over Foolscap.  Every connection has its own thread: bulk data moves
with blocking socket calls (TLS in C, no Python per byte), never through
the reactor.

* A ``PUT`` to engines is streamed through as it arrives (no copy of the
  whole blob in the controller) to each target engine's connection.
* A ``PUT`` to the controller (an engine's large result) is kept until the
  client that receives the result ``FETCH``\\ es it (once), or for ``ttl``.
"""
import hmac
from collections import OrderedDict
import os
import socket
import ssl
import threading
import time

from twisted.logger import Logger

from ipkernel.datachannel import frames
from ipkernel.datachannel.frames import is_loopback

log = Logger()

#: Seconds a new connection has to authenticate.
AUTH_TIMEOUT = 10.0
#: Seconds a FETCH waits for a blob still on its way from an engine.
FETCH_WAIT = 60.0
#: Fetched blob ids remembered, so fetching one again fails at once.
REMEMBER_FETCHED = 10_000


class _Conn:
    """One authenticated peer connection."""

    def __init__(self, sock, identity):
        self.sock = sock
        self.identity = identity  # ("engine", id) or ("client", key)
        self.send_lock = threading.Lock()
        self.alive = True

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


#: Bytes moved per splice call (the pipe between the two sockets holds this much).
SPLICE_CHUNK = 1 << 20


def _can_splice(src, dst):
    """Both plain sockets on Linux: the kernel can move the bytes itself."""
    return (hasattr(os, "splice") and not isinstance(src, ssl.SSLSocket)
            and not isinstance(dst, ssl.SSLSocket))


class _DestinationGone(Exception):
    """Writing to the destination of a splice failed; ``left`` bytes of the
    blob are still unread on the source."""

    def __init__(self, left):
        super().__init__(left)
        self.left = left


def _splice(src, dst, length):
    """Move ``length`` bytes from socket ``src`` to ``dst`` without copying
    them through this process (socket -> pipe -> socket in the kernel)."""
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
                raise ConnectionError("a peer closed its data channel in the middle of a blob")
            left -= n
            try:
                while n:
                    n -= os.splice(read_end, dst.fileno(), n)
            except OSError as exc:
                raise _DestinationGone(left) from exc
    finally:
        os.close(read_end)
        os.close(write_end)


class _Kept:
    """A blob kept for a FETCH: its buffer and how much of it has arrived."""

    __slots__ = ("buf", "received", "failed", "since", "fetcher")

    def __init__(self, length):
        self.buf = frames.new_buffer(length)
        self.received = 0
        self.failed = False
        self.since = time.monotonic()
        self.fetcher = None  # a connection waiting for the rest, spliced to it


class DataChannelServer:
    """Listens on ``(interface, port)`` for each role in ``cert_files``
    (``{"client": pem_path, "engine": pem_path}``).

    ``max_blob``: the largest blob accepted (None: any); ``ttl``: seconds a
    blob kept for a FETCH waits for it; ``tls_always``: TLS also on loopback.
    """

    def __init__(self, cert_files, interfaces=None, max_blob=None, ttl=600.0, tls_always=False):
        self.cert_files = dict(cert_files)
        self.tls_always = tls_always
        self.interfaces = dict(interfaces or {})
        self.max_blob = max_blob
        self.ttl = ttl
        self._tokens = {}      # token -> (role, identity)
        self._engines = {}     # engine id -> _Conn
        self._conns = set()
        self._kept = {}        # blob id -> _Kept, for FETCH
        self._kept_cv = threading.Condition()
        self._fetched = OrderedDict()  # recently fetched ids: a second FETCH fails at once
        self._lock = threading.Lock()
        self._listeners = {}
        self._threads = []
        self._stopped = False
        self.ports = {}

    # -- lifecycle ------------------------------------------------------------------

    def start(self, ports=None):
        """Open the listening sockets (port 0: any); return ``{role: port}``."""
        ports = ports or {}
        for role, pem in self.cert_files.items():
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(pem)
            sock = socket.create_server((self.interfaces.get(role, "127.0.0.1"),
                                         ports.get(role, 0)))
            self._listeners[role] = (sock, ctx)
            self.ports[role] = sock.getsockname()[1]
            self._spawn(self._accept_loop, role, sock, ctx, name=f"ipkernel-data-accept-{role}")
        return dict(self.ports)

    def stop(self):
        """Close every socket; the threads end by themselves."""
        self._stopped = True
        for sock, _ in self._listeners.values():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.close()
        with self._kept_cv:
            self._kept.clear()
            self._kept_cv.notify_all()

    def _spawn(self, target, *args, name):
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        self._threads = [t for t in self._threads if t.is_alive()]

    # -- tokens (reactor thread) ----------------------------------------------------------

    def new_token(self, role, identity):
        """A token a peer of ``role`` presents to be known as ``identity``."""
        token = os.urandom(32)
        with self._lock:
            self._tokens[token] = (role, identity)
        return token

    def offer(self, role, identity):
        """``(port, token, tls_always)``: what a peer needs to join."""
        return (self.ports[role], self.new_token(role, identity), self.tls_always)

    def forget_engine(self, engine_id):
        """Engine ``engine_id`` went away: close its data connection."""
        with self._lock:
            conn = self._engines.pop(engine_id, None)
        if conn is not None:
            conn.close()

    # -- connections ----------------------------------------------------------------

    def _accept_loop(self, role, sock, ctx):
        while not self._stopped:
            try:
                raw, _ = sock.accept()
            except OSError:
                return
            self._spawn(self._serve, role, raw, ctx, name=f"ipkernel-data-{role}")

    def _serve(self, role, raw, ctx):
        conn = None
        try:
            raw.settimeout(AUTH_TIMEOUT)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            plain = is_loopback(raw.getpeername()[0]) and not self.tls_always
            tls = raw if plain else ctx.wrap_socket(raw, server_side=True)
            conn = self._authenticate(role, tls)
            tls.settimeout(None)
            while not self._stopped:
                self._handle(conn, *frames.read_header(tls))
        except (ConnectionError, OSError, frames.ProtocolError, ssl.SSLError) as exc:
            if conn is not None and conn.alive and not self._stopped:
                log.info("data channel of {who} closed: {why}", who=conn.identity, why=exc)
        finally:
            if conn is not None:
                self._drop(conn)
            else:
                raw.close()

    def _authenticate(self, role, tls):
        kind, _, length, _ = frames.read_header(tls)
        if kind != frames.AUTH or length != 32:
            raise frames.ProtocolError("a data-channel peer must authenticate first")
        token = frames.recv_exactly(tls, 32)
        with self._lock:
            match = None
            for known, (known_role, identity) in self._tokens.items():
                if hmac.compare_digest(known, token) and known_role == role:
                    match = (known, identity)
            if match is None:
                raise frames.ProtocolError("a data-channel peer presented an unknown token")
            del self._tokens[match[0]]
            conn = _Conn(tls, match[1])
            self._conns.add(conn)
            if match[1][0] == "engine":
                old = self._engines.get(match[1][1])
                self._engines[match[1][1]] = conn
            else:
                old = None
        if old is not None:
            old.close()
        conn.send(frames.header(frames.AUTH))  # accepted
        return conn

    def _drop(self, conn):
        conn.close()
        with self._lock:
            self._conns.discard(conn)
            if conn.identity[0] == "engine" and self._engines.get(conn.identity[1]) is conn:
                del self._engines[conn.identity[1]]

    def _handle(self, conn, kind, blob_id, length, extra):
        if kind == frames.PUT:
            if self.max_blob is not None and length > self.max_blob:
                self._discard(conn, length)
                self._error(conn, blob_id, f"bulk data of {length} bytes is over the "
                                           f"controller's payload cap of {self.max_blob} bytes")
                return
            to = extra.get("to")
            if to == "controller":
                self._keep(conn, blob_id, length)
            else:
                self._relay(conn, blob_id, length, to)
        elif kind == frames.FETCH:
            self._fetch(conn, blob_id)
        else:
            raise frames.ProtocolError(f"unexpected {frames.KINDS[kind]} message from a peer")

    def _targets(self, to):
        with self._lock:
            if to == "all":
                return sorted(self._engines.items())
            if isinstance(to, list) and all(isinstance(i, int) for i in to):
                return [(i, self._engines.get(i)) for i in sorted(set(to))]
        raise frames.ProtocolError(f"a PUT names no valid destination: {to!r}")

    def _relay(self, conn, blob_id, length, to):
        targets = self._targets(to)
        missing = [i for i, c in targets if c is None or not c.alive]
        live = [c for _, c in targets if c is not None and c.alive]
        if missing:
            self._error(conn, blob_id, f"engines {missing} have no data channel; "
                                       f"their copy of the bulk data is lost")
        locks = [c.send_lock for c in live]
        for lock in locks:
            lock.acquire()
        try:
            head = frames.header(frames.DELIVER, blob_id, length)
            live = self._send_all(live, head)
            if len(live) == 1 and _can_splice(conn.sock, live[0].sock):
                try:
                    _splice(conn.sock, live[0].sock, length)
                except _DestinationGone as gone:
                    live[0].close()  # that engine's reader drops it
                    self._discard(conn, gone.left)
                return
            buf = bytearray(min(length, frames.CHUNK) or 1)
            view = memoryview(buf)
            left = length
            while left:
                k = conn.sock.recv_into(view, min(left, len(buf)))
                if not k:
                    raise ConnectionError("a peer closed its data channel in the middle of a blob")
                left -= k
                live = self._send_all(live, view[:k])
        finally:
            for lock in locks:
                lock.release()

    @staticmethod
    def _send_all(conns, data):
        ok = []
        for c in conns:
            try:
                c.send(data)
                ok.append(c)
            except OSError:
                c.close()  # its reader thread drops it; the engine never gets this blob
        return ok

    def _keep(self, conn, blob_id, length):
        """Receive a blob for a later FETCH; a FETCH may stream it out while it arrives."""
        entry = _Kept(length)
        with self._kept_cv:
            now = time.monotonic()
            for old in [k for k, e in self._kept.items() if now - e.since > self.ttl]:
                del self._kept[old]
            self._kept[blob_id] = entry
            self._kept_cv.notify_all()
        view = memoryview(entry.buf)
        try:
            while entry.received < length:
                with self._kept_cv:
                    fetcher = entry.fetcher
                if fetcher is not None:  # a FETCH is waiting: hand the rest straight over
                    self._splice_to_fetcher(conn, entry, blob_id, fetcher)
                    return
                k = conn.sock.recv_into(view[entry.received:],
                                        min(length - entry.received, frames.CHUNK))
                if not k:
                    raise ConnectionError("a peer closed its data channel in the middle of a blob")
                with self._kept_cv:
                    entry.received += k
                    self._kept_cv.notify_all()
            with self._kept_cv:
                fetcher, entry.fetcher = entry.fetcher, None
            if fetcher is not None:  # it asked just as the last bytes came
                self._send_kept(fetcher, blob_id, entry)
        except BaseException:
            with self._kept_cv:
                entry.failed = True
                self._kept.pop(blob_id, None)
                self._kept_cv.notify_all()
            raise

    def _fetch(self, conn, blob_id):
        deadline = time.monotonic() + FETCH_WAIT
        with self._kept_cv:
            while (blob_id not in self._kept and blob_id not in self._fetched
                   and not self._stopped):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._kept_cv.wait(left)
            entry = self._kept.pop(blob_id, None)
            if entry is not None:
                self._fetched[blob_id] = None
                while len(self._fetched) > REMEMBER_FETCHED:
                    self._fetched.popitem(last=False)
            if (entry is not None and entry.received < len(entry.buf)
                    and _can_splice(conn.sock, conn.sock)):
                entry.fetcher = conn  # the receiving thread delivers it (see _keep)
                self._kept_cv.notify_all()
                return
        if entry is None:
            self._error(conn, blob_id, f"the controller has no bulk data {blob_id.hex()} "
                                       f"(already fetched, expired, or never sent)")
            return
        self._send_kept(conn, blob_id, entry)

    def take_kept(self, blob_id, timeout=FETCH_WAIT):
        """The whole blob kept for a FETCH, once it has arrived, or None.

        Blocks (call it from a thread, not the reactor): the Foolscap
        fallback for clients that cannot reach the data port.
        """
        deadline = time.monotonic() + timeout
        with self._kept_cv:
            def ready():
                entry = self._kept.get(blob_id)
                return (self._stopped or blob_id in self._fetched
                        or (entry is not None and (entry.failed
                                                   or entry.received == len(entry.buf))))
            self._kept_cv.wait_for(ready, max(0.0, deadline - time.monotonic()))
            entry = self._kept.get(blob_id)
            if entry is None or entry.failed or entry.received < len(entry.buf):
                return None
            del self._kept[blob_id]
            self._fetched[blob_id] = None
            return entry.buf

    def _send_kept(self, conn, blob_id, entry):
        """DELIVER a kept blob to ``conn``, streaming what has not arrived yet."""
        view = memoryview(entry.buf)
        with conn.send_lock:
            conn.send(frames.header(frames.DELIVER, blob_id, len(entry.buf)))
            sent = 0
            while sent < len(entry.buf):
                with self._kept_cv:  # stream what has arrived so far
                    while entry.received == sent and not entry.failed and not self._stopped:
                        self._kept_cv.wait(FETCH_WAIT)
                    if entry.failed or self._stopped:
                        # the body was announced: the only honest signal left is to hang up
                        raise ConnectionError("the engine's bulk data stopped arriving")
                    ready = entry.received
                conn.send(view[sent:ready])
                sent = ready

    def _splice_to_fetcher(self, source, entry, blob_id, fetcher):
        """Send ``fetcher`` what has arrived, then move the rest of the blob
        from the engine's socket to the client's in the kernel."""
        length = len(entry.buf)
        left = length - entry.received
        with fetcher.send_lock:
            try:
                fetcher.send(frames.header(frames.DELIVER, blob_id, length))
                fetcher.send(memoryview(entry.buf)[:entry.received])
            except OSError:
                fetcher.close()
                self._discard(source, left)  # keep the engine's stream in step
                return
            try:
                _splice(source.sock, fetcher.sock, left)
            except _DestinationGone as gone:
                fetcher.close()  # the client went away mid-blob
                self._discard(source, gone.left)

    def _error(self, conn, blob_id, message):
        with conn.send_lock:
            conn.send(frames.header(frames.ERROR, blob_id, 0, {"message": message}))

    @staticmethod
    def _discard(conn, length):
        buf = bytearray(min(length, frames.CHUNK) or 1)
        view = memoryview(buf)
        while length:
            k = conn.sock.recv_into(view, min(length, len(buf)))
            if not k:
                raise ConnectionError("closed")
            length -= k

    @property
    def kept_bytes(self):
        """Bytes of blobs waiting for a FETCH."""
        with self._kept_cv:
            return sum(len(e.buf) for e in self._kept.values())
