"""The engine on the wire: a thin Referenceable over an EngineService.

``remote_*`` methods only translate: user data arrives as Serialized values
(rebuilt in the engine's user thread), results that are user data go back
serialized (made in the user thread too), and errors go back as
ErrorRecords carrying the pickled exception.
"""
from foolscap.api import Referenceable
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python import components
from twisted.python.failure import Failure
from zope.interface import implementer

from ipkernel import batchwire, serialize, wire
from ipkernel.datachannel import BlobMissing, refs
from ipkernel.interfaces.engine import IEngineBase
from ipkernel.interfaces.remote import RIEngine


log = Logger()


def _record(failure):
    return wire.record_from_exception(failure.value)


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
        #: The DataChannelPeer for bulk data, once joined (see EngineConnector).
        self.data = None
        #: Called (no arguments) when the controller says it is stopping deliberately.
        self.on_controller_stopping = None

    # -- bulk data ----------------------------------------------------------------------

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
            return refs.offload_blocking(value, data, "controller")
        except (ConnectionError, OSError):
            return value  # the channel went away: Foolscap carries it instead


    @staticmethod
    def _outcome(d):
        return d.addErrback(_record)

    def _serialized(self, method, *args):
        data = self.data
        if data is None or not data.connected:
            return self._outcome(self.service.call_serialized(method, *args))
        # A large result is answered with its reference first, then streamed on
        # the data channel by the same user-thread job (so no later command can
        # change it meanwhile): the client's fetch overlaps the sending.
        reply = defer.Deferred()
        reactor = data.reactor

        def post(value):
            value, sends = refs.offload(value, data, "controller")
            reactor.callFromThread(reply.callback, value)
            refs.send_now(data, "controller", sends)

        def failed(failure):
            if not reply.called:
                reply.errback(failure)
            else:
                log.failure("sending a result on the data channel failed", failure)
        self.service.call_serialized(method, *args, post=post).addErrback(failed)
        return self._outcome(reply)

    def remote_get_id(self):
        return self.service.id

    def remote_set_id(self, id):
        self.service.id = id

    def remote_ping(self):
        self.pings += 1
        return self.pings

    def remote_pulse(self):
        # Set by ipengine when it started its pulse process (ipkernel.engine.pulse).
        pulse = getattr(self.service, "pulse", None)
        return pulse.offer() if pulse is not None else []

    def remote_controller_stopping(self):
        hook = self.on_controller_stopping
        if hook is not None:
            hook()

    def remote_execute(self, lines):
        return self._outcome(self.service.execute(lines).addCallback(wire.AsJson))

    def remote_push(self, namespace):
        return self._inputs(self.service.push_serialized, namespace)

    def remote_pull(self, keys):
        return self._serialized("pull", wire.decode_keys(keys))

    def remote_push_function(self, namespace):
        return self._inputs(self.service.push_function, namespace)

    def remote_pull_function(self, keys):
        return self._serialized("pull_function", wire.decode_keys(keys))

    def remote_apply(self, func, args, kwargs):
        return self._inputs(self._serialized, "apply", func, args, kwargs)

    def remote_apply_batch(self, shared, refs, args):
        try:
            calls = batchwire.calls_from_wire(shared, refs, args)
        except Exception:
            return _record(Failure())
        d = self.service.apply_batch(calls, encode=_encode_batch_item)
        return self._outcome(d.addCallback(batchwire.outcomes_to_wire))

    def remote_starmap(self, func, argtuples):
        return self._inputs(self._serialized, "starmap", func, argtuples)

    def remote_complete(self, text, line):
        return self._outcome(self.service.complete(text, wire.decode_line(line)))

    def remote_get_result(self, i):
        return self._outcome(self.service.get_result(i))

    def remote_reset(self):
        return self._outcome(self.service.reset())

    def remote_kill(self):
        return self._outcome(self.service.kill())

    def remote_keys(self):
        return self._outcome(self.service.keys())

    def remote_interrupt(self):
        return self._outcome(self.service.interrupt())

    def remote_push_serialized(self, namespace):
        return self._inputs(self.service.push_serialized, namespace)

    def remote_pull_serialized(self, keys):
        d = self.service.pull_serialized(wire.decode_keys(keys))
        return self._outcome(d.addCallback(self._offload_in_thread))

    def _offload_in_thread(self, value):
        if self.data is None or not refs.has_large(value):
            return value
        return threads.deferToThread(self._offload, value)

    def remote_set_properties(self, properties):
        return self._outcome(self.service.set_properties(properties))

    def remote_get_properties(self, keys):
        return self._outcome(self.service.get_properties(wire.decode_keys(keys)))

    def remote_del_properties(self, keys):
        return self._outcome(self.service.del_properties(wire.decode_keys(keys)))

    def remote_has_properties(self, keys):
        return self._outcome(self.service.has_properties(wire.decode_keys(keys)))

    def remote_clear_properties(self):
        return self._outcome(self.service.clear_properties())


if components.getAdapterFactory(IEngineBase, RIEngine, None) is None:
    components.registerAdapter(FCEngineFromService, IEngineBase, RIEngine)
