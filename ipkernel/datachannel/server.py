"""The controller's end of the data channel: authenticate peers, relay blobs.

One listening socket per role (clients, engines).  A peer on another host
starts with TLS: the port presents that role's Foolscap certificate, which
the peer checks against the tub id of the FURL it was given; inside TLS
both ends exchange fresh secrets and then talk sealed records
(:mod:`ipkernel.transport.seal`) on the socket under it.  A peer on this
host (loopback) talks plain TCP: encryption would protect nothing there
and would cost speed.  A peer proves itself with a token it got over
Foolscap.  Until it has, its connection is handled by one thread for all
(:mod:`~ipkernel.datachannel.gate`: a login deadline, a bound per peer
address); once it has, it gets a thread of its own: bulk data moves with
blocking socket calls, never through the reactor.

* A ``PUT`` to engines is passed on a piece at a time as it arrives (no
  copy of the whole blob in the controller; other clients' blobs go in
  between): see :mod:`~ipkernel.datachannel.relay`.
* A ``PUT`` to the controller (an engine's large result) goes on to the
  client it is routed to, or is kept for a later ``FETCH``: see
  :mod:`ipkernel.datachannel.results`.
* A ``PUT`` over the payload cap is refused after its header: the sender
  gets an ERROR for it and its connection is closed, the body unread.
* A client on this host may send, instead of a big body, where it lies in
  its memory; the controller reads it from there and answers TAKEN (see
  :mod:`~ipkernel.datachannel.memread`).
"""
import hashlib
import os
import queue
import socket
import threading
import time

from twisted.logger import Logger

from ipkernel.datachannel import frames, memread, relay
from ipkernel.datachannel.frames import is_loopback
from ipkernel.datachannel.gate import Gate
from ipkernel.datachannel.results import FETCH_WAIT, ResultBlobs, send_error
from ipkernel.transport.seal import end_unless_sending, fresh_secret, seal_after_tls
from ipkernel.traffic import DATA_CHANNEL
from ipkernel.transport.tls import host_of, stdlib_server_context

#: Arrival times of relayed blobs remembered (for :meth:`DataChannelServer.relayed_at`).
RELAYED_KEPT = 4096

log = Logger()

#: Seconds a token handed out over Foolscap stays good if nobody presents it.
TOKEN_TTL = 600.0
#: Seconds the welcome of a new peer may take to send.
WELCOME_TIMEOUT = 10.0


class _Conn:
    """One authenticated peer connection."""

    def __init__(self, sock, identity):
        self.sock = sock
        self.identity = identity  # ("engine", id) or ("client", key)
        self.send_lock = threading.Lock()
        self.alive = True
        self._jobs = None  # sends done by this connection's sending thread
        self._jobs_lock = threading.Lock()
        #: The proof a client must hold to have its memory read (None: not offered).
        self.proof = None

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
            except OSError:
                self.close()  # its reader thread drops it

    def close(self):
        self.alive = False
        if self._jobs is not None:
            self._jobs.put(None)
        end_unless_sending(self.sock, self.send_lock)
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
    blob kept for a FETCH waits for it; ``tls_always``: TLS also on loopback;
    ``stall``: seconds a client may stay silent in the middle of a blob it
    sends to engines (then the blob is aborted); ``gate``: keyword arguments
    for the :class:`~ipkernel.datachannel.gate.Gate` (its bounds);
    ``memory_reads``: offer clients on this host to read their big blobs
    from their memory (:mod:`~ipkernel.datachannel.memread`).
    """

    def __init__(self, cert_files, interfaces=None, max_blob=None, ttl=600.0, tls_always=False,
                 stall=relay.STALL_TIMEOUT, gate=None, memory_reads=True):
        self.cert_files = dict(cert_files)
        self.memory_reads = memory_reads
        self.tls_always = tls_always
        self.interfaces = dict(interfaces or {})
        self.max_blob = max_blob
        self.ttl = ttl
        self.stall = stall
        self._gate_options = dict(gate or {})
        self.gate = None
        self._tokens = {}      # sha256 of a token -> (role, identity, time handed out)
        self._engines = {}     # engine id -> _Conn
        self._conns = set()
        self._clients = {}     # client identity -> _Conn
        self._lock = threading.Lock()
        #: The engines' result blobs on their way to clients.
        self.results = ResultBlobs(ttl)
        self._relayed = {}  # blob id -> time.monotonic() its relay to engines began
        self._listeners = {}
        self._threads = []
        self._stopped = False
        self.ports = {}

    # -- lifecycle ------------------------------------------------------------------

    def start(self, ports=None):
        """Open the listening sockets (port 0: any); return ``{role: port}``."""
        ports = ports or {}
        for role, pem in self.cert_files.items():
            ctx = stdlib_server_context(pem)
            sock = socket.create_server((self.interfaces.get(role, "127.0.0.1"),
                                         ports.get(role, 0)), backlog=128)
            self._listeners[role] = (sock, ctx)
            self.ports[role] = sock.getsockname()[1]
        self.gate = Gate(self._listeners, self._wants_tls, self._admit, **self._gate_options)
        self.gate.start()
        return dict(self.ports)

    def _wants_tls(self, host):
        return self.tls_always or not is_loopback(host)

    def stop(self):
        """Close every socket; the threads end by themselves."""
        self._stopped = True
        if self.gate is not None:
            self.gate.stop()
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
        token = os.urandom(frames.TOKEN_SIZE)
        now = time.monotonic()
        with self._lock:
            while self._tokens:  # nobody presented these: they lapse
                first = next(iter(self._tokens))
                if now - self._tokens[first][2] <= TOKEN_TTL:
                    break
                del self._tokens[first]
            self._tokens[_digest(token)] = (role, identity, now)
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

    def _admit(self, role, sock, token, secret):
        """A connection that presented ``token`` (the gate's thread): None when
        it is taken (it gets its thread), else why not.  Over TLS (``secret``
        is the peer's sealing secret) the welcome goes over TLS and the rest
        as sealed records."""
        with self._lock:
            known = self._tokens.get(_digest(token))
            if known is None or known[0] != role or self._stopped:
                return "it presented an unknown token"
            del self._tokens[_digest(token)]
            identity = known[1]
            conn = _Conn(sock, identity)
            conn.send_lock.acquire()  # nothing goes to it before its welcome
            self._conns.add(conn)
            if identity[0] == "engine":
                old = self._engines.get(identity[1])
                self._engines[identity[1]] = conn
            else:
                old = None
                self._clients[identity] = conn
        try:
            if old is not None:
                old.close()
            conn.sock = self._welcome(conn, sock, identity, secret)
        except OSError as exc:
            why = f"its welcome could not be sent ({type(exc).__name__})"
        else:
            why = None
        finally:
            conn.send_lock.release()
        if why is not None:
            self._drop(conn)
            return why
        if identity[0] == "client":
            # what it sends to engines must not stall for ever
            relay.set_stall_timeout(conn.sock, self.stall)
        self._spawn(self._serve, conn, name=f"ipkernel-data-{role}")
        return None

    def _welcome(self, conn, sock, identity, secret):
        """Send the AUTH answer; return the socket the peer is served on.  A
        client on this host is offered memory reads (:mod:`~ipkernel.datachannel.memread`)."""
        extra = {"max_blob": self.max_blob} if self.max_blob is not None else {}
        if secret is None:  # plain
            if identity[0] == "client" and self.memory_reads and memread.available():
                conn.proof = memread.fresh_proof()
                extra["memory"] = {"pid": os.getpid(), "proof": conn.proof.hex()}
            sock.sendall(frames.header(frames.AUTH, extra=extra))
            return sock
        mine = fresh_secret()
        sock.settimeout(WELCOME_TIMEOUT)
        sock.sendall(frames.header(frames.AUTH, body_length=len(mine), extra=extra) + mine)
        try:
            where = f" at {host_of(sock.getpeername()[0])}"
        except OSError:
            where = ""
        return seal_after_tls(sock, secret, mine, initiator=False, peer=_name(identity) + where)

    def _serve(self, conn):
        idle_ok = conn.identity[0] == "client"
        try:
            while not self._stopped and conn.alive:
                self._handle(conn, *frames.read_header(conn.sock, idle_ok))
        except frames.Closed:   # the peer closed it between messages: a normal end
            if conn.alive and not self._stopped:
                log.debug("data channel of {who} closed", who=conn.identity)
        except relay.SenderGone as exc:
            if not self._stopped:
                log.warn("data channel of {who}: bulk data it was sending to engines was "
                         "aborted, its connection is closed: {why}", who=conn.identity, why=exc)
        except _Refused as exc:
            log.warn("data channel of {who}: {why}; its connection is closed",
                     who=conn.identity, why=exc)
        except (ConnectionError, OSError, frames.ProtocolError) as exc:
            if conn.alive and not self._stopped:
                log.warn("data channel of {who} closed: {why}", who=conn.identity,
                         why=str(exc) or type(exc).__name__)
        finally:
            self._drop(conn)

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
            DATA_CHANNEL.bytes_in += length
            if self.max_blob is not None and length > self.max_blob:
                why = (f"bulk data of {length} bytes is over the controller's payload cap "
                       f"of {self.max_blob} bytes")
                self._error(conn, blob_id, why)
                raise _Refused(why)  # its body is not read: the stream is out of step
            to = extra.get("to")
            if "memory" in extra:
                self._relay_from_memory(conn, blob_id, length, to, extra["memory"])
            elif to == "controller":
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

    def relayed_at(self, blob_id):
        """When (``time.monotonic()``) the client blob ``blob_id`` arrived to be
        relayed to engines, or None (unknown, or long ago): the start of the
        call it belongs to (see ``ipkernel.controller.multiengine.call_started``)."""
        with self._lock:
            return self._relayed.get(blob_id)

    def _relay_from_memory(self, conn, blob_id, length, to, request):
        """A client's PUT naming where its blob lies in its memory: read it
        from there and answer TAKEN; if it cannot be read at all, say why
        (the client then sends the bytes)."""
        if conn.proof is None or to == "controller":
            raise frames.ProtocolError("a PUT from memory that was not offered")
        try:
            source = memread.MemorySource(request, conn.proof, length)
        except ValueError as exc:
            raise frames.ProtocolError(str(exc)) from None
        except OSError as exc:
            log.info("data channel of {who}: its memory cannot be read ({why}); it sends "
                     "bulk data on the socket", who=conn.identity, why=exc.strerror or exc)
            conn.proof = None   # (and the client stops asking)
            self._taken(conn, blob_id, {"ok": False, "message": str(exc.strerror or exc)})
            return
        self._relay(conn, blob_id, length, to, source)
        self._taken(conn, blob_id, {"ok": True})

    @staticmethod
    def _taken(conn, blob_id, extra):
        with conn.send_lock:
            conn.send(frames.header(frames.TAKEN, blob_id, 0, extra))

    def _relay(self, conn, blob_id, length, to, source=None):
        with self._lock:
            self._relayed[blob_id] = time.monotonic()
            while len(self._relayed) > RELAYED_KEPT:
                del self._relayed[next(iter(self._relayed))]
        targets = self._targets(to)
        missing = [i for i, c in targets if c is None or not c.alive]
        live = [c for _, c in targets if c is not None and c.alive]
        if missing:
            self._error(conn, blob_id, f"engines {missing} have no data channel; "
                                       f"their copy of the bulk data is lost")
        relay.relay(source or conn.sock, blob_id, length, live, self.stall)
        DATA_CHANNEL.bytes_out += length * len(live)

    _error = staticmethod(send_error)


class _Refused(Exception):
    """A peer's request is refused and its connection closed (the message says why)."""


def _name(identity):
    role, who = identity
    return f"engine {who}" if role == "engine" else "a client"


def _digest(token):
    # tokens are looked up by digest: no comparison leaks how much of one matched
    return hashlib.sha256(token).digest()
