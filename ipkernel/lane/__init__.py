"""Lanes: small calls beside Foolscap, at the speed of a plain socket.

Foolscap costs a few tenths of a millisecond of CPU per message in every
process a message crosses (token handling, TLS in Python, Deferred chains):
most of a small call's time.  A lane carries the same calls (the same
RemoteInterfaces, the same argument checks, the same results and errors)
as length-prefixed frames of JSON text and raw buffers over a TCP socket.
Engines and clients join the controller's lane port for their role (on
the address its Foolscap port listens on) with a one-time token handed out
over their Foolscap connection.  On loopback a lane is plain TCP; to and
from other hosts it runs TLS, the port presenting the role's Foolscap
certificate, which the joining side checks against the FURL's tub id
before it sends its token (see :mod:`ipkernel.transport.tls`).  The
controller's heartbeat pings to an engine go on its lane like every other
call.  Foolscap stays for registration, references, and as the fallback
whenever a lane is not open.
"""
from ipkernel.lane.codec import CodecError
from ipkernel.lane.protocol import LaneError, LaneProtocol
from ipkernel.lane.server import LaneServer, OffersLane, connect_lane, join_lane, lane_allowed

__all__ = ["CodecError", "LaneError", "LaneProtocol", "LaneServer",
           "OffersLane", "connect_lane", "join_lane", "lane_allowed"]
