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
* A ``PUT`` to the controller (an engine's large result) goes on to the
  client it is routed to, or is kept for a later ``FETCH``: see
  :mod:`ipkernel.datachannel.results`.
"""
import hmac
import os
import queue
import socket
import ssl
import threading

from twisted.logger import Logger

from ipkernel.datachannel import frames, splice
from ipkernel.datachannel.frames import is_loopback
from ipkernel.datachannel.results import FETCH_WAIT, ResultBlobs, send_error

log = Logger()

#: Seconds a new connection has to authenticate.
AUTH_TIMEOUT = 10.0
class _Conn:
    """One authenticated peer connection."""

    def __init__(self, sock, identity):
        self.sock = sock
        self.identity = identity  # ("engine", id) or ("client", key)
        self.send_lock = threading.Lock()
        self.alive = True
        self._jobs = None  # sends done by this connection's sending thread
        self._jobs_lock = threading.Lock()

    def send(self, data):
        self.sock.sendall(data)

    def later(self, job):
        """Run ``job()`` in this connection's sending thread (started at the
        first call; it ends when the connection closes)."""
        with self._jobs_lock:  # not send_lock: the reactor must not wait for a send
            if self._jobs is None:
                self._jobs = queue.SimpleQueue()
                threading.Thread(target=self._run_jobs, args=(self._jobs,), daemon=True,
                                 name="ipkernel-data-send").start()
            self._jobs.put(job)
            if not self.alive:
                self._jobs.put(None)

    def _run_jobs(self, jobs):
        while self.alive:
            job = jobs.get()
            if job is None:
                return
            try:
                job()
            except (ConnectionError, OSError, ssl.SSLError):
                self.close()  # its reader thread drops it

    def close(self):
        self.alive = False
        if self._jobs is not None:
            self._jobs.put(None)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


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
        self._clients = {}     # client identity -> _Conn
        self._lock = threading.Lock()
        #: The engines' result blobs on their way to clients.
        self.results = ResultBlobs(ttl)
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
        self.results.stop()

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
            self._engine_gone(engine_id)

    def _engine_gone(self, engine_id):
        self.results.engine_gone(engine_id)

    # -- results (reactor thread) -----------------------------------------------------------

    def route(self, blob_id, identity):
        """Send the engine's result blob ``blob_id`` to the client ``identity``
        unasked; False when that client has no data connection here, or the
        blob is gone (see :meth:`~ipkernel.datachannel.results.ResultBlobs.route`)."""
        with self._lock:
            conn = self._clients.get(identity)
        return conn is not None and conn.alive and self.results.route(blob_id, conn)

    def answered(self, engine_id, blob_ids):
        """Engine ``engine_id``'s answer referring to ``blob_ids`` went through
        the controller a reactor turn ago (see
        :meth:`~ipkernel.datachannel.results.ResultBlobs.answered`)."""
        with self._lock:
            gone = engine_id not in self._engines
        self.results.answered(engine_id, blob_ids, gone)

    def take_kept(self, blob_id, timeout=FETCH_WAIT):
        """The whole result blob kept for a FETCH once it has arrived, or None;
        blocks (the Foolscap fallback for clients off the data channel)."""
        return self.results.take_kept(blob_id, timeout)

    @property
    def kept_bytes(self):
        """Bytes of result blobs kept for a FETCH."""
        return self.results.kept_bytes

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
        except frames.Closed:   # the peer closed it between messages: a normal end
            if conn is not None and conn.alive and not self._stopped:
                log.debug("data channel of {who} closed", who=conn.identity)
        except (ConnectionError, OSError, frames.ProtocolError, ssl.SSLError) as exc:
            if conn is not None and conn.alive and not self._stopped:
                log.warn("data channel of {who} closed: {why}", who=conn.identity, why=exc)
            elif conn is None and isinstance(exc, frames.ProtocolError) and not self._stopped:
                # (what the peer sent is not repeated: it may be a token)
                log.warn("data channel: refused a {role} connection: {why}", role=role, why=exc)
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
                self._clients[match[1]] = conn
        if old is not None:
            old.close()
        conn.send(frames.header(frames.AUTH))  # accepted
        return conn

    def _drop(self, conn):
        conn.close()
        with self._lock:
            self._conns.discard(conn)
            gone = conn.identity[0] == "engine" and self._engines.get(conn.identity[1]) is conn
            if gone:
                del self._engines[conn.identity[1]]
            if self._clients.get(conn.identity) is conn:
                del self._clients[conn.identity]
        if gone:
            self._engine_gone(conn.identity[1])

    def _handle(self, conn, kind, blob_id, length, extra):
        if kind == frames.PUT:
            if self.max_blob is not None and length > self.max_blob:
                splice.discard(conn.sock, length)
                self._error(conn, blob_id, f"bulk data of {length} bytes is over the "
                                           f"controller's payload cap of {self.max_blob} bytes")
                return
            to = extra.get("to")
            if to == "controller":
                self.results.arrived(conn, blob_id, length)
            else:
                self._relay(conn, blob_id, length, to)
        elif kind == frames.FETCH:
            self.results.fetch(conn, blob_id)
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
            live = self._send_all(live, head, more=length > 0)
            if len(live) == 1 and splice.can_splice(conn.sock, live[0].sock):
                try:
                    splice.splice(conn.sock, live[0].sock, length)
                except splice.DestinationGone as gone:
                    live[0].close()  # that engine's reader drops it
                    splice.discard(conn.sock, gone.left)
                return
            buf = frames.uninitialized(min(length, frames.CHUNK) or 1)
            view = memoryview(buf)
            left = length
            # a small blob on a plain socket is received in one call (fewer
            # wake-ups); a big one is passed on piece by piece as it comes
            whole = (socket.MSG_WAITALL if length <= len(buf)
                     and not isinstance(conn.sock, ssl.SSLSocket) else 0)
            while left:
                k = conn.sock.recv_into(view, min(left, len(buf)), whole)
                if not k:
                    raise ConnectionError("a peer closed its data channel in the middle of a blob")
                left -= k
                live = self._send_all(live, view[:k])
        finally:
            for lock in locks:
                lock.release()

    @staticmethod
    def _send_all(conns, data, more=False):
        ok = []
        for c in conns:
            try:
                frames.send_all(c.sock, [data], more)
                ok.append(c)
            except OSError:
                c.close()  # its reader thread drops it; the engine never gets this blob
        return ok

    _error = staticmethod(send_error)
