"""The engine on the wire: a thin Referenceable over an EngineService.

``remote_*`` methods only translate: user data arrives as Serialized values
(rebuilt in the engine's user thread), results that are user data go back
serialized (made in the user thread too), and errors go back as
ErrorRecords carrying the pickled exception.
"""
import functools

from foolscap.api import Referenceable
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python import components
from twisted.python.failure import Failure
from zope.interface import implementer

from ipkernel import batchwire, procusage, serialize, wire
from ipkernel.datachannel import BlobMissing, refs
from ipkernel.interfaces import enginewire
from ipkernel.interfaces.engine import IEngineBase
from ipkernel.interfaces.remote import RIEngine


log = Logger()


def _record(failure):
    return wire.record_from_exception(failure.value)


#: What a job returns when it has answered its call itself.
_ANSWERED = object()


def _encode_batch_item(ok, value):
    return serialize.serialize(value) if ok else _record(value)


@implementer(RIEngine)
class FCEngineFromService(Referenceable):
    """Adapter IEngineBase -> RIEngine (what an engine gives the controller)."""

    def __init__(self, service):
        if not IEngineBase.providedBy(service):
            raise TypeError(f"FCEngineFromService wraps an IEngineBase, not {type(service).__name__}")
        self.service = service
        self.pings = 0
        #: The Link to the controller while connected (see EngineConnector): its
        #: data peer and policy carry large results.
        self.link = None
        #: Called (no arguments) when the controller says it is stopping deliberately.
        self.on_controller_stopping = None

    # -- bulk data ----------------------------------------------------------------------

    @property
    def data(self):
        """The data-channel peer of the link to the controller, or None."""
        link = self.link
        return None if link is None else link.data

    @property
    def _threshold(self):
        link = self.link
        return refs.THRESHOLD if link is None else link.policy.bulk_threshold

    def _wait_blob(self, blob_id, pushed=True):
        if self.data is None:
            return defer.fail(BlobMissing(
                f"engine {self.service.id} got a reference to bulk data but has no data "
                f"channel (see its log)"))
        return self.data.store.wait(blob_id, refs.WAIT)

    def _inputs(self, method, *args):
        """Call ``method(*args)`` once the bulk data its arguments refer to has arrived."""
        d = refs.resolve(list(args), self._wait_blob)
        return self._outcome(d.addCallback(lambda resolved: method(*resolved)))

    def _offload(self, value):
        """In the user thread: send a large result to the controller, return the reference."""
        data = self.data
        if data is None or not data.connected:
            return value
        try:
            return refs.offload_blocking(value, data, "controller", self._threshold)
        except (ConnectionError, OSError):
            return value  # the channel went away: Foolscap carries it instead


    @staticmethod
    def _outcome(d):
        return d.addErrback(_record)

    def _serialized(self, method, *args):
        reply = defer.Deferred()
        d = self.service.call_serialized(method, *args, post=self._post_to(reply.callback))
        d.addCallbacks(functools.partial(_answer_unless, reply.callback), reply.errback)
        return self._outcome(reply)

    def _post_to(self, answer):
        """What a job serializing a result passes it through (in the user
        thread) when a data channel is up, else None.  A result with large
        parts is answered at once with their references (``answer(value)`` in
        the reactor thread) and streamed on the data channel by the same job,
        so no later command can change it meanwhile and the client's fetch
        overlaps the sending; the job then returns :data:`_ANSWERED`.  A small
        result is returned as it is."""
        data = self.data
        if data is None or not data.connected:
            return None
        reactor = data.reactor
        threshold = self._threshold

        def post(value):
            value, sends = refs.offload(value, data, "controller", threshold)
            if not sends:
                return value
            reactor.callFromThread(answer, value)
            try:
                refs.send_now(data, "controller", sends)
            except Exception:
                log.failure("sending a result on the data channel failed")
            return _ANSWERED
        return post

    def lane_handler(self, method):
        """How a call to ``method`` that arrives on a lane is taken without
        Deferreds (see :class:`~ipkernel.lane.protocol.LaneProtocol`), or None."""
        make = _LANE_HANDLERS.get(method)
        find = getattr(self.service, "user_thread_function", None)
        if make is None or find is None:
            return None
        func = find(enginewire.BY_NAME[method].implementation)
        return None if func is None else functools.partial(make, self, func)

    def remote_get_id(self):
        return self.service.id

    def remote_set_id(self, id):
        self.service.id = id

    def remote_ping(self):
        self.pings += 1
        return self.pings

    def remote_stats(self):
        return procusage.own_usage()

    def remote_pulse(self):
        # Set by ipengine when it started its pulse process (ipkernel.engine.pulse).
        pulse = getattr(self.service, "pulse", None)
        return pulse.offer() if pulse is not None else []

    def remote_controller_stopping(self):
        hook = self.on_controller_stopping
        if hook is not None:
            hook()

    def remote_apply_batch(self, shared, refs, args):
        try:
            calls = batchwire.calls_from_wire(shared, refs, args)
        except Exception:
            return _record(Failure())
        d = self.service.apply_batch(calls, encode=_encode_batch_item)
        return self._outcome(d.addCallback(batchwire.outcomes_to_wire))

    def remote_pull_serialized(self, keys):
        d = self.service.pull_serialized(wire.decode_keys(keys))
        return self._outcome(d.addCallback(self._offload_in_thread))

    def _offload_in_thread(self, value):
        link = self.link
        if link is None or not link.sends_bulk(value):
            return value
        return threads.deferToThread(self._offload, value)


#: What the engine does first with an argument of each kind (see
#: ipkernel.interfaces.enginewire); kinds not here arrive as they are used.
_DECODE = {enginewire.KEYS: wire.decode_keys, enginewire.LINE: wire.decode_line}


def _remote_method(call):
    """``remote_<name>`` of FCEngineFromService for the engine call ``call``
    (an :class:`~ipkernel.interfaces.enginewire.EngineCall`)."""
    decoders = [_DECODE.get(kind) for kind in call.args]
    names = RIEngine[call.name].argumentNames
    bulk = any(kind in enginewire.WITH_BULK_DATA for kind in call.args)

    def remote(self, *args, **kwargs):
        if kwargs:  # (a caller may name the arguments: put them in order)
            args = args + tuple(kwargs.pop(n) for n in names[len(args):] if n in kwargs)
        if kwargs or len(args) != len(decoders):
            raise TypeError(f"{call.name} takes {', '.join(names) or 'no arguments'}")
        args = [f(a) if f is not None else a for f, a in zip(decoders, args)]
        if call.result == enginewire.VALUE:  # serialized in the user thread, maybe offloaded
            target = functools.partial(self._serialized, call.name)
        else:
            target = getattr(self.service, call.implementation)
        if bulk:  # once the bulk data its arguments refer to has arrived
            return self._inputs(target, *args)
        d = target(*args)
        if call.result == enginewire.JSON:
            d.addCallback(wire.AsJson)
        return self._outcome(d)
    remote.__name__ = f"remote_{call.name}"
    remote.__qualname__ = f"FCEngineFromService.remote_{call.name}"
    remote.__doc__ = f"The engine's ``{call.name}``, as the controller calls it."
    return remote


def _lane_handler(call):
    """The lane handler of engine call ``call`` (its ``remote_<name>`` without
    Deferreds): ``handler(engine, args, kwargs, answer)`` queues the call's
    job with ``answer(result)`` to be called with what ``remote_<name>`` would
    fire with, and returns True; it returns False, doing nothing, when the
    call must go through ``remote_<name>`` (named arguments, references to
    bulk data to wait for, an executor without plain jobs).  ``func`` is
    what the engine service runs for it in the user thread."""
    decoders = [_DECODE.get(kind) for kind in call.args]
    bulk = any(kind in enginewire.WITH_BULK_DATA for kind in call.args)
    name, result = call.implementation, call.result

    def handler(self, func, args, kwargs, answer):
        if kwargs or len(args) != len(decoders):
            return False
        if bulk and refs.blob_ids(args):
            return False
        args = [f(a) if f is not None else a for f, a in zip(decoders, args)]
        service = self.service
        if result == enginewire.VALUE:
            post = self._post_to(answer)
            func = service.serializing(func, post)
            on_result = answer if post is None else functools.partial(_answer_unless, answer)
        elif result == enginewire.JSON:
            on_result = functools.partial(_answer_json, answer)
        else:
            on_result = answer
        return service.run_plain(name, func, args, on_result,
                                 functools.partial(_answer_failure, answer))
    return handler


def _answer_unless(answer, value):
    if value is not _ANSWERED:
        answer(value)


def _answer_json(answer, value):
    answer(wire.AsJson(value))


def _answer_failure(answer, failure):
    answer(_record(failure))


#: name -> the lane handler maker of the engine calls that run in the user
#: thread and answer with plain data, JSON or a value.
_LANE_HANDLERS = {}

for _call in enginewire.ENGINE_CALLS:
    if f"remote_{_call.name}" not in vars(FCEngineFromService):
        setattr(FCEngineFromService, f"remote_{_call.name}", _remote_method(_call))
        _LANE_HANDLERS[_call.name] = _lane_handler(_call)
del _call


if components.getAdapterFactory(IEngineBase, RIEngine, None) is None:
    components.registerAdapter(FCEngineFromService, IEngineBase, RIEngine)
