"""Deferred-based clients, for programs that run the Twisted reactor themselves.

``get_multiengine_client(furl_or_file=None)`` returns a Deferred firing with
an :class:`~ipkernel.interfaces.multiengine.IFullSynchronousMultiEngine`
(a :class:`~ipkernel.client.fcmultiengine.FCFullSynchronousMultiEngineClient`)
connected to a controller.  Without
an argument the FURL file ``ipcontroller-mec.furl`` of the default cluster
directory (``$IPKERNEL_DIR`` or ``~/.ipkernel``) is used.
"""
from twisted.internet import defer
from twisted.logger import Logger

from ipkernel import fcutil
from ipkernel.client.connect import DEFAULT_TIMEOUT, default_furl_file, get_reference
from ipkernel.client.fcmultiengine import FCFullSynchronousMultiEngineClient
from ipkernel.client.fctask import FCTaskClient
from ipkernel.clusterdir import TASK_FURL
from ipkernel.datachannel import DataChannelPeer
from ipkernel.error import CompositeError, ControllerError
from ipkernel.interfaces.remote import RIMultiEngine, RITaskController
from ipkernel.lane import LaneReference, join_lane, lane_allowed

log = Logger()

__all__ = ["get_multiengine_client", "get_task_client", "FCTaskClient", "FCFullSynchronousMultiEngineClient", "CompositeError"]


async def _checked_reference(furl_or_file, default_file, tub, timeout, client_class, kind,
                             wrong_furl_hint):
    """Connect and make sure the FURL leads to ``client_class``'s kind of object."""
    from twisted.internet import reactor

    furl, rref = await get_reference(furl_or_file or default_file, tub, timeout)
    where = _where(furl_or_file, furl)
    try:
        name = await rref.callRemote("get_client_name").addTimeout(timeout, reactor)
    except Exception as exc:
        raise ControllerError(
            f"{where} does not lead to a {kind} (it does not answer "
            f"get_client_name: {type(exc).__name__}); {wrong_furl_hint}") from None
    if name != client_class.client_name:
        raise ControllerError(f"{where} is not a {kind} (it offers {name!r})")
    return furl, rref


async def _multiengine_client(furl_or_file, tub, timeout):
    from twisted.internet import reactor

    furl, rref = await _checked_reference(
        furl_or_file, default_furl_file(), tub, timeout, FCFullSynchronousMultiEngineClient,
        "multi-engine controller",
        "is it the engine FURL (ipcontroller-engine.furl) instead of ipcontroller-mec.furl?")
    # A session of our own: our non-blocking results are private to us.
    session = await rref.callRemote("open_session").addTimeout(timeout, reactor)
    reference = await _with_lane(session, RIMultiEngine, timeout)
    client = FCFullSynchronousMultiEngineClient(reference, furl=furl)
    client.data = await _join_data_channel(session, furl, timeout)
    return client


#: Calls that always go through Foolscap (their answers are references, or
#: they set up the lane and the data channel).
FOOLSCAP_ONLY = ("open_session", "open_lane", "open_data_channel", "get_client_name")


async def _with_lane(rref, remote_interface, timeout):
    """``rref`` as a LaneReference, its calls on a lane when this host allows one."""
    from twisted.internet import reactor

    reference = LaneReference(rref, foolscap_only=FOOLSCAP_ONLY)
    if not lane_allowed(getattr(rref.getPeer(), "host", None)):
        return reference  # another host: Foolscap (TLS) carries the calls
    try:
        port, token = await rref.callRemote("open_lane").addTimeout(timeout, reactor)
    except Exception as exc:
        log.warn("the controller gave no lane ({why}); calls go through Foolscap (slower)",
                 why=exc)
        return reference
    reference.lane = await join_lane(rref, port, token, remote_interface=remote_interface,
                                     timeout=timeout)
    return reference


async def _join_data_channel(session, furl, timeout):
    """The session's DataChannelPeer, or None (then bulk data goes through Foolscap)."""
    from twisted.internet import reactor

    offer = await session.callRemote("open_data_channel").addTimeout(timeout, reactor)
    port, token, tls_always = offer
    if not port:
        return None
    host = getattr(session.getPeer(), "host", "127.0.0.1")
    peer = DataChannelPeer(host, port, token, fcutil.tubid_of_furl(furl), tls_always)
    try:
        return await peer.connect().addTimeout(timeout, reactor)
    except Exception as exc:
        log.warn("could not join the controller's data channel at {host}:{port} ({why}); "
                 "bulk data goes through Foolscap (slower)", host=host, port=port, why=exc)
        return None


def _where(furl_or_file, furl):
    if furl_or_file is not None and not str(furl_or_file).startswith("pb://"):
        return f"the FURL file {furl_or_file}"
    return f"the FURL {furl}"


def get_multiengine_client(furl_or_file=None, tub=None, timeout=DEFAULT_TIMEOUT):
    """Connect to a controller's multi-engine interface; see the module doc."""
    return defer.Deferred.fromCoroutine(_multiengine_client(furl_or_file, tub, timeout))


async def _task_client(furl_or_file, tub, timeout):
    furl, rref = await _checked_reference(
        furl_or_file, default_furl_file(TASK_FURL), tub, timeout, FCTaskClient,
        "task controller", "use ipcontroller-tc.furl")
    return FCTaskClient(await _with_lane(rref, RITaskController, timeout), furl=furl)


def get_task_client(furl_or_file=None, tub=None, timeout=DEFAULT_TIMEOUT):
    """Connect to a controller's task farm: a Deferred firing with an
    :class:`~ipkernel.client.fctask.FCTaskClient`.  Without an argument the FURL file
    ``ipcontroller-tc.furl`` of the default cluster directory is used."""
    return defer.Deferred.fromCoroutine(_task_client(furl_or_file, tub, timeout))
