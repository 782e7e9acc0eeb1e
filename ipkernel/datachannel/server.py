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
* A ``PUT`` to the controller (an engine's large result) goes straight on
  to the client it is *routed* to (:meth:`DataChannelServer.route`: the
  controller answers that client with a reference to it), streamed through
  as it arrives; a blob nobody was routed to yet is kept until the client
  that receives the result is routed to it or ``FETCH``\\ es it (once), or
  for ``ttl``.
"""
import hmac
from collections import OrderedDict
import os
import queue
import socket
import ssl
import threading
import time

from twisted.logger import Logger

from ipkernel.datachannel import frames, splice
from ipkernel.datachannel.frames import is_loopback

log = Logger()

#: Seconds a new connection has to authenticate.
AUTH_TIMEOUT = 10.0
#: Seconds a Foolscap fetch (take_kept) waits for a blob still on its way.
FETCH_WAIT = 60.0
#: Fetched blob ids remembered, so fetching one again fails at once.
REMEMBER_FETCHED = 10_000
#: Seconds an engine's result blob waits in its socket for its route.
ROUTE_WAIT = 0.02
#: Lost blob ids remembered (a FETCH of one gets its reason at once).
MAX_LOST = 1000


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
        self._clients = {}     # client identity -> _Conn
        self._kept = {}        # blob id -> _Kept, for a FETCH or a route
        self._kept_cv = threading.Condition()
        # blob id -> (_Conn, since, pushed): where a blob not here yet goes (pushed:
        # routed by the controller, not asked for by a FETCH)
        self._routes = {}
        self._unrouted = {}    # blob ids answered without a route (ordered)
        self._expected = {}    # blob id -> engine id, answered but not here yet (ordered)
        self._lost = {}        # blob id -> why it will never come (ordered)
        # recently delivered ids -> the connection they were routed to (None:
        # fetched): a second FETCH fails at once, one from that client is ignored
        self._fetched = OrderedDict()
        self._lock = threading.Lock()
        #: Result blobs sent to clients unasked (routed), and on a FETCH.
        self.routed = 0
        self.fetched = 0
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
            self._routes.clear()
            self._unrouted.clear()
            self._expected.clear()
            self._lost.clear()
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
            self._engine_gone(engine_id)

    def _engine_gone(self, engine_id):
        """The results engine ``engine_id`` answered with but did not send will
        not come: their clients get an ERROR now rather than waiting."""
        with self._kept_cv:
            ids = [b for b, e in self._expected.items() if e == engine_id]
            for blob_id in ids:
                self._lose(blob_id, f"engine {engine_id} went away before it sent bulk data "
                                    f"{blob_id.hex()} of its result")

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
                self._to_controller(conn, blob_id, length)
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
            # a plain socket fills the buffer in one call (fewer wake-ups here)
            whole = 0 if isinstance(conn.sock, ssl.SSLSocket) else socket.MSG_WAITALL
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

    def _to_controller(self, conn, blob_id, length):
        """An engine's large result: on to the client it is routed to, else kept.

        The engine answers before it sends the blob, so the route usually
        comes while the blob arrives: until it does (or the answer went
        through without one, or ROUTE_WAIT passed), the body waits in the
        socket, to be moved across in the kernel rather than copied in here.
        """
        deadline = time.monotonic() + ROUTE_WAIT
        with self._kept_cv:
            while (blob_id not in self._routes and blob_id not in self._unrouted
                   and not self._stopped):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._kept_cv.wait(left)
            self._unrouted.pop(blob_id, None)
            self._expected.pop(blob_id, None)
            route = self._routes.pop(blob_id, None)
            if route is not None and route[0].alive:
                self._delivered(blob_id, route[0] if route[2] else None)
                entry = None
            else:
                entry = _Kept(length)
                self._expire_kept(time.monotonic())
                self._kept[blob_id] = entry
                self._kept_cv.notify_all()
        if entry is None:
            self._deliver(conn, route[0], blob_id, length)
        else:
            self._keep(conn, blob_id, entry)

    def _expire_kept(self, now):
        for old in [k for k, e in self._kept.items() if now - e.since > self.ttl]:
            del self._kept[old]

    def _delivered(self, blob_id, conn):
        """Remember that ``blob_id`` went (or goes) to ``conn`` (None: on a FETCH)."""
        self._fetched[blob_id] = conn
        while len(self._fetched) > REMEMBER_FETCHED:
            self._fetched.popitem(last=False)
        self._kept_cv.notify_all()

    def _keep(self, conn, blob_id, entry):
        """Receive a blob for a later FETCH or route, which may have it streamed
        out while it arrives."""
        length = len(entry.buf)
        view = memoryview(entry.buf)
        try:
            while entry.received < length:
                with self._kept_cv:
                    fetcher = entry.fetcher
                if fetcher is not None:  # a client waits: hand the rest straight over
                    self._deliver(conn, fetcher, blob_id, length, view[:entry.received])
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
        except BaseException:
            with self._kept_cv:
                entry.failed = True
                self._kept.pop(blob_id, None)
                self._kept_cv.notify_all()
            raise
        if fetcher is not None:  # it was asked for just as the last bytes came
            try:
                self._send_kept(fetcher, blob_id, entry)
            except OSError:
                fetcher.close()  # the client's side; this engine's stream is fine

    # -- routes (reactor thread) ----------------------------------------------------------

    def answered(self, engine_id, blob_ids):
        """Engine ``engine_id``'s answer referring to these blobs went through
        the controller (a reactor turn ago): those not routed to a client by
        now are kept when they come, without waiting for a route, and those
        not here yet fail at once if that engine goes away."""
        with self._lock:
            engine_gone = engine_id not in self._engines
        with self._kept_cv:
            for blob_id in blob_ids:
                if (blob_id in self._fetched or blob_id in self._kept
                        or blob_id in self._lost):
                    continue  # here already (or lost): nothing to wait for
                if blob_id not in self._routes:
                    self._unrouted[blob_id] = None
                self._expected[blob_id] = engine_id
                if engine_gone:
                    self._lose(blob_id, f"engine {engine_id} has no data channel; bulk data "
                                        f"{blob_id.hex()} of its result is lost")
            for table in (self._unrouted, self._expected):
                while len(table) > REMEMBER_FETCHED:  # their blobs never came
                    del table[next(iter(table))]
            self._kept_cv.notify_all()

    def _lose(self, blob_id, message):
        """``blob_id`` will never come (``_kept_cv`` held): its routed client gets
        an ERROR, a later FETCH or route learns it at once."""
        self._expected.pop(blob_id, None)
        self._unrouted.pop(blob_id, None)
        route = self._routes.pop(blob_id, None)
        if route is not None:
            route[0].later(lambda: self._error(route[0], blob_id, message))
        self._lost[blob_id] = message
        while len(self._lost) > MAX_LOST:
            del self._lost[next(iter(self._lost))]
        self._kept_cv.notify_all()

    def route(self, blob_id, identity):
        """Send the engine's result blob ``blob_id`` to the client ``identity``
        (which the controller answers with a reference to it) without waiting
        for the client's FETCH.

        True when it will be sent (as it arrives, or at once from the client
        connection's sending thread when it is here whole); False when the
        client has to FETCH it: it has no data connection here, or the blob is
        gone.
        """
        with self._lock:
            conn = self._clients.get(identity)
        if conn is None or not conn.alive:
            return False
        with self._kept_cv:
            if blob_id in self._fetched or blob_id in self._routes or blob_id in self._lost:
                return False
            entry = self._kept.get(blob_id)
            if entry is None:  # not here yet: it goes on the moment it comes
                self._add_route(blob_id, conn, True)
                self.routed += 1
                return True
            if entry.failed or entry.fetcher is not None:
                return False
            del self._kept[blob_id]
            self._delivered(blob_id, conn)
            self.routed += 1
            if entry.received == len(entry.buf):  # here whole: sent from the client's thread
                conn.later(lambda: self._send_kept(conn, blob_id, entry))
            else:  # arriving: the receiving thread sends it (see _keep)
                entry.fetcher = conn
                self._kept_cv.notify_all()
            return True

    def _add_route(self, blob_id, conn, pushed):
        """``blob_id`` goes to ``conn`` when it comes (``_kept_cv`` held)."""
        now = time.monotonic()
        while self._routes:  # the blobs of routes this old will not come
            first = next(iter(self._routes))
            if now - self._routes[first][1] <= self.ttl and len(self._routes) < REMEMBER_FETCHED:
                break
            del self._routes[first]
        self._routes[blob_id] = (conn, now, pushed)
        self._kept_cv.notify_all()

    # -- FETCH ----------------------------------------------------------------------------

    def _fetch(self, conn, blob_id):
        with self._kept_cv:
            lost = self._lost.pop(blob_id, None)
            if lost is not None:
                self._delivered(blob_id, None)  # told once; asking again: "already fetched"
        if lost is not None:
            self._error(conn, blob_id, lost)
            return
        with self._kept_cv:
            if (blob_id not in self._kept and blob_id not in self._fetched
                    and blob_id not in self._routes and not self._stopped):
                self._add_route(blob_id, conn, False)  # not here yet: sent as it comes
                return
            route = self._routes.get(blob_id)
            if (route is not None and route[0] is conn) or self._fetched.get(blob_id) is conn:
                return  # already on its way to this client
            entry = self._kept.pop(blob_id, None)
            if entry is not None:
                self._delivered(blob_id, None)
                self.fetched += 1
            if entry is not None and entry.received < len(entry.buf):
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
                return (self._stopped or blob_id in self._fetched or blob_id in self._lost
                        or (entry is not None and (entry.failed
                                                   or entry.received == len(entry.buf))))
            self._kept_cv.wait_for(ready, max(0.0, deadline - time.monotonic()))
            entry = self._kept.get(blob_id)
            if entry is None or entry.failed or entry.received < len(entry.buf):
                return None
            del self._kept[blob_id]
            self._delivered(blob_id, None)
            return entry.buf

    # -- delivering -------------------------------------------------------------------------

    def _send_kept(self, conn, blob_id, entry):
        """DELIVER a kept blob that has arrived whole to ``conn``."""
        with conn.send_lock:
            frames.send_all(conn.sock, [frames.header(frames.DELIVER, blob_id, len(entry.buf)),
                                        entry.buf])

    def _deliver(self, source, dest, blob_id, length, prefix=None):
        """DELIVER a blob to ``dest`` while it arrives on ``source``: first the
        ``prefix`` already received, then the rest moved across in the kernel
        when it can be.  A destination that fails is closed (the rest of the
        blob is read and dropped); a source that fails closes the destination
        too, since it got part of a body (its reader then fails its waiters)."""
        left = length - (len(prefix) if prefix is not None else 0)
        with dest.send_lock:
            try:  # the header waits (MSG_MORE) to leave with the first bytes of the body
                frames.send_all(dest.sock, [frames.header(frames.DELIVER, blob_id, length),
                                            prefix if prefix is not None else b""],
                                more=left > 0)
            except OSError:
                pass
            else:
                try:
                    splice.forward(source.sock, dest.sock, left)
                    return
                except splice.DestinationGone as gone:
                    left = gone.left
                except BaseException:
                    dest.close()
                    raise
        dest.close()
        splice.discard(source.sock, left)  # keep the engine's stream in step

    def _error(self, conn, blob_id, message):
        with conn.send_lock:
            conn.send(frames.header(frames.ERROR, blob_id, 0, {"message": message}))

    @property
    def kept_bytes(self):
        """Bytes of blobs waiting for a FETCH."""
        with self._kept_cv:
            return sum(len(e.buf) for e in self._kept.values())
