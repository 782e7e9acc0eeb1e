"""The controller's lane ports, and how engines and clients join them."""
import hmac
import os
import sys
import time

from twisted.internet import defer
from twisted.internet.address import UNIXAddress
from twisted.internet.protocol import ClientFactory, Factory
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


class _LocalLaneFactory(Factory):
    """Builds the accepting side of each lane on the Unix socket: plain (only
    processes of this host, in its network namespace, can reach it)."""

    noisy = False

    def __init__(self, server):
        self.server = server

    def buildProtocol(self, addr):
        return self.server._protocol()


class _OneLane(ClientFactory):
    """Builds the one joining side of a lane being connected (the lane, or
    the TLS layer under it), and fails the lane's ``ready`` when the
    connection cannot be made."""

    noisy = False

    def __init__(self, protocol, lane):
        self.protocol_made = protocol
        self.lane = lane

    def buildProtocol(self, addr):
        self.protocol_made.factory = self
        return self.protocol_made

    def clientConnectionFailed(self, connector, reason):
        if not self.lane.ready.called:
            self.lane.ready.errback(reason)


def local_sockets_usable():
    """True where lanes may run on a Unix socket: Linux, whose abstract
    socket names belong to a network namespace as loopback addresses do
    and leave no file behind."""
    return sys.platform.startswith("linux")


def local_address(name):
    """The socket address of the abstract Unix socket an offer names
    (``@name``, as ``ss`` writes it)."""
    return "\0" + name[1:]


class LaneServer:
    """Listens for lanes; each joins with a one-time token.

    :meth:`offer` hands out ``(port, token, tls_always, local_path)`` bound to
    ``on_join(protocol)``, which is called when the token comes back and
    returns the object whose ``remote_*`` methods that lane may call (or
    None).  A lane from a peer on loopback runs plain TCP; one from any
    other host runs TLS, the port presenting the certificate of the PEM
    file ``cert_file`` (the role's Foolscap certificate: the joining side
    checks its tub id, see :mod:`ipkernel.transport.tls`); ``tls_always``
    encrypts loopback lanes too.  Without ``cert_file`` only loopback
    peers are let in.

    Started with ``local=True`` (and without ``tls_always``) it also
    listens on an abstract Unix socket of a random name, which the offer
    carries as ``local_path`` (``@name``; '' without one): a peer that
    reached the port on loopback joins there instead, with the same token
    (a call then costs the kernel less than on loopback TCP).  Like a
    loopback port, any process in this network namespace can reach it, and
    nothing gets in without a token.

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
        #: The abstract Unix socket lanes may join on (``@name``; '' when there is none).
        self.local_path = ""
        self._listener = None
        self._local_listener = None
        self._tokens = {}  # token -> (on_join, expiry, max_frame)
        self._lanes = set()
        self._waiting = {}  # lanes not joined yet, oldest first

    def start(self, port=0, interface="127.0.0.1", local=False):
        """Listen on ``interface`` (``port`` 0: any free one), and with
        ``local`` on a Unix socket too (see the class doc); returns the port
        number."""
        self._listener = self.reactor.listenTCP(port, _LaneFactory(self), interface=interface)
        self.port = self._listener.getHost().port
        if local and not self.tls_always and local_sockets_usable():
            name = f"@ipkernel-lane-{os.urandom(12).hex()}"
            try:
                self._local_listener = self.reactor.listenUNIX(local_address(name),
                                                               _LocalLaneFactory(self))
            except Exception:  # noqa: B902 - loopback TCP still serves
                log.failure("cannot listen on a Unix socket for lanes; peers on this host "
                            "join on loopback TCP")
            else:
                self.local_path = name
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
        listeners = [self._listener, self._local_listener]
        self._listener = self._local_listener = None
        self.local_path = ""
        d = defer.gatherResults([defer.maybeDeferred(listener.stopListening)
                                 for listener in listeners if listener is not None])
        return d.addCallback(lambda _: None)

    def offer(self, on_join, max_frame=None):
        """``(port, token, tls_always, local_path)`` for one peer to join
        with; ``max_frame``: the largest frame that lane accepts (None: the
        server's ``max_frame``)."""
        now = time.monotonic()
        self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
        token = os.urandom(32)
        self._tokens[token] = (on_join, now + TOKEN_TTL, max_frame)
        return (self.port, token, self.tls_always, self.local_path)

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
        if isinstance(peer, UNIXAddress):
            log.info("a lane joined on its Unix socket (this host)")
        else:
            log.info("a lane joined from {host}:{port} ({how})",
                     host=tls.host_of(getattr(peer, "host", "?")),
                     port=getattr(peer, "port", "?"),
                     how="TLS" if lane.encrypted else "plain TCP")
        return True


def lane_allowed(host):
    """True when a peer at ``host`` (its Foolscap address) may use a lane:
    whenever the address is known (off this host the lane runs TLS)."""
    return host is not None


def connect_lane(port, token, local=None, remote_interface=None, reactor=None,
                 timeout=JOIN_TIMEOUT, host="127.0.0.1", tls_always=False, tubid=None,
                 local_path=""):
    """Join the lane at ``host``:``port``; a Deferred firing with the LaneProtocol.

    TLS when :func:`~ipkernel.transport.tls.wants_tls` says so for ``host``
    (always with ``tls_always``); the certificate must then be of the tub
    ``tubid`` (else :class:`~ipkernel.transport.tls.WrongCertificate`, and
    the token is never sent).  A plain lane to loopback joins on the
    abstract Unix socket ``local_path`` (``@name``) when one is given and
    can be reached, and on loopback TCP when not.
    """
    if reactor is None:
        from twisted.internet import reactor
    host = tls.host_of(host)
    encrypt = tls.wants_tls(host, tls_always)
    if encrypt and tubid is None:
        return defer.fail(tls.WrongCertificate(
            f"the lane at {host}:{port} needs TLS, and there is no tub id to check its "
            f"certificate against (connect with a FURL)"))
    if local_path.startswith("@") and not encrypt and local_sockets_usable():
        d = _connect(reactor, timeout, local, remote_interface, token, None,
                     local_address(local_path))

        def by_tcp(failure):
            if failure.check(tls.WrongCertificate):
                return failure
            log.info("could not join the lane on its Unix socket ({why}); joining on "
                     "loopback TCP", why=failure.getErrorMessage())
            return _connect(reactor, timeout, local, remote_interface, token, None, None,
                            host, port)
        return d.addErrback(by_tcp)
    return _connect(reactor, timeout, local, remote_interface, token,
                    tubid if encrypt else None, None, host, port)


def _connect(reactor, timeout, local, remote_interface, token, tubid, path, host=None,
             port=None):
    """One try of :func:`connect_lane`: on the Unix socket address ``path``, or to
    ``host``:``port`` (TLS when ``tubid`` is given)."""
    lane = LaneProtocol(local=local, remote_interface=remote_interface, token=token,
                        tubid=tubid)
    top = lane if tubid is None else TLSLayer(tls.stdlib_client_context(), False, lane)
    factory = _OneLane(top, lane)
    if path is not None:
        connector = reactor.connectUNIX(path, factory, timeout=timeout)
    else:
        connector = reactor.connectTCP(host, port, factory, timeout=timeout)  # (IPv6 too)

    def timed_out(failure):
        connector.disconnect()  # stops trying, or closes what was connected
        return failure
    return lane.ready.addTimeout(timeout, reactor).addErrback(timed_out)


def join_lane(rref, offer, local=None, remote_interface=None, timeout=JOIN_TIMEOUT,
              tubid=None):
    """Join the lane offered as ``(port, token, tls_always, local_path)``
    over the Foolscap connection of ``rref``, at the address that connection
    reached (TLS off loopback, the certificate checked against ``tubid``: the
    FURL's tub id; on the Unix socket ``local_path``, when there is one, on
    loopback).

    A Deferred firing with the joined LaneProtocol, which closes with that
    connection, or with None: no lane was offered (port 0), or joining
    failed (logged; the calls then go through Foolscap).
    """
    port, token, tls_always, local_path = offer_parts(offer)
    if not port:
        return defer.succeed(None)
    host = tls.host_of(getattr(rref.getPeer(), "host", None) or "127.0.0.1")
    encrypted = tls.wants_tls(host, tls_always)
    how = "TLS" if encrypted else "plain TCP"

    def joined(lane):
        rref.notifyOnDisconnect(lane.close)
        if lane.on_local_socket:
            log.info("joined the controller's lane on its Unix socket")
        else:
            log.info("joined the controller's lane at {host}:{port} ({how})", host=host,
                     port=port, how=how)
        return lane

    def failed(failure):
        log.warn("could not join the controller's lane at {host}:{port} ({how}: {why}); calls "
                 "go through Foolscap (slower)", host=host, port=port, how=how,
                 why=failure.getErrorMessage())
        return None
    d = connect_lane(port, token, local=local, remote_interface=remote_interface,
                     timeout=timeout, host=host, tls_always=tls_always, tubid=tubid,
                     local_path=local_path)
    return d.addCallbacks(joined, failed)


def offer_parts(offer):
    """``(port, token, tls_always, local_path)`` of a lane offer; an offer of
    two or three items (from a controller of before TLS lanes, or before
    lanes on Unix sockets) has ``tls_always`` False and no ``local_path``."""
    offer = tuple(offer)
    if len(offer) == 2:
        return offer[0], offer[1], False, ""
    if len(offer) == 3:
        port, token, tls_always = offer
        return port, token, bool(tls_always), ""
    port, token, tls_always, local_path = offer
    return port, token, bool(tls_always), str(local_path or "")


class OffersLane:
    """Mixin for a Referenceable that clients may also call on a lane.

    ``lane_server`` (a :class:`LaneServer`, or None for no lanes) is set by
    whoever publishes the object.
    """

    lane_server = None

    def remote_open_lane(self):
        server = self.lane_server
        if server is None or server.port is None:
            return (0, b"", False, "")
        return server.offer(lambda lane: self)
