"""The controller's lane port, and how engines and clients join it."""
import hmac
import os
import time

from twisted.internet import defer, endpoints
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ipkernel.datachannel.frames import is_loopback
from ipkernel.lane.protocol import LaneProtocol

log = Logger()

#: Seconds a token handed out over Foolscap stays good.
TOKEN_TTL = 120.0
#: Seconds allowed to connect and be welcomed.
JOIN_TIMEOUT = 10.0
#: Connections that may wait to say HELLO at once (the oldest goes first).
MAX_WAITING = 64


class LaneServer:
    """Listens on loopback for lanes; each joins with a one-time token.

    :meth:`offer` hands out ``(port, token)`` bound to ``on_join(protocol)``,
    which is called when the token comes back and returns the object whose
    ``remote_*`` methods that lane may call (or None).  Lanes run plain TCP
    and only on this host: a peer elsewhere keeps using Foolscap, whose TLS
    protects it (see :func:`lane_allowed`).

    ``max_frame`` is the largest frame a joined lane accepts (None: the
    protocol's own limit); :meth:`offer` can set another one for a lane.
    Frames over it are refused on their header and the lane is closed.
    """

    def __init__(self, reactor=None, max_frame=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.max_frame = max_frame
        self.port = None
        self._listener = None
        self._tokens = {}  # token -> (on_join, expiry, max_frame)
        self._lanes = set()
        self._waiting = {}  # lanes not joined yet, oldest first

    def start(self, port=0):
        """Listen on 127.0.0.1 (``port`` 0: any free one); returns the port number."""
        factory = Factory.forProtocol(self._protocol)
        self._listener = self.reactor.listenTCP(port, factory, interface="127.0.0.1")
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
        """``(port, token)`` for one peer to join with; ``max_frame``: the
        largest frame that lane accepts (None: the server's ``max_frame``)."""
        now = time.monotonic()
        self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
        token = os.urandom(32)
        self._tokens[token] = (on_join, now + TOKEN_TTL, max_frame)
        return (self.port, token)

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
        return True


def lane_allowed(host):
    """True when a peer at ``host`` (its Foolscap address) may use a lane."""
    return host is not None and is_loopback(host)


def connect_lane(port, token, local=None, remote_interface=None, reactor=None,
                 timeout=JOIN_TIMEOUT):
    """Join the lane at 127.0.0.1:``port``; a Deferred firing with the LaneProtocol."""
    if reactor is None:
        from twisted.internet import reactor
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=timeout)
    lane = LaneProtocol(local=local, remote_interface=remote_interface, token=token)
    d = endpoints.connectProtocol(endpoint, lane)
    d.addCallback(lambda _: lane.ready)

    def timed_out(failure):
        lane.close()
        return failure
    return d.addTimeout(timeout, reactor).addErrback(timed_out)


def join_lane(rref, port, token, local=None, remote_interface=None, timeout=JOIN_TIMEOUT):
    """Join the lane offered as ``(port, token)`` over the Foolscap connection
    of ``rref`` (whose peer :func:`lane_allowed`: the caller checks).

    A Deferred firing with the joined LaneProtocol, which closes with that
    connection, or with None: no lane was offered (port 0), or joining
    failed (logged; the calls then go through Foolscap).
    """
    if not port:
        return defer.succeed(None)

    def joined(lane):
        rref.notifyOnDisconnect(lane.close)
        log.info("joined the controller's lane on port {port}", port=port)
        return lane

    def failed(failure):
        log.warn("could not join the controller's lane on port {port} ({why}); calls go "
                 "through Foolscap (slower)", port=port, why=failure.getErrorMessage())
        return None
    d = connect_lane(port, token, local=local, remote_interface=remote_interface,
                     timeout=timeout)
    return d.addCallbacks(joined, failed)


class OffersLane:
    """Mixin for a Referenceable that clients may also call on a lane.

    ``lane_server`` (a :class:`LaneServer`, or None for no lanes) is set by
    whoever publishes the object.
    """

    lane_server = None

    def remote_open_lane(self):
        server = self.lane_server
        if server is None or server.port is None:
            return (0, b"")
        return server.offer(lambda lane: self)
