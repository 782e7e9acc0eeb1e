"""A RemoteReference whose calls take the lane while it is open."""
from twisted.python.failure import Failure

from ipkernel.lane.protocol import FrameTooLarge


class LaneReference:
    """Wraps a Foolscap RemoteReference ``rref``: :meth:`callRemote` goes on
    ``lane`` (a LaneProtocol) while it is joined, else through Foolscap.

    Methods in ``foolscap_only`` (those whose answers are references, or
    that set the lane up) always go through Foolscap.  Everything else
    (``notifyOnDisconnect``, ``getPeer``, ...) is the RemoteReference's.
    """

    def __init__(self, rref, lane=None, foolscap_only=()):
        self.rref = rref
        self.lane = lane
        self.foolscap_only = frozenset(foolscap_only)

    def callRemote(self, method, *args, **kwargs):
        """Call ``method`` on the lane while it is joined (unless the method is
        in ``foolscap_only``), else through Foolscap; a Deferred.  A call too
        large for the lane (:class:`~ipkernel.lane.protocol.FrameTooLarge`)
        goes through Foolscap too."""
        lane = self.lane
        if lane is not None and lane.joined and method not in self.foolscap_only:
            d = lane.callRemote(method, *args, **kwargs)
            if not (d.called and isinstance(d.result, Failure) and d.result.check(FrameTooLarge)):
                return d
            d.addErrback(lambda _: None)  # nothing was sent: too big for a lane
        return self.rref.callRemote(method, *args, **kwargs)

    def close_lane(self):
        """Close the lane; later calls go through Foolscap."""
        lane, self.lane = self.lane, None
        if lane is not None:
            lane.close()

    def __getattr__(self, name):
        return getattr(self.rref, name)
