"""One Link per peer: which carrier takes each call, decided in one place.

A :class:`Link` holds what a client has of one peer (the controller's
multi-engine or task object): its Foolscap RemoteReference, its lane once
joined (:mod:`ipkernel.lane`) and its data-channel peer once joined
(:mod:`ipkernel.datachannel`).  A :class:`CarrierPolicy` decides, once per
call and from the arguments already serialized, which carrier takes it:

* the parts of a value at least ``bulk_threshold`` bytes serialized go on
  the data channel (when it is joined); the call carries references to them;
* the call goes on the lane when one is joined and the method is not one of
  the link's ``foolscap_only`` (those whose answers are references, or that
  set the lane and the data channel up); a lane refuses, before sending
  anything, a call whose raw buffers are ``lane_limit`` bytes or more, which
  then goes through Foolscap;
* otherwise Foolscap carries it.

Bulk data of an answer is fetched on the data channel when it is up, else
through Foolscap (``fetch_blob``).

The Link talks to the lane and the data peer only through their public
calls (``callRemote``, ``joined``/``closed``, ``close``; ``connected``,
``fetch``, ``send_blob``), so the engine connector (its link to the
controller) and the controller's registrar (its link to each engine) can
hold one too.
"""
from twisted.internet import defer
from twisted.python.failure import Failure

from ipkernel.datachannel import refs

#: The carriers a :class:`CarrierPolicy` chooses between.
FOOLSCAP, LANE, DATA_CHANNEL = "foolscap", "lane", "data channel"

__all__ = ["Link", "CarrierPolicy", "DEFAULT_POLICY", "FOOLSCAP", "LANE", "DATA_CHANNEL"]


class CarrierPolicy:
    """Which carrier takes a call, and which of its parts go on the data channel.

    ``bulk_threshold``: a Serialized this big (bytes) goes on the data
    channel (default :data:`ipkernel.datachannel.refs.THRESHOLD`);
    ``lane_limit``: raw buffers of a lane call this big send it through
    Foolscap instead (default ``bulk_threshold``: what is left once the bulk
    data is off the call).
    """

    def __init__(self, bulk_threshold=refs.THRESHOLD, lane_limit=None):
        for name, value in (("bulk_threshold", bulk_threshold), ("lane_limit", lane_limit)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value <= 0):
                raise ValueError(f"CarrierPolicy {name} must be a positive number of bytes, "
                                 f"not {value!r}")
        self.bulk_threshold = bulk_threshold
        self.lane_limit = bulk_threshold if lane_limit is None else lane_limit

    def __repr__(self):
        return (f"<CarrierPolicy bulk_threshold={self.bulk_threshold} "
                f"lane_limit={self.lane_limit}>")

    def sends_bulk(self, data, value):
        """True when parts of ``value`` (Serialized, or lists/tuples/dicts of
        them) go on the data channel ``data`` (a peer, or None)."""
        return (data is not None and data.connected
                and refs.has_large(value, self.bulk_threshold))

    def carrier(self, link, method):
        """:data:`LANE` or :data:`FOOLSCAP`: what takes ``method`` on ``link``."""
        if method in link.foolscap_only or not link.lane_joined:
            return FOOLSCAP
        return LANE

    def fetch_carrier(self, data):
        """What brings the bulk data of an answer: :data:`DATA_CHANNEL` or :data:`FOOLSCAP`."""
        return DATA_CHANNEL if data is not None and data.connected else FOOLSCAP


#: The policy of links made without one.
DEFAULT_POLICY = CarrierPolicy()


def _too_large(d):
    """True when the lane refused the call at once as too large (nothing sent)."""
    if not d.called:  # (the usual case: the call was sent)
        return False
    from ipkernel.lane.protocol import FrameTooLarge

    return isinstance(d.result, Failure) and d.result.check(FrameTooLarge) is not None


class Link:
    """What one side holds of one peer: ``rref`` (its Foolscap
    RemoteReference), ``lane`` (joined, or None), ``data`` (a data-channel
    peer, or None), and the ``policy`` that chooses among them.

    Anything else (``notifyOnDisconnect``, ``getPeer``, ``isConnected``) is
    the RemoteReference's.
    """

    def __init__(self, rref, lane=None, data=None, policy=None, foolscap_only=()):
        self.rref = rref
        self.lane = lane
        self.data = data
        self.policy = DEFAULT_POLICY if policy is None else policy
        self.foolscap_only = frozenset(foolscap_only)

    def __repr__(self):
        return (f"<Link lane={'joined' if self.lane_joined else 'none'} "
                f"data={'joined' if self.data is not None else 'none'}>")

    @property
    def lane_joined(self):
        """True while the lane can take calls."""
        lane = self.lane
        if lane is None:
            return False
        joined = getattr(lane, "joined", None)
        return bool(joined) if joined is not None else not lane.closed

    def carrier(self, method):
        """The carrier the policy picks for ``method`` now."""
        return self.policy.carrier(self, method)

    def callRemote(self, method, *args, **kwargs):
        """Call ``method`` on the carrier the policy picks; a Deferred."""
        if self.carrier(method) == LANE:
            d = self.lane.callRemote(method, *args, **kwargs)
            if not _too_large(d):
                return d
            d.addErrback(lambda _: None)  # nothing was sent: Foolscap takes it
        return self.rref.callRemote(method, *args, **kwargs)

    def sends_bulk(self, value):
        """True when parts of ``value`` go on this link's data channel."""
        return self.policy.sends_bulk(self.data, value)

    def offloaded(self, value, route):
        """A Deferred of ``value`` with its bulk parts sent on the data channel
        to ``route`` (engine ids or ``'all'``), once they are sent; ``value``
        itself when nothing goes there."""
        if not self.sends_bulk(value):
            return defer.succeed(value)
        value, sends = refs.offload(value, self.data, route, self.policy.bulk_threshold)
        return refs.send(self.data, route, sends).addCallback(lambda _: value)

    def fetch(self, blob_id, pushed=False):
        """A Deferred of blob ``blob_id`` from the data channel (``pushed``: the
        peer sends it unasked), or None when it must be asked for through
        Foolscap (the caller knows how to report that call's failure)."""
        if self.policy.fetch_carrier(self.data) != DATA_CHANNEL:
            return None
        return self.data.fetch(blob_id, refs.WAIT, ask=not pushed)

    def close_lane(self):
        """Close the lane; later calls go through Foolscap."""
        lane, self.lane = self.lane, None
        if lane is not None:
            lane.close()

    def close(self):
        """Close the data channel and the lane (the Foolscap connection
        belongs to the Tub)."""
        data, self.data = self.data, None
        if data is not None:
            data.close()
        self.close_lane()

    def __getattr__(self, name):
        if name in ("rref", "lane", "data", "policy", "foolscap_only"):
            raise AttributeError(name)  # (not set yet: no recursion through rref)
        return getattr(self.rref, name)
