"""Deferred-based clients, for programs that run the Twisted reactor themselves.

``get_multiengine_client(furl_or_file=None)`` returns a Deferred firing with
an :class:`IFullSynchronousMultiEngine` connected to a controller.  Without
an argument the FURL file ``ipcontroller-mec.furl`` of the default cluster
directory (``$IPKERNEL_DIR`` or ``~/.ipkernel``) is used.
"""
from twisted.internet import defer

from ipkernel.client.connect import DEFAULT_TIMEOUT, default_furl_file, get_reference
from ipkernel.client.fcmultiengine import FCFullSynchronousMultiEngineClient
from ipkernel.error import CompositeError, ControllerError

__all__ = ["get_multiengine_client", "FCFullSynchronousMultiEngineClient", "CompositeError"]


async def _multiengine_client(furl_or_file, tub, timeout):
    furl, rref = await get_reference(furl_or_file or default_furl_file(), tub, timeout)
    name = await rref.callRemote("get_client_name")
    if name != FCFullSynchronousMultiEngineClient.client_name:
        raise ControllerError(f"the FURL {furl} is not a multi-engine controller (it offers {name!r})")
    return FCFullSynchronousMultiEngineClient(rref, furl=furl)


def get_multiengine_client(furl_or_file=None, tub=None, timeout=DEFAULT_TIMEOUT):
    """Connect to a controller's multi-engine interface; see the module doc."""
    return defer.Deferred.fromCoroutine(_multiengine_client(furl_or_file, tub, timeout))
