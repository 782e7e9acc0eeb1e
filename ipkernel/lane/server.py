"""The controller's lane ports, and how engines and clients join them."""
import hmac
import os
import time

from twisted.internet import defer, endpoints
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ipkernel.lane import protocol as lane_protocol
from ipkernel.lane.protocol import LaneProtocol
from ipkernel.transport import tls
from ipkernel.transport.memtls import TLSLayer

log = Logger()

#: Seconds a token handed out over Foolscap stays good.
TOKEN_TTL = 120.0
#: Seconds allowed to connect and be welcomed.
JOIN_TIMEOUT = 10.0
#: Connections that may wait to say HELLO at once (the oldest goes first).
MAX_WAITING = 64


class _LaneFactory(Factory):
    """Builds the accepting side of each lane: plain TCP for a peer on
    loopback, TLS for every other (and for all with ``tls_always``)."""

    noisy = False  # no "Starting factory" lines

    def __init__(self, server):
        self.server = server
        self.context = None
        if server.cert_file is not None:
            self.context = tls.stdlib_server_context(server.cert_file)

    def buildProtocol(self, addr):
        host = tls.host_of(getattr(addr, "host", None))
        if not tls.wants_tls(host, self.server.tls_always):
            return self.server._protocol()
        if self.context is None:
            lane_protocol.REFUSALS.note(f"a peer at {host} is not on this host, and this lane "
                                        f"port has no certificate to encrypt with")
            return None  # Twisted closes the connection
        return TLSLayer(self.context, True, self.server._protocol())


class _OneLane(Factory):
    """Builds the one joining side of a lane being connected (the lane, or
    the TLS layer under it)."""

    noisy = False

    def __init__(self, protocol):
        self.protocol_made = protocol

    def buildProtocol(self, addr):
        self.protocol_made.factory = self
        return self.protocol_made


class LaneServer:
    """Listens for lanes; each joins with a one-time token.

    :meth:`offer` hands out ``(port, token, tls_always)`` bound to
    ``on_join(protocol)``, which is called when the token comes back and
    returns the object whose ``remote_*`` methods that lane may call (or
    None).  A lane from a peer on loopback runs plain TCP; one from any
    other host runs TLS, the port presenting the certificate of the PEM
    file ``cert_file`` (the role's Foolscap certificate: the joining side
    checks its tub id, see :mod:`ipkernel.transport.tls`); ``tls_always``
    encrypts loopback lanes too.  Without ``cert_file`` only loopback
    peers are let in.

    ``max_frame`` is the largest frame a joined lane accepts (None: the
    protocol's own limit); :meth:`offer` can set another one for a lane.
    Frames over it are refused on their header and the lane is closed.
    """

    def __init__(self, reactor=None, max_frame=None, cert_file=None, tls_always=False):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.max_frame = max_frame
        self.cert_file = cert_file
        self.tls_always = tls_always
        if tls_always and cert_file is None:
            raise ValueError("tls_always needs a cert_file to encrypt with")
        self.port = None
        self._listener = None
        self._tokens = {}  # token -> (on_join, expiry, max_frame)
        self._lanes = set()
        self._waiting = {}  # lanes not joined yet, oldest first

    def start(self, port=0, interface="127.0.0.1"):
        """Listen on ``interface`` (``port`` 0: any free one); returns the port number."""
        self._listener = self.reactor.listenTCP(port, _LaneFactory(self), interface=interface)
        self.port = self._listener.getHost().port
        return self.port

    def _protocol(self):
        kwargs = {} if self.max_frame is None else {"max_frame": self.max_frame}
        lane = LaneProtocol(on_hello=self._hello, **kwargs)
        # Connections that have not said HELLO yet cost a socket each: at most
        # MAX_WAITING of them, a new one closes the oldest (a peer with a
        # token says HELLO at once, so only a flood meets the bound).
        while len(self._waiting) >= MAX_WAITING:
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            if oldest.transport is not None:
                oldest.transport.abortConnection()
        self._waiting[lane] = None
        lane.ready.addBoth(self._not_waiting, lane)
        lane.ready.addErrback(lambda _: None)  # a peer that never joined: nothing to tell
        self._lanes.add(lane)
        lane.notifyOnDisconnect(lambda: self._lanes.discard(lane))
        return lane

    def _not_waiting(self, outcome, lane):
        self._waiting.pop(lane, None)
        return outcome

    def stop(self):
        """Stop listening and close every lane; a Deferred."""
        self._tokens.clear()
        for lane in list(self._lanes):
            if lane.transport is not None:
                lane.transport.abortConnection()
        listener, self._listener = self._listener, None
        return defer.maybeDeferred(listener.stopListening) if listener else defer.succeed(None)

    def offer(self, on_join, max_frame=None):
        """``(port, token, tls_always)`` for one peer to join with;
        ``max_frame``: the largest frame that lane accepts (None: the
        server's ``max_frame``)."""
        now = time.monotonic()
        self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
        token = os.urandom(32)
        self._tokens[token] = (on_join, now + TOKEN_TTL, max_frame)
        return (self.port, token, self.tls_always)

    def _hello(self, lane, token):
        entry = None
        for known in list(self._tokens):
            if hmac.compare_digest(known, token):
                entry = self._tokens.pop(known)
        if entry is None or entry[1] < time.monotonic():
            return False
        if entry[2] is not None:
            lane.max_frame = entry[2]
        try:
            lane.local = entry[0](lane)
        except Exception:
            log.failure("a lane could not be attached; refusing it")
            return False
        peer = lane.transport.getPeer()
        log.info("a lane joined from {host}:{port} ({how})",
                 host=tls.host_of(getattr(peer, "host", "?")), port=getattr(peer, "port", "?"),
                 how="TLS" if lane.encrypted else "plain TCP")
        return True


def lane_allowed(host):
    """True when a peer at ``host`` (its Foolscap address) may use a lane:
    whenever the address is known (off this host the lane runs TLS)."""
    return host is not None


def connect_lane(port, token, local=None, remote_interface=None, reactor=None,
                 timeout=JOIN_TIMEOUT, host="127.0.0.1", tls_always=False, tubid=None):
    """Join the lane at ``host``:``port``; a Deferred firing with the LaneProtocol.

    TLS when :func:`~ipkernel.transport.tls.wants_tls` says so for ``host``
    (always with ``tls_always``); the certificate must then be of the tub
    ``tubid`` (else :class:`~ipkernel.transport.tls.WrongCertificate`, and
    the token is never sent).
    """
    if reactor is None:
        from twisted.internet import reactor
    host = tls.host_of(host)
    encrypt = tls.wants_tls(host, tls_always)
    if encrypt and tubid is None:
        return defer.fail(tls.WrongCertificate(
            f"the lane at {host}:{port} needs TLS, and there is no tub id to check its "
            f"certificate against (connect with a FURL)"))
    make = endpoints.TCP6ClientEndpoint if ":" in host else endpoints.TCP4ClientEndpoint
    endpoint = make(reactor, host, port, timeout=timeout)
    lane = LaneProtocol(local=local, remote_interface=remote_interface, token=token,
                        tubid=tubid if encrypt else None)
    d = endpoint.connect(_OneLane(TLSLayer(tls.stdlib_client_context(), False, lane)
                                  if encrypt else lane))
    d.addCallback(lambda _: lane.ready)

    def timed_out(failure):
        lane.close()
        return failure
    return d.addTimeout(timeout, reactor).addErrback(timed_out)


def join_lane(rref, offer, local=None, remote_interface=None, timeout=JOIN_TIMEOUT,
              tubid=None):
    """Join the lane offered as ``(port, token, tls_always)`` over the
    Foolscap connection of ``rref``, at the address that connection reached
    (TLS off loopback, the certificate checked against ``tubid``: the
    FURL's tub id).

    A Deferred firing with the joined LaneProtocol, which closes with that
    connection, or with None: no lane was offered (port 0), or joining
    failed (logged; the calls then go through Foolscap).
    """
    port, token, tls_always = offer_parts(offer)
    if not port:
        return defer.succeed(None)
    host = tls.host_of(getattr(rref.getPeer(), "host", None) or "127.0.0.1")
    encrypted = tls.wants_tls(host, tls_always)
    how = "TLS" if encrypted else "plain TCP"

    def joined(lane):
        rref.notifyOnDisconnect(lane.close)
        log.info("joined the controller's lane at {host}:{port} ({how})", host=host, port=port,
                 how=how)
        return lane

    def failed(failure):
        log.warn("could not join the controller's lane at {host}:{port} ({how}: {why}); calls "
                 "go through Foolscap (slower)", host=host, port=port, how=how,
                 why=failure.getErrorMessage())
        return None
    d = connect_lane(port, token, local=local, remote_interface=remote_interface,
                     timeout=timeout, host=host, tls_always=tls_always, tubid=tubid)
    return d.addCallbacks(joined, failed)


def offer_parts(offer):
    """``(port, token, tls_always)`` of a lane offer; one of two items
    (from a controller of before TLS lanes) means ``tls_always`` False."""
    offer = tuple(offer)
    if len(offer) == 2:
        return offer[0], offer[1], False
    port, token, tls_always = offer
    return port, token, bool(tls_always)


class OffersLane:
    """Mixin for a Referenceable that clients may also call on a lane.

    ``lane_server`` (a :class:`LaneServer`, or None for no lanes) is set by
    whoever publishes the object.
    """

    lane_server = None

    def remote_open_lane(self):
        server = self.lane_server
        if server is None or server.port is None:
            return (0, b"", False)
        return server.offer(lambda lane: self)
