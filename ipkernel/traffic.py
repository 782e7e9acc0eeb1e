"""Byte counters of the carriers of this process, for the dashboard's rates.

A :class:`Traffic` is two integers added to as bytes pass: a lane adds each
frame it sends and each chunk it reads; the data channel server each bulk
transfer.  Nothing else is kept, so counting costs two additions a message.
Counts from the data channel's threads may race (an addition now and then
lost); they feed a rate shown to people, not accounting.
"""

__all__ = ["Traffic", "LANES", "DATA_CHANNEL"]


class Traffic:
    """Bytes received (``bytes_in``) and sent (``bytes_out``) so far."""

    __slots__ = ("bytes_in", "bytes_out")

    def __init__(self):
        self.bytes_in = 0
        self.bytes_out = 0

    def __repr__(self):
        return f"<Traffic in={self.bytes_in} out={self.bytes_out}>"


#: Every lane of this process (both ends: a controller's lanes to clients and engines).
LANES = Traffic()
#: The data channel server of this process (a controller's).
DATA_CHANNEL = Traffic()
