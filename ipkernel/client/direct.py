"""Blocking calls made in the calling thread, on a lane of their own.

:class:`~ipkernel.client.blocking.MultiEngineClient` normally runs every
call in the reactor thread and waits for it there.  For the calls that
only talk to the controller (no references to keep, no bulk data to send)
a :class:`DirectCalls` runs the same Deferred-based client code in the
calling thread instead, over a :class:`~ipkernel.lane.blocking.BlockingLane`:
its Deferreds have all fired by the time the code returns, so the result
is there at once.  What the direct path cannot do is handed back, before
anything was sent, to the reactor path (:data:`NOT_DIRECT`):

* a second thread calling while the lane is busy;
* no lane (``ipcontroller --no-lane``, or the reactor's lane could not be
  joined) or a lane that broke;
* arguments that are still too large for the lane once their bulk data is
  off it (many medium values, or no data channel).

Bulk data goes on the data channel of the client that owns this object,
sent by its reactor thread and a pool thread, as on the reactor path: the
arguments are serialized once, here, and the call itself then goes on the
lane.  Bulk data in an answer is fetched the same way.
"""
import threading

from twisted.internet import defer
from twisted.python.failure import Failure

from ipkernel import fcutil
from ipkernel.client.fcmultiengine import FCFullSynchronousMultiEngineClient
from ipkernel.client.reactor import call_timeout
from ipkernel.error import KernelError
from ipkernel.interfaces import multienginewire
from ipkernel.interfaces.remote import RIMultiEngine
from ipkernel.lane.blocking import BlockingLane, LaneTimeout, TooLargeForLane
from ipkernel.lane.server import offer_parts

#: Returned by :meth:`DirectCalls.call` when the call must take the reactor path.
NOT_DIRECT = object()

#: The client methods that may take the direct path (with ``block=True``):
#: those multienginewire marks ``direct``, and zip_pull (a pull, transposed).
DIRECT_METHODS = frozenset(
    {call.name for call in multienginewire.MULTIENGINE_CALLS if call.direct} | {"zip_pull"})

#: Seconds joining the direct lane may take.
JOIN_TIMEOUT = 10.0


class _HandBack(KernelError):
    """Raised inside the direct path before sending: take the reactor path."""


class _LaneCalls:
    """The ``remote`` of the direct path's client: calls on the blocking lane.

    ``timeout`` and ``what`` are those of the call being made (one at a
    time: the caller holds the lane); ``interrupted`` keeps a Ctrl-C that
    arrived meanwhile, to be raised once out of the Deferreds.
    """

    def __init__(self, lane, policy):
        self.lane = lane
        self.policy = policy
        self.timeout = None
        self.what = None
        self.interrupted = None

    def callRemote(self, method, *args, **kwargs):
        return self.outcome(lambda: self.lane.call(method, args, kwargs, timeout=self.timeout,
                                                   max_buffers=self.policy.lane_limit))

    def outcome(self, func):
        """A fired Deferred of ``func()``, its exceptions translated."""
        try:
            return defer.succeed(func())
        except TooLargeForLane:
            return defer.fail(_HandBack())
        except LaneTimeout:
            return defer.fail(call_timeout(self.what, self.timeout))
        except Exception:
            return defer.fail()
        except BaseException as exc:  # Ctrl-C: raised again once out of the Deferreds
            self.interrupted = exc
            return defer.fail(_HandBack())


class _DirectClient(FCFullSynchronousMultiEngineClient):
    """The async client's code run in the calling thread over a :class:`_LaneCalls`;
    the bulk data of an answer is fetched by ``owner`` (the client with the
    data channel) in the reactor thread."""

    def __init__(self, remote, owner, bridge):
        super().__init__(remote, furl=owner.furl)
        self.owner = owner
        self.bridge = bridge
        self.link.policy = owner.link.policy  # the owner's choices, on this lane

    @property
    def data(self):
        """The owner's data channel: bulk arguments are offloaded on it."""
        return self.owner.data

    @data.setter
    def data(self, value):
        pass  # (the base class starts without one; this one always uses the owner's)

    def _in_reactor(self, func, *args):
        """A fired Deferred of ``func(*args)`` run by the owner in the reactor thread."""
        remote = self.remote
        return remote.outcome(lambda: self.bridge.call(
            func, *args, timeout=remote.timeout, what=remote.what))

    def _fetch(self, blob_id, pushed=False):
        return self._in_reactor(self.owner._fetch, blob_id, pushed)

    def _offloaded(self, value, route):
        return self._in_reactor(self.owner._offloaded, value, route)

    def _offloaded_parts(self, parts, ids):
        return self._in_reactor(self.owner._offloaded_parts, parts, ids)


class DirectCalls:
    """The direct path of one async multi-engine client ``owner``.

    ``bridge``: the blocking client's ReactorBridge (for joining the lane
    and for fetching bulk data).  The lane is joined at the first call.
    """

    def __init__(self, owner, bridge):
        self.owner = owner
        self.bridge = bridge
        self._client = None  # the _DirectClient of the lane now joined
        self._gave_up = False
        self._join_lock = threading.Lock()

    @property
    def lane(self):
        """The BlockingLane joined last (None before the first call, or without one)."""
        client = self._client
        return None if client is None else client.remote.lane

    def close(self):
        """Close the lane (any thread); later calls take the reactor path."""
        self._gave_up = True
        client, self._client = self._client, None
        if client is not None:
            client.remote.lane.close()

    def call(self, method, args, kwargs, timeout, what):
        """``owner.method(*args, **kwargs)`` done here; its result, or
        :data:`NOT_DIRECT` when the reactor path must do it."""
        client = self._client
        if client is None or client.remote.lane.closed:  # not joined, broke or timed out
            client = self._join()
        if client is None or not client.remote.lane.acquire():
            return NOT_DIRECT
        remote = client.remote
        try:
            remote.timeout, remote.what, remote.interrupted = timeout, what, None
            outcome = []
            getattr(client, method)(*args, **kwargs).addBoth(outcome.append)
        finally:
            remote.lane.release()
        if remote.interrupted is not None:
            raise remote.interrupted
        if not outcome:  # cannot happen: every Deferred of the path has fired
            raise KernelError(f"{what} did not finish on the direct path")
        if isinstance(outcome[0], Failure):
            if outcome[0].check(_HandBack):
                return NOT_DIRECT
            outcome[0].raiseException()
        return outcome[0]

    def _join(self):
        if self._gave_up or not self._join_lock.acquire(blocking=False):
            return None
        try:
            client = self._client
            if (client is None or client.remote.lane.closed) and not self._gave_up:
                lane = self._open()
                client = None if lane is None else _DirectClient(
                    _LaneCalls(lane, self.owner.link.policy), self.owner, self.bridge)
                self._client, self._gave_up = client, client is None
            return self._client
        finally:
            self._join_lock.release()

    def _open(self):
        if not isinstance(self.owner, FCFullSynchronousMultiEngineClient):
            return None  # a stand-in (tests): only the reactor path
        reference = self.owner.remote
        if getattr(reference, "lane", None) is None or not reference.isConnected():
            return None  # no lane is allowed or offered, or the reactor path must reconnect
        try:
            offer = self.bridge.call(reference.rref.callRemote, "open_lane",
                                     timeout=JOIN_TIMEOUT, what="opening a lane")
            port, token, tls_always, local_path = offer_parts(offer)
            if not port:
                return None
            # the address Foolscap reached, as for the reactor's lane
            host = getattr(reference.rref.getPeer(), "host", None)
            furl = self.owner.furl
            lane = BlockingLane.join(port, token, RIMultiEngine, JOIN_TIMEOUT, host=host,
                                     tls_always=tls_always, local_path=local_path,
                                     tubid=fcutil.tubid_of_furl(furl) if furl else None)
            # the lane belongs to the session: it ends with the Foolscap connection
            self.bridge.call(self._close_with, reference.rref, lane, timeout=JOIN_TIMEOUT,
                             what="opening a lane")
            return lane if not lane.closed else None
        except Exception:  # noqa: B902 - the reactor path still works
            return None

    @staticmethod
    def _close_with(rref, lane):
        rref.notifyOnDisconnect(lane.close)
        if not rref.isConnected():
            lane.close()
