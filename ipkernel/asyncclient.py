"""Deferred-based clients, for programs that run the Twisted reactor themselves.

``get_multiengine_client(furl_or_file=None)`` returns a Deferred firing with
an :class:`~ipkernel.interfaces.multiengine.IFullSynchronousMultiEngine`
(a :class:`~ipkernel.client.fcmultiengine.FCFullSynchronousMultiEngineClient`)
connected to a controller.  Without
an argument the FURL file ``ipcontroller-mec.furl`` of the default cluster
directory (``$IPKERNEL_DIR`` or ``~/.ipkernel``) is used.
``get_task_client`` does the same for the task farm, and
``get_client(furl_or_file)`` connects to whichever of the two the FURL
leads to (as IPython 0.10's ``asyncclient.get_client``).  ``MapTask``,
``StringTask``, ``TaskRejectError`` and ``CompositeError`` are importable
from here too.

Each client's ``adapt_to_blocking_client()`` gives the blocking client over
the same connection, for code that runs in another thread than the reactor.
"""
from foolscap.api import Referenceable
from twisted.internet import defer
from twisted.logger import Logger

from ipkernel import fcutil
from ipkernel.client.connect import DEFAULT_TIMEOUT, default_furl_file, get_reference
from ipkernel.client.fcmultiengine import FCFullSynchronousMultiEngineClient
from ipkernel.client.output import OutputListener
from ipkernel.client.fctask import FCTaskClient
from ipkernel.clusterdir import TASK_FURL
from ipkernel.datachannel import DataChannelPeer
from ipkernel.error import CompositeError, ControllerError, TaskRejectError
from ipkernel.interfaces.remote import RIMultiEngine, RITaskController
from ipkernel.lane import join_lane, lane_allowed
from ipkernel.task.tasks import MapTask, StringTask
from ipkernel.transport.link import Link

log = Logger()

__all__ = ["get_multiengine_client", "get_task_client", "get_client", "FCTaskClient",
           "FCFullSynchronousMultiEngineClient", "MapTask", "StringTask", "TaskRejectError",
           "CompositeError"]


async def _named_reference(furl_or_file, tub, timeout, kind, wrong_furl_hint):
    """Connect; ``(furl, rref, name the object gives with get_client_name)``."""
    from twisted.internet import reactor

    furl, rref = await get_reference(furl_or_file, tub, timeout)
    try:
        name = await rref.callRemote("get_client_name").addTimeout(timeout, reactor)
    except Exception as exc:
        raise ControllerError(
            f"{_where(furl_or_file, furl)} does not lead to a {kind} (it does not answer "
            f"get_client_name: {type(exc).__name__}); {wrong_furl_hint}") from None
    return furl, rref, name


async def _checked_reference(furl_or_file, default_file, tub, timeout, client_class, kind,
                             wrong_furl_hint):
    """Connect and make sure the FURL leads to ``client_class``'s kind of object."""
    furl, rref, name = await _named_reference(furl_or_file or default_file, tub, timeout, kind,
                                              wrong_furl_hint)
    if name != client_class.client_name:
        raise ControllerError(f"{_where(furl_or_file, furl)} is not a {kind} "
                              f"(it offers {name!r})")
    return furl, rref


async def _multiengine_client(furl_or_file, tub, timeout):
    furl, rref = await _checked_reference(
        furl_or_file, default_furl_file(), tub, timeout, FCFullSynchronousMultiEngineClient,
        "multi-engine controller",
        "is it the engine FURL (ipcontroller-engine.furl) instead of ipcontroller-mec.furl?")
    return await _multiengine_over(furl, rref, timeout)


async def _multiengine_over(furl, rref, timeout):
    from twisted.internet import reactor

    # A session of our own: our non-blocking results are private to us.  The
    # canary tells the controller when we are gone, so it drops what it kept
    # for us; it also takes the live output of our calls.
    listener = OutputListener()
    session = await rref.callRemote("open_session", listener).addTimeout(timeout, reactor)
    reference = await _with_lane(session, RIMultiEngine, timeout, furl)
    client = FCFullSynchronousMultiEngineClient(reference, furl=furl)
    client.output = listener
    client.data = await _join_data_channel(session, furl, timeout)
    return client


#: Calls that always go through Foolscap (their answers are references, or
#: they set up the lane and the data channel).
FOOLSCAP_ONLY = ("open_session", "open_lane", "open_data_channel", "get_client_name")


async def _with_lane(rref, remote_interface, timeout, furl):
    """A :class:`~ipkernel.transport.link.Link` to ``rref``, with a lane when
    one can be joined (TLS off this host, the certificate checked against
    ``furl``'s tub id); its policy chooses the carrier of each call."""
    from twisted.internet import reactor

    reference = Link(rref, foolscap_only=FOOLSCAP_ONLY)
    if not lane_allowed(getattr(rref.getPeer(), "host", None)):
        return reference  # no address to dial: Foolscap carries the calls
    try:
        offer = await rref.callRemote("open_lane").addTimeout(timeout, reactor)
    except Exception as exc:
        log.warn("the controller gave no lane ({why}); calls go through Foolscap (slower)",
                 why=exc)
        return reference
    reference.lane = await join_lane(rref, offer, remote_interface=remote_interface,
                                     timeout=timeout, tubid=fcutil.tubid_of_furl(furl))
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
    return f"the FURL {fcutil.redacted_furl(furl)}"   # never its secret name


def get_multiengine_client(furl_or_file=None, tub=None, timeout=DEFAULT_TIMEOUT):
    """Connect to a controller's multi-engine interface; see the module doc."""
    return defer.Deferred.fromCoroutine(_multiengine_client(furl_or_file, tub, timeout))


async def _task_client(furl_or_file, tub, timeout):
    furl, rref = await _checked_reference(
        furl_or_file, default_furl_file(TASK_FURL), tub, timeout, FCTaskClient,
        "task controller", "use ipcontroller-tc.furl")
    return await _task_over(furl, rref, timeout)


class _Canary(Referenceable):
    """Held by the controller for our session: its connection going tells
    the controller this client is gone."""


async def _task_over(furl, rref, timeout):
    from twisted.internet import reactor

    # A session of our own, so the controller (its dashboard) knows this client.
    session = await rref.callRemote("open_session", _Canary()).addTimeout(timeout, reactor)
    return FCTaskClient(await _with_lane(session, RITaskController, timeout, furl), furl=furl)


def get_task_client(furl_or_file=None, tub=None, timeout=DEFAULT_TIMEOUT):
    """Connect to a controller's task farm: a Deferred firing with an
    :class:`~ipkernel.client.fctask.FCTaskClient`.  Without an argument the FURL file
    ``ipcontroller-tc.furl`` of the default cluster directory is used."""
    return defer.Deferred.fromCoroutine(_task_client(furl_or_file, tub, timeout))


#: What each client interface's ``get_client_name`` answers -> how to make its client.
_CLIENTS = {FCFullSynchronousMultiEngineClient.client_name: _multiengine_over,
            FCTaskClient.client_name: _task_over}


async def _any_client(furl_or_file, tub, timeout):
    furl, rref, name = await _named_reference(
        furl_or_file, tub, timeout, "client interface of a controller",
        "use ipcontroller-mec.furl or ipcontroller-tc.furl (not the engine FURL)")
    make = _CLIENTS.get(name)
    if make is None:
        raise ControllerError(f"{_where(furl_or_file, furl)} is not a client interface "
                              f"ipkernel knows (it offers {name!r})")
    return await make(furl, rref, timeout)


def get_client(furl_or_file, tub=None, timeout=DEFAULT_TIMEOUT):
    """Connect to the client interface ``furl_or_file`` (a FURL, or a file
    holding one) leads to: a Deferred firing with an
    :class:`~ipkernel.client.fcmultiengine.FCFullSynchronousMultiEngineClient`
    for a multi-engine FURL (``ipcontroller-mec.furl``), or an
    :class:`~ipkernel.client.fctask.FCTaskClient` for a task FURL
    (``ipcontroller-tc.furl``).  The controller names its interface (its
    ``get_client_name``); only those two known client classes are made.

    There is no default: a controller has one FURL per interface (use
    :func:`get_multiengine_client` or :func:`get_task_client` for the
    default files).
    """
    if not furl_or_file:
        return defer.fail(ValueError(
            "get_client needs a FURL or a FURL file: the controller offers one per client "
            "interface (get_multiengine_client() and get_task_client() use the default files)"))
    return defer.Deferred.fromCoroutine(_any_client(furl_or_file, tub, timeout))
