"""The multi-engine client over Foolscap (Deferred-based; for Twisted programs).

:class:`FCFullSynchronousMultiEngineClient` turns a RemoteReference to the
controller's ``ipcontroller-mec.furl`` object back into an
:class:`~ipkernel.interfaces.multiengine.IFullSynchronousMultiEngine`: the same
calls, the same results and errors as the in-process view.  It serializes user data before sending and
rebuilds results and exceptions on arrival; the controller only passes the
bytes along.  Splitting and joining data (scatter, gather, map) happens here,
because only the client can look inside it.
"""
import functools
import inspect

from twisted.internet import defer
from zope.interface import implementer

from ipkernel import callargs, mapping, serialize, wire
from ipkernel.datachannel import refs
from ipkernel.controller.multiengine import check_sequences, map_parts, read_script
from ipkernel.engine.properties import StrictDict
from ipkernel.error import (ControllerError, InvalidEngineID, KernelError, NoEnginesRegistered,
                            ResultNotCompleted)
from ipkernel.interfaces import multienginewire
from ipkernel.interfaces.multiengine import IFullSynchronousMultiEngine
from ipkernel.namecheck import check_push_names
from ipkernel.signatures import interface_signature
from ipkernel.transport.link import Link


def _encode_namespace(namespace, method="push"):
    check_push_names(namespace, method)  # early: the engines check it again
    return {k: serialize.serialize(v) for k, v in namespace.items()}


def _is_id(value):
    return isinstance(value, int) and not isinstance(value, bool)


_targets = wire.encode_targets
_keys = wire.encode_keys


def _route(targets):
    """Where the data channel sends bulk data meant for ``targets``."""
    tag, ids = wire.encode_targets(targets)
    return "all" if tag == "all" else list(ids)


@implementer(IFullSynchronousMultiEngine)
class FCFullSynchronousMultiEngineClient:
    """IFullSynchronousMultiEngine over a RemoteReference to the controller."""

    #: What the controller's get_client_name answers for this interface.
    client_name = "ipkernel.client.fcmultiengine.FCFullSynchronousMultiEngineClient"

    def __init__(self, remote_reference, furl=None):
        self.remote = remote_reference
        #: The Link to the controller: which carrier takes each call and its
        #: bulk data (the remote reference given, or one made around it).
        self.link = remote_reference if isinstance(remote_reference, Link) else \
            Link(remote_reference)
        self.furl = furl
        self._post = {}  # deferred id -> function applied when the result is fetched
        self.data = None
        #: The :class:`~ipkernel.client.output.OutputListener` the controller
        #: sends the live output of this client's calls to (None: no output).
        self.output = None

    @property
    def data(self):
        """The DataChannelPeer large values travel on (None: all through
        Foolscap): the link's."""
        return self.link.data

    @data.setter
    def data(self, value):
        self.link.data = value

    def __repr__(self):
        from ipkernel.fcutil import redacted_furl

        return f"<{type(self).__name__} {redacted_furl(self.furl) or '?'}>"

    def close(self):
        """Close the data channel and the lane (the Foolscap connection belongs
        to the Tub)."""
        self.link.close()

    # -- bulk data -------------------------------------------------------------------

    def _fetch(self, blob_id, pushed=False):
        """A Deferred of blob ``blob_id``; ``pushed``: the controller sends it
        on the data channel unasked (see DataChannelServer.route)."""
        d = self.link.fetch(blob_id, pushed)
        # None: no data channel here, the controller hands it over through Foolscap
        return self._call("fetch_blob", blob_id) if d is None else d

    def _offloaded(self, value, route):
        """A Deferred of ``value`` with its large parts sent on the data channel
        to ``route`` (engine ids or 'all'), once they are sent."""
        return self.link.offloaded(value, route)

    def _sends_bulk(self, value):
        """Whether the link's policy sends parts of ``value`` on the data channel."""
        return self.link.policy.sends_bulk(self.data, value)

    def _offloaded_parts(self, parts, ids):
        """Like :meth:`_offloaded` for one part per engine of ``ids``."""
        ds = [self._offloaded(part, [i]) for part, i in zip(parts, ids)]
        return defer.gatherResults(ds, consumeErrors=True).addErrback(
            lambda f: f.value.subFailure)

    # -- plumbing -------------------------------------------------------------------

    def _call(self, method, *args):
        d = defer.maybeDeferred(self.link.callRemote, method, *args)
        d.addCallbacks(self._composite_fetched, self._connection_error, errbackArgs=(method,))
        return d.addCallback(wire.raise_if_error)

    def _composite_fetched(self, outcome):
        """``outcome``, with the bulk data of the results a CompositeError
        record keeps (the engines that did not fail) fetched."""
        carried = getattr(outcome, "results", None) if isinstance(outcome, wire.ErrorRecord) \
            else None
        if not isinstance(carried, dict) or not refs.blob_ids(carried.get("values")):
            return outcome

        def fetched(values):
            carried["values"] = values
            return outcome
        # an unfetchable one stays a reference: decoding it fails in its place only
        return refs.resolve(carried["values"], self._fetch).addCallbacks(
            fetched, lambda _: outcome)

    def _connection_error(self, failure, method):
        if failure.check(KernelError):
            return failure
        from ipkernel.fcutil import redacted_furl

        where = redacted_furl(self.furl) or "FURL unknown"
        raise wire.call_failure(
            failure, method, "the controller", ControllerError,
            f"lost the connection to the controller ({where}) during {method}: "
            f"is it still running?")

    def _two_phase_sending(self, method, args, block, route, post=None, decode_result=True):
        """:meth:`_two_phase` after sending the large values of ``args[0]``
        (a namespace or a value) to ``route`` on the data channel."""
        if not self._sends_bulk(args[0]):
            return self._two_phase(method, args, block, post, decode_result)
        d = self._offloaded(args[0], route)
        return d.addCallback(lambda first: self._two_phase(method, (first,) + tuple(args[1:]),
                                                           block, post, decode_result))

    def _two_phase(self, method, args, block, post=None, decode_result=True):
        """Call ``method``; decode and post-process the result, now or at fetch time.

        With ``block=False`` the answer is a deferred id, and how to finish
        the result (decode it or not, then ``post``) is remembered under that
        id until :meth:`get_pending_deferred` fetches it.
        """
        if not isinstance(block, bool):
            return defer.fail(TypeError(f"block must be True or False, not {block!r}"))
        d = self._call(method, *args, block)
        if block:
            return d.addCallback(self._finish, decode_result, post)

        def remember(deferred_id):
            if post is not None or not decode_result:
                self._post[deferred_id] = (decode_result, post)
            return deferred_id
        return d.addCallback(remember)

    def _finish(self, value, decode_result, post):
        d = refs.resolve(value, self._fetch)  # large parts come on the data channel
        return d.addCallback(self._finish_resolved, decode_result, post)

    @staticmethod
    def _finish_resolved(value, decode_result, post):
        if decode_result:
            value = wire.decode_values(value)
        return post(value) if post is not None else value

    # -- primitives --------------------------------------------------------------------

    # -- primitives: what a row of multienginewire says is made below the class --------

    def apply(self, func, args=(), kwargs=None, targets="all", *, block=True):
        try:
            args, kwargs = callargs.checked(args, kwargs)
            func, args, kwargs = (serialize.serialize(x) for x in (func, args, kwargs))
            route = _route(targets)
        except Exception:
            return defer.fail()
        if not self._sends_bulk((args, kwargs)):
            return self._two_phase("apply", (func, args, kwargs, _targets(targets)), block)
        d = self._offloaded((args, kwargs), route)
        return d.addCallback(lambda ak: self._two_phase(
            "apply", (func, ak[0], ak[1], _targets(targets)), block))

    # -- pending results ----------------------------------------------------------------

    def get_pending_deferred(self, deferred_id, block=True):
        d = self._call("get_pending_deferred", deferred_id, bool(block))
        decode_result, post = self._post.get(deferred_id, (True, None))

        def finish(value):
            self._post.pop(deferred_id, None)
            return self._finish(value, decode_result, post)

        def failed(failure):
            if not failure.check(ResultNotCompleted):
                self._post.pop(deferred_id, None)
            return failure
        return d.addCallbacks(finish, failed)

    def clear_pending_deferreds(self):
        self._post.clear()
        return self._call("clear_pending_deferreds")

    # -- coordinator and extras (data split and joined here) ----------------------------

    async def _engine_ids(self, targets):
        if targets == "all":
            ids = await self.get_ids()
            if not ids:
                raise NoEnginesRegistered(
                    "no engines are registered with the controller; start engines "
                    "(ipengine or ipcluster) and check their logs if they do not appear")
            return ids
        if isinstance(targets, int) and not isinstance(targets, bool):
            return [targets]
        if isinstance(targets, (list, tuple)):
            return list(targets)
        raise InvalidEngineID(f"targets must be an int, a list of ints or 'all', not {targets!r}")

    def scatter(self, key, seq, dist="b", flatten=False, targets="all", *, block=True):
        async def go():
            ids = await self._engine_ids(targets)
            parts = mapping.partitions(seq, len(ids), dist)
            if flatten:
                parts = [p[0] if len(p) == 1 else p for p in parts]
            payload = [serialize.serialize(p) for p in parts]
            if self._sends_bulk(payload):
                payload = await self._offloaded_parts(payload, ids)
            return await self._two_phase("scatter", (key, payload, False, _targets(ids)), block)
        return defer.Deferred.fromCoroutine(go())

    def gather(self, key, dist="b", targets="all", *, block=True):
        mapping.check_dist(dist)  # argument errors become failed Deferreds (see below)
        return self._two_phase("gather", (key, _targets(targets)), block,
                               lambda parts: mapping.join(parts, dist))

    def raw_map(self, func, seqs, dist="b", targets="all", *, block=True):
        async def go():
            check_sequences(seqs)
            if not (callable(func) or isinstance(func, str)):
                raise TypeError(f"map needs a callable or the name of one on the engines, "
                                f"not {type(func).__name__}")
            ids = await self._engine_ids(targets)
            parts = [serialize.serialize(p) for p in map_parts(seqs, len(ids), dist)]
            if self._sends_bulk(parts):
                parts = await self._offloaded_parts(parts, ids)
            return await self._two_phase("raw_map", (serialize.serialize(func), parts, _targets(ids)), block,
                                         lambda results: mapping.join(results, dist))
        return defer.Deferred.fromCoroutine(go())

    def map(self, func, *seqs, dist="b", targets="all", block=True):
        return self.raw_map(func, seqs, dist=dist, targets=targets, block=block)

    def mapper(self, dist="b", targets="all", block=True):
        """A :class:`MultiEngineMapper` with these options: ``mapper.map(func,
        *sequences)`` is ``map`` with them (not load balanced).

        Bad options raise here: an unknown ``dist`` ValueError, malformed
        ``targets`` :class:`~ipkernel.error.InvalidEngineID`, a ``block``
        other than True/False TypeError.
        """
        return MultiEngineMapper(self, dist=dist, targets=targets, block=block)

    def parallel(self, dist="b", targets="all", block=True):
        """A decorator making a function map itself over the engines; calling
        it returns a Deferred (of the results, or with ``block=False`` of the
        deferred id to give ``get_pending_deferred``)::

            @client.parallel()
            def f(x):
                return 10.0 * x ** 4

            d = f(range(32))   # fires with [f(0), f(1), ...]

        The function may be any picklable callable, or the name of a function
        defined on the engines.  Options as for :meth:`mapper`.
        """
        from ipkernel.client.blocking import ParallelFunction

        return ParallelFunction(self.mapper(dist=dist, targets=targets, block=block))

    def adapt_to_blocking_client(self, *, timeout=None, progress=True):
        """A blocking :class:`ipkernel.client.MultiEngineClient` over this
        client: the same connection and session (so the same pending
        results), no new connection.

        It may be made in any thread, the reactor's included, but its calls
        block their thread until the reactor has done them, so they must be
        made from a thread other than the reactor's (from the reactor thread
        they raise :class:`~ipkernel.client.ReactorThreadError`):

        * a script whose reactor runs in the blocking clients' background
          thread (:func:`ipkernel.client.reactor.blocking_call`) calls it
          from its own thread, as IPython 0.10's
          ``client.get_multiengine_client`` did;
        * a Twisted program makes the calls from a worker thread
          (``twisted.internet.threads.deferToThread``).

        Closing the blocking client leaves this one open (with its pending
        results); neither reconnects for the other.  ``timeout`` and
        ``progress`` are those of :class:`~ipkernel.client.MultiEngineClient`.
        """
        from ipkernel.client.blocking import MultiEngineClient
        from ipkernel.client.reactor import default_bridge

        return MultiEngineClient._over(self, default_bridge(), timeout=timeout,
                                       progress=progress, owned=False)

    def map_partitions(self, func, parts, targets="all", dist="b", *, block=True):
        try:
            payload = [serialize.serialize(list(p)) for p in parts]
        except Exception:
            return defer.fail()
        return self._two_phase("raw_map", (serialize.serialize(func), payload, _targets(targets)),
                               block, lambda results: mapping.join(results, dist))

    def zip_pull(self, keys, targets="all", *, block=True):
        single_target = isinstance(targets, int) and not isinstance(targets, bool)

        def transpose(values):
            if single_target:
                return values[0]
            if isinstance(keys, str):
                return values
            return list(zip(*values))
        return self._two_phase("pull", (_keys(keys), _targets(targets)), block, transpose)

    def run(self, filename, targets="all", *, block=True):
        return self.execute(read_script(filename), targets, block=block)


class MultiEngineMapper:
    """``map`` with fixed options over a
    :class:`FCFullSynchronousMultiEngineClient`; made by
    :meth:`FCFullSynchronousMultiEngineClient.mapper`.

    ``map(func, *sequences)`` returns a Deferred firing with the results in
    order, or (``block=False``) with a deferred id.  ``dist`` is how the items
    are split over the engines (``'b'`` contiguous blocks, ``'r'`` round
    robin).
    """

    def __init__(self, multiengine, dist="b", targets="all", block=True):
        if not isinstance(block, bool):
            raise TypeError(f"block must be True or False, not {block!r}")
        wire.encode_targets(targets)  # InvalidEngineID when malformed
        self.multiengine = multiengine
        self.dist = mapping.check_dist(dist)
        self.targets = list(targets) if isinstance(targets, tuple) else targets
        self.block = block

    def __repr__(self):
        return (f"<{type(self).__name__} dist={self.dist!r} targets={self.targets!r} "
                f"block={self.block!r}>")

    def map(self, func, *sequences):
        """Parallel ``list(map(func, *sequences))`` (a Deferred): sequences of
        different lengths fail with ValueError."""
        return self.multiengine.raw_map(func, sequences, dist=self.dist, targets=self.targets,
                                        block=self.block)


def _check_number(i, method):
    if i is not None and (isinstance(i, bool) or not isinstance(i, int)):
        raise TypeError(f"{method} takes a command number (int) or None, not {i!r}")
    return i


def _check_properties(properties, method):
    if not isinstance(properties, dict):
        raise TypeError(f"{method} takes a dict, not {type(properties).__name__}")
    StrictDict(properties)  # InvalidProperty for anything but plain data, before sending
    return dict(properties)


def _serialized_namespace(namespace, method):
    check_push_names(namespace, method)
    return dict(namespace)


#: How the client puts an argument of each kind on the wire, ``f(value,
#: method)`` (see ipkernel.interfaces.multienginewire); kinds not here go as
#: they are.
_ENCODE = {
    multienginewire.NAMESPACE: _encode_namespace, multienginewire.FUNCTIONS: _encode_namespace,
    multienginewire.SERIALIZED: _serialized_namespace,
    multienginewire.KEYS: lambda keys, _: _keys(keys),
    multienginewire.LINE: lambda line, _: wire.encode_line(line),
    multienginewire.NUMBER: _check_number,
    multienginewire.FLAG: lambda flag, _: bool(flag),
    multienginewire.PROPERTIES: _check_properties,
}


def _statuses(statuses):
    return [tuple(s) for s in statuses]


def _client_signature(call):
    signature = interface_signature(IFullSynchronousMultiEngine[call.name])
    if not call.block:
        return signature
    block = inspect.Parameter("block", inspect.Parameter.KEYWORD_ONLY, default=True)
    return signature.replace(parameters=[*signature.parameters.values(), block])


def _client_method(call):
    """The client's ``<name>`` for the multi-engine call ``call``: checks and
    encodes the arguments, sends bulk data on the data channel first, makes
    the call and finishes its result (rebuilt, or left Serialized)."""
    signature = _client_signature(call)
    encoders = [_ENCODE.get(kind) for kind in call.args]
    n = len(call.args)
    post = _statuses if call.result == multienginewire.QUEUE_STATUS else None
    decode_result = call.result != multienginewire.SERIALIZED_VALUES
    sending = bool(call.bulk)

    if not call.targets:
        def method(self, *args):
            if len(args) != n:
                args = signature.bind(self, *args).args[1:]
            values = [f(a, call.name) if f is not None else a for f, a in zip(encoders, args)]
            return self._call(call.name, *values)
    else:
        def method(self, *args, targets="all", block=True, **kwargs):
            if kwargs or len(args) not in (n, n + 1) or (len(args) > n and targets != "all"):
                bound = signature.bind(self, *args, targets=targets, block=block, **kwargs)
                bound.apply_defaults()
                args, block = bound.args[1:], bound.kwargs["block"]
            if len(args) > n:
                args, targets = args[:n], args[n]
            values = [f(a, call.name) if f is not None else a for f, a in zip(encoders, args)]
            wire_args = (*values, _targets(targets))
            if sending:
                return self._two_phase_sending(call.name, wire_args, block, _route(targets),
                                               post, decode_result)
            return self._two_phase(call.name, wire_args, block, post, decode_result)
    method.__name__ = call.name
    method.__qualname__ = f"FCFullSynchronousMultiEngineClient.{call.name}"
    method.__signature__ = signature
    method.__doc__ = IFullSynchronousMultiEngine[call.name].getDoc()
    return method


for _call in multienginewire.MULTIENGINE_CALLS:
    if _call.name not in vars(FCFullSynchronousMultiEngineClient):
        setattr(FCFullSynchronousMultiEngineClient, _call.name, _client_method(_call))
del _call


def _failures_as_deferreds(method):
    """Make argument errors raised before the call arrive as a failed Deferred."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except Exception:
            return defer.fail()
    return wrapper


for _name in IFullSynchronousMultiEngine.names(all=True):
    _method = getattr(FCFullSynchronousMultiEngineClient, _name, None)
    if callable(_method):
        setattr(FCFullSynchronousMultiEngineClient, _name, _failures_as_deferreds(_method))
del _name, _method
