"""The data channel: bulk data beside Foolscap, at socket speed.

Foolscap moves a few tens of MB/s in Python; large values (numpy arrays,
big pickles) instead travel on a socket of their own to the controller's
data port (plain on loopback; between hosts TLS authenticates and sealed
records carry the bytes), authenticated by a token handed out over
Foolscap, while the Foolscap call carries a small reference
(:mod:`~ipkernel.datachannel.refs`).
The controller streams pushed data through to engines without keeping it,
and keeps an engine's large result only until its client fetches it.
"""
from ipkernel.datachannel.blobs import BlobMissing, BlobStore
from ipkernel.datachannel.peer import DataChannelPeer
from ipkernel.transport.tls import tubid_of_der
from ipkernel.datachannel.refs import THRESHOLD, is_ref, offload, resolve
from ipkernel.datachannel.server import DataChannelServer

__all__ = ["BlobMissing", "BlobStore", "DataChannelPeer", "DataChannelServer", "THRESHOLD",
           "is_ref", "offload", "resolve", "tubid_of_der"]
