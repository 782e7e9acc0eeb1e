"""The controller on the wire.

* :class:`RemoteEngine`: IEngineBase over an engine's RemoteReference.  In
  the controller it runs *opaque*: user data stays Serialized and engine
  errors stay records (:class:`ipkernel.wire.WireError`), so the controller
  never unpickles anything.  With ``decode=True`` (a client of one engine,
  or tests) it rebuilds values and exceptions.
* :class:`FCEngineRegistrar`: what ``ipcontroller-engine.furl`` points to;
  engines call ``register_engine`` with a reference to themselves.
* :class:`FCEngineGate`: what ``ipcontroller-engine-gate.furl`` points to;
  the same registration, for engines with a credential
  (:mod:`ipkernel.credentials`).
* :class:`FCSynchronousMultiEngine`: what ``ipcontroller-mec.furl`` points
  to; translates RIMultiEngine calls onto an ISynchronousMultiEngine.
"""
import functools
import inspect
import time
import weakref

from foolscap.api import Referenceable
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ipkernel import batchwire, fcutil, memtrim, serialize, sizes, wire
from ipkernel.datachannel import BlobMissing, refs
from ipkernel.credentials import CredentialRefused, rejoin_credential
from ipkernel.mapping import PrePartitioned
from ipkernel.controller.multiengine import call_started
from ipkernel.controller.output import EngineOutputInlet, OutputForwarder, is_listener
from ipkernel.engine.properties import StrictDict
from ipkernel.engine.queued import current_output
from ipkernel.error import EngineError, PayloadTooLarge, tag_exception
from ipkernel.interfaces import enginewire, multienginewire
from ipkernel.interfaces.engine import IEngineBase
from ipkernel.interfaces.remote import RIEngine, RIEngineGate, RIEngineRegistrar, RIMultiEngine
from ipkernel.lane import OffersLane, lane_allowed
from ipkernel.namecheck import check_push_names
from ipkernel.signatures import interface_signature
from ipkernel.transport.link import Link

log = Logger()

CLIENT_NAME = "ipkernel.client.fcmultiengine.FCFullSynchronousMultiEngineClient"
#: Pending ids remembered for JSON answers (beyond, results come as plain Foolscap data).
MAX_JSON_IDS = 100_000

#: Failures of a remote call that mean the connection to the engine is gone.
#: Seconds a registering engine has to join its data channel and lane before
#: it is counted without them (it joins in milliseconds when all is well).
CHANNELS_WAIT = 15.0

_CONNECTION_GONE = ("foolscap.ipb.DeadReferenceError", "twisted.internet.error.ConnectionLost",
                    "twisted.internet.error.ConnectionDone")


def _encode(value):
    return value if isinstance(value, serialize.Serialized) else serialize.serialize(value)


def _check_namespace(namespace):
    check_push_names(namespace)  # before anything is sent; the engine checks it again


def _encode_namespace(namespace):
    _check_namespace(namespace)
    return {k: _encode(v) for k, v in namespace.items()}


#: Kept importable here; the function lives in ipkernel.wire (client-side code).
decode = wire.decode_values


class _Keys:
    """Marks an argument to send in the tagged keys form."""

    __slots__ = ("keys",)

    def __init__(self, keys):
        self.keys = keys


def take_kept(data_server, blob_id):
    """A Deferred of the result blob ``blob_id`` an engine sent to
    ``data_server`` (waited for in a thread); BlobMissing if there is none."""
    def taken(buf):
        if buf is None:
            why = data_server.results.lost_reason(blob_id)
            raise BlobMissing(why or f"the controller has no bulk data {blob_id.hex()} "
                                     f"(already fetched, expired, or never sent)")
        return buf
    return threads.deferToThread(data_server.take_kept, blob_id).addCallback(taken)


@implementer(IEngineBase)
class RemoteEngine:
    """IEngineBase over an engine's RemoteReference."""

    def __init__(self, rref, decode=False, properties=None):
        self.rref = rref
        self.decode = decode
        self._id = None
        self.properties = StrictDict(properties or {})
        #: Called once, without arguments, when a call fails because the
        #: connection is gone, before that call's failure is delivered.
        self.on_lost = None
        #: Called (a reactor turn after an answer that refers to data-channel
        #: blobs) with their ids: what was not routed to a client by then is
        #: kept for a later fetch (see DataChannelServer.answered).
        self.on_blobs = None
        #: ``fetch_blob(blob_id)``: a Deferred of a result blob this engine sent
        #: (None: no data channel), for results the controller keeps itself
        #: (the task farm's: its clients have no data channel).
        self.fetch_blob = None

    @property
    def id(self):
        return self._id

    @id.setter
    def id(self, value):
        self._id = value
        if value is not None:
            self.rref.callRemote("set_id", value).addErrback(
                lambda f: log.failure("could not tell engine its id {id}", f, id=value))

    def _call(self, method, *args, value=False, blobs=None):
        try:
            args = [wire.encode_keys(a.keys) if isinstance(a, _Keys) else a for a in args]
        except Exception:
            return defer.fail()
        try:
            d = self.rref.callRemote(method, *args)   # (a Deferred, whatever the carrier)
        except Exception:
            d = defer.fail()
        d.addCallbacks(self._check, self._lost, callbackArgs=(method, value),
                       errbackArgs=(method,))
        if (value if blobs is None else blobs) and self.on_blobs is not None:
            d.addCallback(self._blobs_answered)
        return d

    def _blobs_answered(self, outcome):
        ids = refs.blob_ids(outcome)
        if ids:
            from twisted.internet import reactor
            reactor.callLater(0, self.on_blobs, ids)
        return outcome

    def _check(self, outcome, method, value):
        if isinstance(outcome, wire.ErrorRecord):
            raise (wire.exception_from_record(outcome) if self.decode else wire.WireError(outcome))
        return wire.decode_values(outcome) if (value and self.decode) else outcome

    def _lost(self, failure, method):
        self._notice_lost(failure)
        if failure.check(PayloadTooLarge):  # its answer was refused on the way (lane limit)
            raise tag_exception(failure.value, self._id, method)
        exc = wire.call_failure(failure, method, f"engine {self._id}", EngineError,
                                f"engine {self._id} is gone (connection lost) during {method}")
        raise tag_exception(exc, self._id, method)

    def _notice_lost(self, failure):
        if self.on_lost is not None and failure.check(*_CONNECTION_GONE):
            hook, self.on_lost = self.on_lost, None
            try:
                hook()
            except Exception:
                log.failure("the connection-lost hook of engine {id} raised", id=self._id)

    def ping(self):
        return self.rref.callRemote("ping")

    def stats(self):
        """A Deferred of the engine process's ``{"rss", "cpu"}`` (see RIEngine.stats)."""
        return self.rref.callRemote("stats")

    # IEngineCore: what enginewire.ENGINE_CALLS says is made below the class;
    # the methods here do more than their kinds say.
    def apply_batch(self, calls):
        try:
            payload = batchwire.calls_to_wire(calls, _encode)
        except Exception:
            return defer.fail()
        return self._call("apply_batch", *payload).addCallback(self._batch_outcomes)

    def _batch_outcomes(self, wire_outcomes):
        out = batchwire.outcomes_from_wire(*wire_outcomes)
        for k, (ok, value, started, finished) in enumerate(out):
            if ok is False:
                exc = (wire.exception_from_record(value) if self.decode
                       else wire.WireError(value))
                out[k] = (ok, Failure(exc), started, finished)
            elif ok and self.decode:
                out[k] = (ok, serialize.unserialize(value), started, finished)
        return out

    def reset(self):
        return self._call("reset").addCallback(self._mirror, self.properties.clear)

    def kill(self):
        return self._call("kill").addErrback(lambda f: f.trap(EngineError) and None)

    def controller_stopping(self):
        """Tell the engine the controller is shutting down deliberately."""
        return self.rref.callRemote("controller_stopping")

    # IEngineProperties: ``self.properties`` mirrors the engine's properties
    # as far as this side changed or fetched them.
    def set_properties(self, properties):
        try:
            if not isinstance(properties, dict):
                raise TypeError(f"set_properties takes a dict, not {type(properties).__name__}")
            StrictDict(properties)  # InvalidProperty before anything is sent
        except Exception:
            return defer.fail()
        d = self._call("set_properties", properties)
        return d.addCallback(self._mirror, lambda: self.properties.update(properties))

    def get_properties(self, keys=None):
        d = self._call("get_properties", _Keys(keys))
        if keys is None:
            d.addCallback(self._refresh)
        return d

    def _refresh(self, everything):
        dict.clear(self.properties)
        self.properties.update(everything)
        return everything

    def del_properties(self, keys):
        names = [keys] if isinstance(keys, str) else list(keys) if isinstance(keys, (list, tuple)) else []
        d = self._call("del_properties", _Keys(keys))
        return d.addCallback(self._mirror, lambda: [self.properties.pop(k, None) for k in names])

    def clear_properties(self):
        return self._call("clear_properties").addCallback(self._mirror, self.properties.clear)

    @staticmethod
    def _mirror(result, change):
        change()
        return result


def _serialized_namespace(namespace):
    _check_namespace(namespace)
    if not all(isinstance(v, serialize.Serialized) for v in namespace.values()):
        raise TypeError("push_serialized takes a dict of Serialized values")
    return dict(namespace)


def _command_number(i):
    if i is not None and (isinstance(i, bool) or not isinstance(i, int)):
        raise TypeError(f"get_result takes an int or None, not {i!r}")
    return i


#: How the controller puts an argument of each kind on the wire (see
#: ipkernel.interfaces.enginewire); kinds not here go as they are.
_ENCODE = {
    enginewire.NAMESPACE: _encode_namespace, enginewire.FUNCTIONS: _encode_namespace,
    enginewire.SERIALIZED: _serialized_namespace, enginewire.OBJECT: _encode,
    enginewire.KEYS: _Keys, enginewire.LINE: wire.encode_line,
    enginewire.NUMBER: _command_number,
}


def _proxy_method(call):
    """RemoteEngine's ``<name>`` for the engine call ``call``: checks and
    encodes the arguments (a failed Deferred if they are refused), calls the
    engine, and marks results that are user data or refer to bulk data."""
    signature = interface_signature(IEngineBase[call.name])
    encoders = [_ENCODE.get(kind) for kind in call.args]
    value = call.result == enginewire.VALUE
    blobs = True if call.result == enginewire.SERIALIZED_VALUES else None

    def method(self, *args, **kwargs):
        try:
            if kwargs or len(args) != len(encoders):  # (binding costs microseconds a call)
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                args = bound.args[1:]
            wire_args = [f(a) if f is not None else a for f, a in zip(encoders, args)]
        except Exception:
            return defer.fail()
        return self._call(call.name, *wire_args, value=value, blobs=blobs)
    method.__name__ = call.name
    method.__qualname__ = f"RemoteEngine.{call.name}"
    method.__signature__ = signature
    method.__doc__ = f"The engine's ``{call.name}`` (see IEngineBase), over its RemoteReference."
    return method


for _call in enginewire.ENGINE_CALLS:
    if _call.name not in vars(RemoteEngine):
        setattr(RemoteEngine, _call.name, _proxy_method(_call))
del _call


#: Seconds a stopping controller waits for its engines to acknowledge the notice.
STOPPING_NOTICE_TIMEOUT = 1.0


def tell_engines_stopping(controller, clock, timeout=STOPPING_NOTICE_TIMEOUT):
    """Send ``controller_stopping`` to every registered network engine; a
    Deferred that fires (never fails) once all answered or ``timeout`` passed.
    Engines told so exit instead of reconnecting for long (see
    :class:`ipkernel.engine.connector.EngineConnector`)."""
    calls = []
    for queued in list(controller.engines.values()):
        remote = getattr(queued, "engine", None)
        if isinstance(remote, RemoteEngine):
            calls.append(defer.maybeDeferred(remote.controller_stopping))
    if not calls:
        return defer.succeed(None)
    log.info("telling {n} engine(s) that the controller is stopping", n=len(calls))
    d = defer.DeferredList(calls, consumeErrors=True)
    d.addTimeout(timeout, clock)
    return d.addBoth(lambda _: None)


@implementer(RIEngineRegistrar)
class FCEngineRegistrar(Referenceable):
    """Lets engines register with a controller over Foolscap."""

    def __init__(self, controller, on_engine=None, data_server=None, lane_server=None,
                 lane_max_frame=None):
        self.controller = controller
        self.on_engine = on_engine
        self.data_server = data_server
        self.lane_server = lane_server
        #: The largest frame read from an engine's lane (None: the lane server's).
        self.lane_max_frame = lane_max_frame
        #: engine id -> (RemoteEngine, ip, port, pid, timer): registered, not yet counted
        self._pending = {}

    def remote_register_engine(self, engine, id=None, pid=None, properties=None):
        # the controller's Link to this engine: commands go on its lane once
        # joined, else (and when too large for it) through Foolscap
        remote = RemoteEngine(Link(engine), properties=properties)
        peer = engine.getPeer()
        ip = getattr(peer, "host", None)
        port = getattr(peer, "port", None)
        engine_id = self.controller.reserve_id(id)
        engine.notifyOnDisconnect(self._disconnected, engine_id, remote)
        engine.notifyOnDisconnect(remote.rref.close_lane)
        # where the engine publishes what its user code writes, as it writes it
        inlet = EngineOutputInlet(self.controller, engine_id, remote)
        reply = {"id": engine_id, "output": inlet}
        if self.data_server is not None:
            remote.on_blobs = functools.partial(self.data_server.answered, engine_id)
            remote.fetch_blob = functools.partial(take_kept, self.data_server)
            # where and how this engine joins the data channel for bulk data
            reply = dict(reply, data=list(self.data_server.offer("engine", ("engine", engine_id))))
        if self.lane_server is not None and lane_allowed(ip):
            offer = self.lane_server.offer(
                lambda lane: self._lane_joined(lane, engine_id, remote, inlet),
                max_frame=self.lane_max_frame)
            reply = dict(reply, lane=list(offer))
        if "data" in reply or "lane" in reply:
            # Counted (get_ids, 'all', tasks) once its channels are joined: bulk
            # data sent to it before would not reach it.
            from twisted.internet import reactor
            timer = reactor.callLater(CHANNELS_WAIT, self._channels_late, engine_id, remote)
            self._pending[engine_id] = (remote, ip, port, pid, timer)
        else:
            self._count(engine_id, remote, ip, port, pid)
        return reply

    def remote_channels_joined(self, id):
        pending = self._pending.get(id)
        if pending is not None:
            self._count(id, *pending[:4])

    def _channels_late(self, engine_id, remote):
        pending = self._pending.get(engine_id)
        if pending is not None and pending[0] is remote:
            log.warn("engine {id} did not say it joined its data channel and lane within {t:g} s; "
                     "it is registered without them (bulk data may not reach it: see its log)",
                     id=engine_id, t=CHANNELS_WAIT)
            self._count(engine_id, *pending[:4])

    def _count(self, engine_id, remote, ip, port, pid):
        """Register the engine with the controller: from now on it is one of its engines."""
        pending = self._pending.pop(engine_id, None)
        if pending is not None and pending[4].active():
            pending[4].cancel()
        self.controller.register_engine(remote, engine_id, ip, port, pid)
        # A call failing on the lost connection unregisters the engine at once,
        # so every command waiting on it fails with EngineError (rather than
        # with QueueCleared behind the first failure).
        remote.on_lost = lambda: self._disconnected(engine_id, remote)
        if self.on_engine is not None:
            self.on_engine(engine_id, remote)

    def _lane_joined(self, lane, engine_id, remote, inlet):
        """The engine opened its lane: commands go on it from now on."""
        lane.remote_interface = RIEngine
        remote.rref.lane = lane
        lane.notifyOnDisconnect(lambda: self._lane_lost(engine_id, remote, lane))
        return inlet  # the engine's one call on its lane: its live output

    def _lane_lost(self, engine_id, remote, lane):
        if remote.rref.lane is not lane:
            return  # closed by us (the engine went away first)
        # Commands may have been lost with it: treat it as losing the engine,
        # and drop its Foolscap connection too, so it registers again afresh.
        log.info("the lane of engine {id} closed", id=engine_id)
        remote.rref.lane = None
        self._disconnected(engine_id, remote)
        try:
            remote.rref.rref.tracker.broker.transport.loseConnection()
        except AttributeError:
            pass

    def _disconnected(self, engine_id, remote):
        pending = self._pending.get(engine_id)
        if pending is not None and pending[0] is remote:  # gone before it was counted
            del self._pending[engine_id]
            if pending[4].active():
                pending[4].cancel()
            self.controller.cancel_reservation(engine_id)
            log.info("engine {id} disconnected before it joined its channels", id=engine_id)
            return
        queued = self.controller.engines.get(engine_id)
        if queued is not None and getattr(queued, "engine", None) is remote:
            log.info("engine {id} disconnected", id=engine_id)
            self.controller.unregister_engine(engine_id)


@implementer(RIEngineGate)
class FCEngineGate(Referenceable):
    """Registers engines with ``registrar`` (an :class:`FCEngineRegistrar`)
    when they give a credential that ``checker`` (a
    :class:`~ipkernel.credentials.CredentialChecker`) accepts."""

    def __init__(self, registrar, checker):
        self.registrar = registrar
        self.checker = checker

    def remote_register_engine(self, credential, engine, id=None, pid=None, properties=None):
        try:
            bound = self.checker.check(credential)
        except CredentialRefused as exc:
            peer = engine.getPeer()
            log.warn("refused an engine registration from {host}: {why}",
                     host=getattr(peer, "host", "?"), why=str(exc))
            raise
        if bound is not None:
            id = bound   # a rejoin credential names the id it registers again
        reply = self.registrar.remote_register_engine(engine, id, pid, properties)
        return dict(reply, rejoin=rejoin_credential(self.checker.key, reply["id"]))

    def remote_channels_joined(self, id):
        return self.registrar.remote_channels_joined(id)


def _serialized_in(value):
    """Every Serialized inside ``value`` (lists, tuples and dict values walked)."""
    if isinstance(value, serialize.Serialized):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _serialized_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _serialized_in(v)


def _record(failure):
    return wire.record_from_exception(failure.value, include_exception=False)


def _as_json(value):
    return value if isinstance(value, wire.ErrorRecord) else wire.AsJson(value)


@implementer(RIMultiEngine)
class FCSynchronousMultiEngine(OffersLane, Referenceable):
    """Adapter ISynchronousMultiEngine -> RIMultiEngine (thin translation).

    The ``remote_*`` methods that do only what their row of
    ``ipkernel.interfaces.multienginewire`` says are made below the class;
    those written out here do more (scatter and raw_map hand pre-split parts
    on, pending results remember which answers go back as JSON).
    """

    def __init__(self, smultiengine, payload_cap=None, data_server=None, lane_server=None):
        self.sme = smultiengine
        self.payload_cap = payload_cap
        self.data_server = data_server
        self.lane_server = lane_server
        self._json_ids = {}  # pending ids whose results go back as JSON (ordered)
        #: The OutputForwarder of this session's client (None: it does not listen).
        self.output = None
        self._sessions = weakref.WeakSet()  # the private sessions opened from this one
        self.sme.on_discard = self._discard_blobs
        #: For the dashboard: the client's address, when it opened, its calls so far.
        self.peer = None
        self.opened = time.monotonic()
        self.calls = 0
        self.closed = False

    def _check_payload(self, method, payload):
        """PayloadTooLarge when the user data of one call exceeds the cap."""
        if self.payload_cap is None:
            return
        items = (payload.values() if isinstance(payload, dict) else
                 payload if isinstance(payload, list) else [payload])
        total = sum(refs.nbytes(item) for item in items if isinstance(item, serialize.Serialized))
        if total > self.payload_cap:
            raise PayloadTooLarge(
                f"{method}: the data sent ({total} bytes serialized) exceeds this controller's "
                f"payload cap of {self.payload_cap} bytes; send it in smaller pieces (scatter, "
                f"several pushes) or start the controller with a larger cap")

    def _run(self, method, *args, payload=None, **kwargs):
        self.calls += 1
        try:
            if "targets" in kwargs:
                kwargs["targets"] = wire.decode_targets(kwargs["targets"])
            args = [wire.decode_keys(a.keys) if isinstance(a, _Keys) else a for a in args]
            if payload is not None:
                self._check_payload(method, payload)
            token = call_started.set(self._started(payload))
            listening = current_output.set(self.output)
            try:
                d = defer.maybeDeferred(getattr(self.sme, method), *args, **kwargs)
            finally:
                current_output.reset(listening)
                call_started.reset(token)
        except Exception:
            d = defer.fail()
        return d.addErrback(_record)

    def _started(self, payload):
        """When the call began: now, or when the first of its bulk data came
        on the data channel (an engine lost since is reported, not left out)."""
        now = time.monotonic()
        if payload is None or self.data_server is None:
            return now
        arrived = [self.data_server.relayed_at(b) for b in refs.blob_ids(payload)]
        return min([t for t in arrived if t is not None], default=now)

    def remote_open_session(self, canary=None):
        private = type(self.sme)(self.sme.multiengine, **self.sme.limits())
        session = FCSynchronousMultiEngine(private, self.payload_cap, self.data_server,
                                           self.lane_server)
        self._sessions.add(session)
        if canary is not None:
            session._canary = canary
            session.peer = fcutil.peer_of(canary)
            if is_listener(canary):   # the client wants the live output of its calls
                session.output = OutputForwarder(canary)
            try:
                canary.notifyOnDisconnect(session.client_gone)
            except Exception:
                log.failure("cannot watch a client's connection; its unfetched results "
                            "are freed only by budget and age")
        return session

    def client_gone(self):
        """This session's client disconnected: drop every result kept for it."""
        self.closed = True
        self._json_ids.clear()
        if self.output is not None:
            self.output.close()
        self.sme.close("its client disconnected")
        memtrim.release_memory()

    def expire(self):
        """Drop the unfetched results (this one's, its sessions', and the
        data channel's kept blobs) that are older than their limit."""
        try:  # a periodic sweep: an error must not stop the next ones
            for view in [self, *list(self._sessions)]:
                view.sme.expire()
            if self.data_server is not None:
                self.data_server.results.expire()
        except Exception:
            log.failure("while dropping expired results")

    def _discard_blobs(self, outcome):
        """A result nobody will fetch: the data channel drops its blobs."""
        if self.data_server is None or isinstance(outcome, (Failure, str, wire.ErrorRecord)):
            return
        ids = refs.blob_ids(outcome)
        if ids:
            self.data_server.results.discard(ids, "bulk data of a result that was discarded "
                                                  "unfetched (see ResultEvicted)")

    def remote_open_data_channel(self):
        if self.data_server is None:
            return (0, b"", False)
        return self.data_server.offer("client", self._data_identity())

    def _data_identity(self):
        return ("client", id(self))

    def _push_blobs(self, value):
        """Have the data channel send the engines' result blobs ``value`` refers
        to on to this client unasked, and mark those references (the client
        waits for them rather than asking: no FETCH round trip)."""
        if isinstance(value, (str, wire.ErrorRecord)):
            return value
        refused = self._over_cap(value)
        if refused is not None:
            self._discard_blobs(value)
            return _record(Failure(refused))
        if self.data_server is None:
            return value
        identity = self._data_identity()
        return refs.route(value, lambda blob: self.data_server.route(blob, identity))

    def _over_cap(self, value):
        """PayloadTooLarge when a value of a result that travels on the data
        channel is bigger than the cap (the data channel refuses its bulk
        data: without this the client would wait for it in vain), else None.
        Results small enough for Foolscap are not capped."""
        if self.payload_cap is None:
            return None
        biggest = max((refs.nbytes(s) for s in _serialized_in(value) if refs.is_ref(s)),
                      default=0)
        if biggest <= self.payload_cap:
            return None
        return PayloadTooLarge(
            f"a value in the result is {biggest} bytes serialized "
            f"({sizes.format_size(biggest)}), over this controller's payload cap of "
            f"{self.payload_cap} bytes; pull it in pieces (slices of it, or scatter it "
            f"and gather), or start ipcontroller with a larger --payload-cap")

    def remote_fetch_blob(self, blob_id):
        """Bulk data kept for this client, through Foolscap (for a client that
        could not join the data channel)."""
        if self.data_server is None:
            return _record(Failure(BlobMissing("this controller has no data channel")))
        return take_kept(self.data_server, blob_id).addCallback(bytes).addErrback(_record)

    def remote_get_client_name(self):
        return CLIENT_NAME

    def remote_get_ids(self):
        return self.sme.get_ids()

    def _run_json(self, method, *args, targets, block):
        """:meth:`_run` for methods whose results are JSON-safe plain data
        (execute results): they go back as one JSON token, now or when fetched."""
        d = self._run(method, *args, targets=targets, block=block)
        if block:
            return d.addCallback(_as_json)
        return d.addCallback(self._remember_json)

    def _remember_json(self, deferred_id):
        if isinstance(deferred_id, str):
            self._json_ids[deferred_id] = None
            while len(self._json_ids) > MAX_JSON_IDS:  # never fetched: forget the oldest
                del self._json_ids[next(iter(self._json_ids))]
        return deferred_id

    def remote_scatter(self, key, parts, flatten, targets, block):
        if flatten:   # the parts are opaque here: flattening them is the client's to do
            return defer.fail(ValueError(
                "scatter: flatten=True cannot be applied by the controller (it never "
                "unpickles the parts); flatten the one-item parts before sending them and "
                "send flatten=False, as ipkernel's client does")).addErrback(_record)
        return self._run("scatter", key, PrePartitioned(parts), targets=targets, block=block,
                         payload=parts)

    def remote_raw_map(self, func, parts, targets, block):
        return self._run("map_partitions", func, PrePartitioned(parts), targets=targets,
                         block=block, payload=[func] + list(parts)).addCallback(self._push_blobs)

    def remote_get_pending_deferred(self, deferred_id, block):
        d = self._run("get_pending_deferred", deferred_id, block)
        if deferred_id in self._json_ids:
            return d.addCallback(self._json_fetched, deferred_id)
        return d.addCallback(self._push_blobs)

    def _json_fetched(self, value, deferred_id):
        if not isinstance(value, wire.ErrorRecord):
            self._json_ids.pop(deferred_id, None)
        return _as_json(value)

    def remote_clear_pending_deferreds(self):
        self._json_ids.clear()
        return self._run("clear_pending_deferreds")


#: How the controller reads an argument of each kind before handing it on
#: (see ipkernel.interfaces.multienginewire); kinds not here go as they are.
_DECODE = {multienginewire.KEYS: _Keys, multienginewire.LINE: wire.decode_line}


def _payload(call, args):
    """The user data of a call (for the payload cap and its start time): its
    one bulk argument, or a list of them; None if it has none."""
    if not call.bulk:
        return None
    if len(call.bulk) == 1:
        return args[call.bulk[0]]
    return [args[k] for k in call.bulk]


def _remote_method(call):
    """FCSynchronousMultiEngine's ``remote_<name>`` for the multi-engine call
    ``call``: reads the wire arguments, runs the call on the synchronous
    multi-engine (errors become ErrorRecords), and sends results that are
    user data on with their bulk data (JSON for command results)."""
    names = list(RIMultiEngine[call.name].argumentNames)
    signature = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                   for n in ["self"] + names])
    decoders = [_DECODE.get(kind) for kind in call.args]
    n = len(call.args)
    json = call.result == multienginewire.COMMAND_RESULTS
    blobs = call.result in (multienginewire.VALUE, multienginewire.SERIALIZED_VALUES)

    def method(self, *args, **kwargs):
        if kwargs or len(args) != len(names):
            args = signature.bind(self, *args, **kwargs).args[1:]
        values = [f(a) if f is not None else a for f, a in zip(decoders, args[:n])]
        if not call.targets:
            return self._run(call.name, *values)
        targets, block = args[n:]
        if json:
            return self._run_json(call.name, *values, targets=targets, block=block)
        d = self._run(call.name, *values, targets=targets, block=block,
                      payload=_payload(call, args[:n]))
        return d.addCallback(self._push_blobs) if blobs else d
    method.__name__ = f"remote_{call.name}"
    method.__qualname__ = f"FCSynchronousMultiEngine.remote_{call.name}"
    method.__signature__ = signature
    method.__doc__ = (f"RIMultiEngine's ``{call.name}``: the synchronous multi-engine's, "
                      f"with its arguments read from the wire.")
    return method


for _call in multienginewire.MULTIENGINE_CALLS:
    if f"remote_{_call.name}" not in vars(FCSynchronousMultiEngine):
        setattr(FCSynchronousMultiEngine, f"remote_{_call.name}", _remote_method(_call))
del _call


def _register_adapters():
    from foolscap.referenceable import RemoteReference
    from twisted.python import components

    from ipkernel.interfaces.controller import IControllerBase
    from ipkernel.interfaces.multiengine import ISynchronousMultiEngine

    for factory, source, target in (
            (FCSynchronousMultiEngine, ISynchronousMultiEngine, RIMultiEngine),
            (FCEngineRegistrar, IControllerBase, RIEngineRegistrar),
            (lambda rref: RemoteEngine(rref, decode=True), RemoteReference, IEngineBase)):
        if components.getAdapterFactory(source, target, None) is None:
            components.registerAdapter(factory, source, target)


_register_adapters()
