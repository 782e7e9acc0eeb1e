"""Connecting to a controller: FURL (or FURL file) -> client object."""
from foolscap.api import DeadReferenceError, RemoteException
from twisted.internet import defer, error as net_error
from twisted.python.failure import Failure

from ipkernel import fcutil
from ipkernel.clusterdir import MULTIENGINE_FURL, ClusterDir
from ipkernel.error import ControllerError

DEFAULT_TIMEOUT = 10.0

_shared_tub = None

#: A controller that stops answering (host gone, network cut) is noticed
#: within ``disconnectTimeout`` seconds even when no call is running: the
#: connection sends keepalives when idle, and a connection silent that long
#: is dropped, failing every waiting call with ControllerError.
CLIENT_TUB_OPTIONS = {"keepaliveTimeout": 15, "disconnectTimeout": 60}


def shared_tub():
    """The process-wide client Tub (started on first use, never listening)."""
    global _shared_tub
    if _shared_tub is None:
        _shared_tub = fcutil.make_tub(options=CLIENT_TUB_OPTIONS)
        _shared_tub.startService()
    return _shared_tub


def stop_shared_tub():
    """Stop the process-wide client Tub, if it was started; returns a Deferred.

    A later :func:`shared_tub` starts a new one.  Call in the reactor thread.
    """
    global _shared_tub
    tub, _shared_tub = _shared_tub, None
    if tub is None or not tub.running:
        return defer.succeed(None)
    return defer.maybeDeferred(tub.stopService)


def connect_early(furl):
    """Start connecting the process-wide client Tub to ``furl``'s controller
    (call in the reactor thread); returns nothing, ignores failures.

    A client made a moment later then finds the connection (TLS and
    Foolscap's negotiation) done or under way: ``LocalCluster`` calls this
    while the engines register.
    """
    d = shared_tub().getReference(furl)
    d.addErrback(lambda _: None)   # the client that needs it will say what is wrong


def _describe(furl_or_file, furl):
    # never the FURL's secret name: messages end up in logs and tracebacks
    if furl_or_file is not None and not str(furl_or_file).startswith("pb://"):
        return f"the controller named in {furl_or_file}"
    return f"the controller at {fcutil.redacted_furl(furl)}"


async def get_reference(furl_or_file, tub=None, timeout=DEFAULT_TIMEOUT, reactor=None):
    """Return ``(furl, RemoteReference)``, failing promptly with ControllerError
    that says which file or FURL and why."""
    if reactor is None:
        from twisted.internet import reactor
    try:
        furl = fcutil.find_furl(furl_or_file)
    except ValueError as exc:
        raise ControllerError(str(exc)) from None
    tub = tub if tub is not None else shared_tub()
    where = _describe(furl_or_file, furl)
    tried = ", ".join(f"tcp:{location}" for location in fcutil.furl_locations(furl))
    reach = ("the controller's --client-ip (0.0.0.0 for every address) and --client-location "
             "decide the addresses in its FURL; a firewall must let this host reach the port")
    try:
        rref = await tub.getReference(furl).addTimeout(timeout, reactor)
    except defer.TimeoutError:
        raise ControllerError(f"cannot reach {where}: nothing answered at {tried} within "
                              f"{timeout:g} s. Is it running, and is that address reachable "
                              f"from here? ({reach})") from None
    except (net_error.ConnectionRefusedError, net_error.ConnectError) as exc:
        raise ControllerError(f"cannot reach {where} at {tried}: {exc.__class__.__name__} "
                              f"(is ipcontroller running? a FURL from an old run is stale "
                              f"unless the controller was started with -r; {reach})") from None
    except DeadReferenceError:
        raise ControllerError(f"{where} closed the connection") from None
    except RemoteException as exc:
        remote = exc.args[0] if exc.args else None
        if isinstance(remote, Failure) and remote.check(KeyError):
            raise ControllerError(
                f"{where} is running but has no object under that FURL's name: the FURL is "
                f"stale (written by an earlier run of the controller started without -r) "
                f"or mistyped") from None
        detail = remote.getErrorMessage() if isinstance(remote, Failure) else str(exc)
        raise ControllerError(fcutil.redact_furls(
            f"could not connect to {where}: {detail}")) from None
    except Exception as exc:
        if "unknown TubID" in str(exc):
            raise ControllerError(
                f"could not connect to {where}: something answers at that address, but not "
                f"the controller identity the FURL names; the FURL is stale (the controller "
                f"got a new certificate) or the port now belongs to another controller") from None
        raise ControllerError(fcutil.redact_furls(
            f"could not connect to {where}: {type(exc).__name__}: {exc}")) from None
    return furl, rref


def default_furl_file(name=MULTIENGINE_FURL, cluster_dir=None):
    return str(ClusterDir(cluster_dir).furl_file(name))
