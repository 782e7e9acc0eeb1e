"""A client's or an engine's end of the data channel."""
import os
import socket
import threading

from twisted.internet import defer, threads
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure

from ipkernel.datachannel import frames, memread
from ipkernel.datachannel.frames import is_loopback
from ipkernel.datachannel.blobs import BlobStore, Pieces
from ipkernel.datachannel.reader import ReactorReader, aborted_message, piece_view
from ipkernel.error import PayloadTooLarge
from ipkernel.transport.seal import (SECRET_SIZE, end_unless_sending, fresh_secret,
                                     seal_after_tls)
from ipkernel.transport.tls import check_tubid, stdlib_client_context

log = Logger()

#: Seconds allowed to connect and authenticate.
CONNECT_TIMEOUT = 10.0


class DataChannelPeer:
    """Connects to the controller's data port and moves blobs.

    ``tubid``: the tub id of the FURL this peer used; the TLS certificate of
    the data port must match it (TLS is used off this host, or always with
    ``tls_always``; after its handshake the bytes go as sealed records).
    Blobs that arrive go into ``store``.
    Use :meth:`connect` (a Deferred) from the reactor thread.
    """

    def __init__(self, host, port, token, tubid, tls_always=False, store=None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.host, self.port, self.token, self.tubid = host, port, token, tubid
        self.tls_always = tls_always
        self.reactor = reactor
        self.store = store if store is not None else BlobStore(reactor)
        self.sock = None
        self.send_lock = threading.Lock()
        self.closed = False
        #: The largest blob the controller takes (its payload cap; None: any).
        self.max_blob = None
        self._reader = None
        #: Blob bytes sent and received (for tests and benchmarks).
        self.bytes_sent = 0
        self.bytes_received = 0
        #: Blob bytes the controller read from this process's memory.
        self.bytes_lent = 0
        self._proof = None        # the controller's proof, while it may read our memory
        self._taken = {}          # blob id -> [Event, TAKEN extra or None]
        self._taken_lock = threading.Lock()

    def connect(self):
        """A Deferred firing with self once authenticated."""
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._connect)
        return d.addCallback(self._start_reading)

    def _start_reading(self, _):
        if self.closed:
            self.sock.close()
            raise ConnectionError("the data channel was closed while it was joined")
        if not frames.is_plain(self.sock):  # sealed: read by a thread of its own
            self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                            name="ipkernel-data-reader")
            self._reader.start()
        else:  # plain: read by the reactor (see ipkernel.datachannel.reader)
            self._reader = ReactorReader(self.sock, self.store, self._lost_here, self._count,
                                         self.reactor, on_taken=self._on_taken)
            self.reactor.addReader(self._reader)
        return self

    def _count(self, n):
        self.bytes_received += n

    def _lost_here(self, why):
        """The connection read by the reactor ended (reactor thread)."""
        self.closed = True
        self._wake_lenders()
        self.reactor.removeReader(self._reader)
        try:
            self.sock.close()
        except OSError:
            pass
        self.store.fail_all(f"the data channel to the controller closed ({why})")

    def _connect(self):
        sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if is_loopback(sock.getpeername()[0]) and not self.tls_always:
                self.sock = self._join_plain(sock)  # same host (see ipkernel.datachannel.server)
            else:
                sock = stdlib_client_context().wrap_socket(sock)
                self.sock = self._join_sealed(sock)
        except BaseException:
            sock.close()
            raise

    def _join_plain(self, sock):
        sock.sendall(frames.header(frames.AUTH, body_length=len(self.token)) + self.token)
        self._read_welcome(sock, 0)
        sock.settimeout(None)
        return sock

    def _join_sealed(self, tls):
        """Authenticate over TLS, then go on with sealed records on the
        socket under it (see :mod:`ipkernel.transport.seal`)."""
        check_tubid(tls.getpeercert(binary_form=True), self.tubid,
                    f"the data port at {self.host}:{self.port}")
        mine = fresh_secret()
        body = self.token + mine
        tls.sendall(frames.header(frames.AUTH, body_length=len(body)) + body)
        theirs = self._read_welcome(tls, SECRET_SIZE)
        return seal_after_tls(tls, mine, theirs, initiator=True,
                              peer=f"the controller's data port at {self.host}:{self.port}")

    def _read_welcome(self, sock, secret_size):
        """Read the controller's AUTH answer; return its body (its secret)."""
        try:
            kind, _, length, extra = frames.read_header(sock)
        except frames.Closed:
            kind = None
        if kind != frames.AUTH:
            raise ConnectionError("the controller refused the data-channel token "
                                  "(it closed the connection)")
        if length != secret_size:
            raise frames.ProtocolError(f"the controller's welcome has a body of {length} bytes, "
                                       f"not {secret_size}")
        cap = extra.get("max_blob")
        self.max_blob = cap if isinstance(cap, int) and cap >= 0 else None
        self._take_memory_offer(extra.get("memory"))
        return frames.recv_exactly(sock, length)

    def _take_memory_offer(self, offer):
        """Let the controller read big blobs from this process's memory, if it offers and may."""
        try:
            pid, proof = offer["pid"], bytes.fromhex(offer["proof"])
        except (TypeError, KeyError, ValueError, AttributeError):
            return
        if isinstance(pid, int) and len(proof) == memread.PROOF_SIZE \
                and memread.allow_reader(pid):
            self._proof = bytearray(proof)   # (it stays at one address: the controller checks it)

    def close(self):
        """Close the connection (waiters fail with BlobMissing); any thread."""
        self.closed = True
        self._wake_lenders()
        if self.sock is None:
            return
        end_unless_sending(self.sock, self.send_lock)  # (a send under way is cut short)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes whoever reads it
        except OSError:
            pass
        if isinstance(self._reader, ReactorReader):
            if threadable.isInIOThread():
                self._reader.connectionLost(Failure(ConnectionDone("closed")))
            # else the reactor reads the end of the stream and closes it
        else:
            self.sock.close()

    @property
    def connected(self):
        return self.sock is not None and not self.closed

    # -- reading (sealed: its own thread) --------------------------------------------------------

    def _read_loop(self):
        why = "closed"
        pieces = Pieces(frames.new_buffer)
        try:
            while True:
                # (no reference to the last blob stays here: once its user lets
                # go of it, its buffer can take the next blob of its size)
                buf = view = None
                kind, blob_id, length, extra = frames.read_header(self.sock)
                if kind == frames.DELIVER:
                    buf = frames.new_buffer(length)
                    frames.recv_into_fully(self.sock, memoryview(buf))
                    self.bytes_received += length
                    self.store.put(blob_id, buf)
                elif kind == frames.PART:
                    view = piece_view(pieces, blob_id, length, extra)
                    frames.recv_into_fully(self.sock, view)
                    self.bytes_received += length
                    buf = pieces.received(blob_id, length)
                    if buf is not None:
                        self.store.put(blob_id, buf)
                elif kind == frames.ABORT:
                    pieces.abort(blob_id)
                    self.store.fail(blob_id, aborted_message(blob_id, extra))
                elif kind == frames.ERROR:
                    message = str(extra.get("message", "the controller refused bulk data"))
                    log.warn("data channel: {message}", message=message)
                    self.store.fail(blob_id, message)
                else:
                    raise frames.ProtocolError(f"unexpected {frames.KINDS[kind]} message")
        except (ConnectionError, OSError, frames.ProtocolError) as exc:
            why = str(exc) or type(exc).__name__
        finally:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass
            self.reactor.callFromThread(
                self.store.fail_all, f"the data channel to the controller closed ({why})")

    # -- sending (any thread) ---------------------------------------------------------------

    def send_blob(self, blob_id, to, buffers):
        """Send ``buffers`` (bytes-like, in order) as one blob to ``to``
        (engine ids, ``"all"`` or ``"controller"``); blocks until sent.

        PayloadTooLarge, before anything is sent, for a blob over the
        controller's payload cap.
        """
        views = [memoryview(b).cast("B") for b in buffers]
        total = sum(v.nbytes for v in views)
        if self.max_blob is not None and total > self.max_blob:
            # the controller would refuse it after the header and close the connection
            raise PayloadTooLarge(
                f"bulk data of {total} bytes is over the controller's payload cap of "
                f"{self.max_blob} bytes; send it in smaller pieces (scatter, several pushes) "
                f"or start the controller with a larger --payload-cap")
        if (self._proof is not None and total >= memread.MEMORY_MIN and to != "controller"
                and not threadable.isInIOThread() and self._lend(blob_id, to, views, total)):
            return
        with self.send_lock:
            if not self.connected:
                raise ConnectionError("the data channel to the controller is closed")
            try:
                frames.send_all(self.sock,
                                [frames.header(frames.PUT, blob_id, total, {"to": to})] + views)
            except OSError as exc:  # (the controller may have aborted it: we were too slow)
                self.closed = True  # out of step now; later calls go through Foolscap
                raise ConnectionError(
                    f"the data channel to the controller closed while {total} bytes of bulk "
                    f"data were being sent ({exc.strerror or type(exc).__name__}); the call "
                    f"was not made: make it again (bulk data now goes through Foolscap)") from None
            self.bytes_sent += total

    def _lend(self, blob_id, to, views, total):
        """Have the controller read the blob from ``views`` in this process's
        memory; True once it did, False if it could not (send the bytes then).
        ``views`` stay alive and untouched until the answer comes."""
        proof = self._proof
        request = {"pid": os.getpid(), "proof": memread.addresses([proof])[0][0],
                   "at": memread.addresses(views)}
        waiter = [threading.Event(), None]
        with self._taken_lock:
            self._taken[blob_id] = waiter
        try:
            with self.send_lock:
                if not self.connected:
                    raise ConnectionError("the data channel to the controller is closed")
                try:
                    self.sock.sendall(frames.header(frames.PUT, blob_id, total,
                                                    {"to": to, "memory": request}))
                except OSError as exc:
                    self.closed = True
                    raise ConnectionError(f"the data channel to the controller closed "
                                          f"({exc.strerror or type(exc).__name__}); the call "
                                          f"was not made: make it again") from None
            while not waiter[0].wait(1.0):
                if self.closed:
                    break
        finally:
            with self._taken_lock:
                self._taken.pop(blob_id, None)
        answer = waiter[1]
        if answer is None:
            raise ConnectionError(f"the data channel to the controller closed while it read "
                                  f"{total} bytes of bulk data from this process; the call was "
                                  f"not made: make it again (bulk data now goes through Foolscap)")
        if answer.get("ok") is True:
            self.bytes_sent += total
            self.bytes_lent += total
            return True
        self._proof = None
        log.info("data channel: the controller cannot read this process's memory ({why}); "
                 "bulk data goes on the socket", why=answer.get("message"))
        return False

    def _on_taken(self, blob_id, extra):
        """A TAKEN answer came (a reading thread)."""
        with self._taken_lock:
            waiter = self._taken.get(blob_id)
        if waiter is None:
            raise frames.ProtocolError(f"a TAKEN for bulk data {blob_id.hex()} nobody lent")
        waiter[1] = extra
        waiter[0].set()

    def _wake_lenders(self):
        with self._taken_lock:
            for waiter in self._taken.values():
                waiter[0].set()

    def send_blob_later(self, blob_id, to, buffers):
        """:meth:`send_blob` in a thread of the reactor's pool; a Deferred."""
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                         self.send_blob, blob_id, to, buffers)

    def fetch(self, blob_id, timeout, ask=True):
        """A Deferred of the bytes of a blob the controller keeps or sends.

        The controller is asked for it (FETCH) unless it has arrived already
        or ``ask`` is false (the controller sends it unasked).
        """
        d = self.store.wait(blob_id, timeout)
        if d.called or not ask:
            return d
        try:
            with self.send_lock:
                if not self.connected:
                    raise ConnectionError("the data channel to the controller is closed")
                self.sock.sendall(frames.header(frames.FETCH, blob_id))
        except (ConnectionError, OSError) as exc:
            d.addErrback(lambda _: None)
            d.cancel()
            return defer.fail(ConnectionError(str(exc)))
        return d


def new_blob_id():
    return os.urandom(16)
