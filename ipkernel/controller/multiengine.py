"""MultiEngine: the controller seen as an explicit set of engines (IFullMultiEngine)."""
import contextvars
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ipkernel import mapping
from ipkernel.controller.service import ControllerAdapterBase
from ipkernel.engine.functions import SingleArguments
from ipkernel.engine.queued import current_request
from ipkernel.serialize import Serialized
from ipkernel.error import (Aborted, EngineError, InvalidEngineID, NoEnginesRegistered,
                            collect_exceptions, tag_exception)
from ipkernel.interfaces.multiengine import IFullMultiEngine

log = Logger()

#: Seconds ``kill`` waits for an engine's answer (it is unregistered at once anyway).
KILL_ANSWER_TIMEOUT = 5.0

#: When the call now being made began (a ``time.monotonic()`` value), as far
#: as the layer that received it knows: the arrival of its first bulk data on
#: the data channel, or of the call itself.  An engine lost since then is
#: reported in a call to ``'all'`` (an EngineError in its CompositeError)
#: rather than silently left out of "all".
call_started = contextvars.ContextVar("ipkernel_call_started", default=None)

#: How many lost engines, and for how long (seconds), are remembered for that.
LOST_KEPT = 1024
LOST_FOR = 600.0


def _is_id(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _join(parts, dist):
    """Join gathered parts, unless they are still serialized (then the client joins)."""
    if any(isinstance(p, Serialized) for p in parts):
        return parts
    return mapping.join(parts, dist)


def read_script(filename):
    """Return the source of the Python file ``filename``, checked for syntax
    errors here (they fail before any engine is touched)."""
    with open(filename, encoding="utf-8") as f:
        source = f.read()
    compile(source, filename, "exec")
    return source


def check_sequences(seqs):
    """TypeError / ValueError unless ``seqs`` is a non-empty list or tuple of
    equal-length sequences (what a map goes over)."""
    if not isinstance(seqs, (list, tuple)):
        raise TypeError(f"the sequences to map over must be given as a list or tuple, "
                        f"not {type(seqs).__name__}")
    if not seqs:
        raise TypeError("map needs at least one sequence")
    lengths = {len(s) for s in seqs}
    if len(lengths) > 1:
        raise ValueError(f"the sequences to map over have different lengths: "
                         f"{[len(s) for s in seqs]}")


def zip_sequences(seqs):
    """Return the argument tuples of a map over ``seqs`` (a list/tuple of
    equal-length sequences)."""
    check_sequences(seqs)
    return list(zip(*seqs))


def map_parts(seqs, n, dist="b"):
    """The arguments of a map over ``seqs`` split into ``n`` parts: lists of
    argument tuples, or :class:`SingleArguments` for one list, tuple or range."""
    if (isinstance(seqs, (list, tuple)) and len(seqs) == 1
            and type(seqs[0]) in (list, tuple, range)):
        return [SingleArguments(part) for part in mapping.partitions(seqs[0], n, dist)]
    return mapping.partitions(zip_sequences(seqs), n, dist)


def gather(deferreds):
    """A Deferred firing with the outcome of each of ``deferreds`` in order
    (its value, or its Failure, which is consumed) once all have fired.

    What a ``DeferredList(consumeErrors=True)`` gives without the
    ``(success, outcome)`` pairs, for less work per engine: every call to
    many engines gathers this way."""
    gathered = defer.Deferred()
    left = len(deferreds)
    if not left:
        gathered.callback([])
        return gathered
    outcomes = [None] * left

    def arrived(outcome, index):
        nonlocal left
        outcomes[index] = outcome
        left -= 1
        if not left:
            gathered.callback(outcomes)
    for index, d in enumerate(deferreds):
        d.addBoth(arrived, index)
    return gathered


@implementer(IFullMultiEngine)
class MultiEngine(ControllerAdapterBase):
    """Adapter IControllerBase -> IFullMultiEngine.

    Each call is put in the queue of every target engine at once, so
    commands to one engine run in submission order while engines work in
    parallel; the call then waits for every target (see the module doc of
    :mod:`ipkernel.interfaces.multiengine` for result shapes and errors).
    """

    def __init__(self, controller):
        super().__init__(controller)
        self._aborted = set()
        self._lost = {}  # engine id -> time.monotonic() of its unregistration
        self._joined = {}  # engine id -> time.monotonic() of its registration
        controller.on_unregister_engine_do(self._engine_lost, True)
        controller.on_register_engine_do(self._engine_joined, True)

    def _engine_joined(self, engine_id):
        self._joined[engine_id] = time.monotonic()

    def _engine_lost(self, engine_id):
        now = time.monotonic()
        self._joined.pop(engine_id, None)
        self._lost.pop(engine_id, None)
        self._lost[engine_id] = now
        while self._lost and (len(self._lost) > LOST_KEPT
                              or next(iter(self._lost.values())) < now - LOST_FOR):
            del self._lost[next(iter(self._lost))]

    def _lost_during_call(self, method):
        """Failures for the engines that were lost since the current call
        began (see :data:`call_started`), as ``[(id, Deferred)]``."""
        started = call_started.get()
        if started is None:
            return []
        engines = self.controller.engines
        # (an id given again to a newcomer since: the call did not reach the lost one either)
        lost = sorted(i for i, when in self._lost.items() if when >= started and (
            i not in engines or self._joined.get(i, started) > started))
        return [(i, defer.fail(tag_exception(EngineError(
            f"engine {i} was lost while this {method} to 'all' was on its way (it stopped, "
            f"died or lost its connection); the call did not reach it"), i, method)))
            for i in lost]

    # -- targets ------------------------------------------------------------------

    def engine_list(self, targets):
        """Return the queued engines named by ``targets``, or raise
        InvalidEngineID (an unknown id, a bad type, or an id named twice) /
        NoEnginesRegistered."""
        engines = self.controller.engines
        if isinstance(targets, str):
            if targets != "all":
                raise InvalidEngineID(f"targets must be an int, a list of ints or 'all', "
                                      f"not {targets!r}")
            if not engines:
                raise NoEnginesRegistered(
                    "no engines are registered with the controller; start engines "
                    "(ipengine or ipcluster) and check their logs if they do not appear")
            return [engines[i] for i in sorted(engines)]
        ids = [targets] if _is_id(targets) else targets
        if not isinstance(ids, (list, tuple)) or not all(_is_id(i) for i in ids):
            raise InvalidEngineID(f"targets must be an int, a list of ints or 'all', not {targets!r}")
        missing = [i for i in ids if i not in engines]
        if missing:
            raise InvalidEngineID(f"engine id {missing[0]} is not registered "
                                  f"(registered: {sorted(engines) or 'none'})")
        if len(set(ids)) != len(ids):
            # Running a command twice on one engine is never what a list of targets means.
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise InvalidEngineID(f"targets {list(ids)} name engine {twice[0]} more than once; "
                                  "name each engine once")
        return [engines[i] for i in ids]

    # -- the multiplexer ------------------------------------------------------------

    def _fan_out(self, method, targets, calls, report_lost=False):
        """Send ``calls(engine)`` to each target; gather all, fail as one.

        With ``report_lost`` a call to ``'all'`` goes to the engines there
        were when it began (see :data:`call_started`), and also fails for
        those lost while it was on its way.
        """
        try:
            engines = self.engine_list(targets)
        except Exception:
            return defer.fail()
        lost = []
        started = call_started.get()
        if report_lost and targets == "all" and started is not None:
            # 'all' is the engines there were when the call began: one that
            # registered since did not get the call's bulk data
            engines = [e for e in engines if self._joined.get(e.id, started) <= started]
            lost = self._lost_during_call(method)
            if not engines and not lost:
                return defer.fail(NoEnginesRegistered(
                    f"no engine was registered when this {method} to 'all' began (the engines "
                    f"there are now registered after it); call again"))
        request = current_request.get()
        pairs = []
        for engine in engines:
            if request is not None and request in self._aborted:
                d = defer.fail(tag_exception(Aborted(f"request {request} was aborted"),
                                             engine.id, method))
            else:
                try:
                    d = calls(engine)
                except Exception:
                    d = defer.fail()
            pairs.append((engine.id, d))
        if lost:
            pairs = sorted(pairs + lost, key=lambda pair: pair[0])
        ids = [engine_id for engine_id, _ in pairs]
        return gather([d for _, d in pairs]).addCallback(collect_exceptions, method, ids)

    def _multiplex(self, method, targets, *args, **kwargs):
        return self._fan_out(method, targets,
                             lambda engine: getattr(engine, method)(*args, **kwargs),
                             report_lost=True)

    def execute(self, lines, targets="all"):
        return self._multiplex("execute", targets, lines)

    def push(self, namespace, targets="all"):
        return self._multiplex("push", targets, namespace)

    def pull(self, keys, targets="all"):
        return self._multiplex("pull", targets, keys)

    def push_function(self, namespace, targets="all"):
        return self._multiplex("push_function", targets, namespace)

    def pull_function(self, keys, targets="all"):
        return self._multiplex("pull_function", targets, keys)

    def apply(self, func, args=(), kwargs=None, targets="all"):
        return self._multiplex("apply", targets, func, args, kwargs)

    def complete(self, text, line=None, targets="all"):
        return self._multiplex("complete", targets, text, line)

    def get_result(self, i=None, targets="all"):
        return self._multiplex("get_result", targets, i)

    def reset(self, targets="all"):
        return self._multiplex("reset", targets)

    def keys(self, targets="all"):
        return self._multiplex("keys", targets)

    def interrupt(self, targets="all"):
        return self._multiplex("interrupt", targets)

    def push_serialized(self, namespace, targets="all"):
        return self._multiplex("push_serialized", targets, namespace)

    def pull_serialized(self, keys, targets="all"):
        return self._multiplex("pull_serialized", targets, keys)

    def clear_queue(self, targets="all"):
        return self._multiplex("clear_queue", targets)

    def queue_status(self, targets="all"):
        def status(engine):
            return engine.queue_status().addCallback(lambda s: (engine.id, s))
        return self._fan_out("queue_status", targets, status)

    def set_properties(self, properties, targets="all"):
        return self._multiplex("set_properties", targets, properties)

    def get_properties(self, keys=None, targets="all"):
        return self._multiplex("get_properties", targets, keys)

    def del_properties(self, keys, targets="all"):
        return self._multiplex("del_properties", targets, keys)

    def has_properties(self, keys, targets="all"):
        return self._multiplex("has_properties", targets, keys)

    def clear_properties(self, targets="all"):
        return self._multiplex("clear_properties", targets)

    def kill(self, controller=False, targets="all"):
        if not controller:
            # an engine lost meanwhile needs no killing: not reported
            return self._fan_out("kill", targets, self._kill_now)
        if not self.controller.engines:
            return self.controller.shutdown()
        d = self._fan_out("kill", "all", self._kill_now)
        d.addErrback(lambda f: log.failure("while killing the engines", f))
        d.addCallback(lambda _: self.controller.shutdown())
        return d.addCallback(lambda _: None)

    def _kill_now(self, queued):
        """Kill the engine behind ``queued`` out of band, not queued behind its
        commands.  At once: the waiting commands fail with QueueCleared, the
        running one with EngineError "killed by a client", and the engine is
        unregistered (so the task farm reschedules its task); then the engine
        is told, and answers while its user code is interrupted."""
        engine = getattr(queued, "engine", None)
        if engine is None:
            return queued.kill()
        engine_id = queued.id
        queued.clear_queue(f"engine {engine_id} was killed by a client before running it")
        for command in list(getattr(queued, "running", ())):
            if not command.independent:
                killed = EngineError(f"engine {engine_id} was killed by a client while "
                                     f"running it")
                command.deliver(Failure(tag_exception(killed, engine_id, command.method)))
        if self.controller.engines.get(engine_id) is queued:
            self.controller.unregister_engine(engine_id)
        from twisted.internet import reactor
        done = defer.Deferred()

        def unanswered():
            log.warn("engine {id} did not answer kill within {t:g} s (frozen, or C code holding "
                     "the GIL?); it is unregistered, and stops when it reads the kill",
                     id=engine_id, t=KILL_ANSWER_TIMEOUT)
            done.callback(None)
        timer = reactor.callLater(KILL_ANSWER_TIMEOUT, unanswered)

        def answered(outcome):
            if timer.active():
                timer.cancel()
            if not done.called:
                done.callback(outcome) if not isinstance(outcome, Failure) else done.errback(outcome)
            # (a late answer, or its failure, is dropped: the kill was reported)
        defer.maybeDeferred(engine.kill).addBoth(answered)
        return done

    def get_ids(self):
        return defer.succeed(sorted(self.controller.engines))

    # -- abort support -----------------------------------------------------------------

    def abort_request(self, request_id):
        self._aborted.add(request_id)
        exc = Aborted(f"request {request_id} was aborted before it ran")
        return sum(engine.remove_commands(request_id, exc)
                   for engine in list(self.controller.engines.values()))

    def forget_request(self, request_id):
        self._aborted.discard(request_id)

    # -- coordinator ----------------------------------------------------------------

    def scatter(self, key, seq, dist="b", flatten=False, targets="all"):
        try:
            engines = self.engine_list(targets)
            parts = mapping.partitions(seq, len(engines), dist)
        except Exception:
            return defer.fail()
        values = iter(parts)

        def push_part(engine):
            part = next(values)
            if flatten and len(part) == 1:
                part = part[0]
            return engine.push({key: part})
        return self._fan_out("scatter", [e.id for e in engines], push_part)

    def gather(self, key, dist="b", targets="all"):
        try:
            mapping.check_dist(dist)
        except ValueError:
            return defer.fail()
        d = self._fan_out("gather", targets, lambda engine: engine.pull(key), report_lost=True)
        return d.addCallback(_join, dist)

    # -- extras -----------------------------------------------------------------------

    def raw_map(self, func, seqs, dist="b", targets="all"):
        try:
            check_sequences(seqs)
            if not (callable(func) or isinstance(func, str)):
                raise TypeError(f"map needs a callable or the name of one on the engines, "
                                f"not {type(func).__name__}")
            engines = self.engine_list(targets)
            parts = map_parts(seqs, len(engines), dist)
        except Exception:
            return defer.fail()
        return self.map_partitions(func, mapping.PrePartitioned(parts), [e.id for e in engines],
                                   dist)

    def map_partitions(self, func, parts, targets="all", dist="b"):
        """See
        :meth:`~ipkernel.interfaces.multiengine.IMultiEngineExtras.map_partitions`."""
        try:
            engines = self.engine_list(targets)
            if not isinstance(parts, mapping.PrePartitioned):
                parts = mapping.PrePartitioned(parts)
            parts = iter(mapping.partitions(parts, len(engines), dist))
        except Exception:
            return defer.fail()
        d = self._fan_out("map", [e.id for e in engines],
                          lambda engine: engine.starmap(func, next(parts)))
        return d.addCallback(_join, dist)

    def map(self, func, *seqs, dist="b", targets="all"):
        return self.raw_map(func, seqs, dist=dist, targets=targets)

    def zip_pull(self, keys, targets="all"):
        d = self.pull(keys, targets)
        if _is_id(targets) or isinstance(keys, str):
            return d.addCallback(lambda values: values[0] if _is_id(targets) else values)
        return d.addCallback(lambda values: list(zip(*values)))

    def run(self, filename, targets="all"):
        try:
            source = read_script(filename)
        except Exception:
            return defer.fail()
        return self.execute(source, targets)
