"""QueuedEngine: one command at a time per engine, in submission order.

``apply_batch`` commands are the exception: they never fail as a whole for
a user error (each call has its own outcome), so up to
:data:`PIPELINE_DEPTH` of them may be on their way to the engine at once.
The engine runs them in order while the next one travels, which hides the
controller/engine round trip between batches of small tasks.
"""
import contextvars
import copy
import sys
import time
from collections import OrderedDict, deque

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ipkernel import memtrim, sizes
from ipkernel.engine.interpreter import DEFAULT_HISTORY_CAP
from ipkernel.error import QueueCleared, ResultEvicted, tag_exception
from ipkernel.interfaces import enginewire
from ipkernel.interfaces.engine import IEngineBase, IEngineQueued

log = Logger()

#: The request a command belongs to.  Commands capture its value when they are
#: submitted, so one request's waiting commands can be removed (abort).
current_request = contextvars.ContextVar("ipkernel_request", default=None)

#: Where the live output of the commands now submitted goes: the
#: :class:`~ipkernel.controller.output.OutputForwarder` of the client session
#: making the call, or None (nobody listens).  Captured by each command.
current_output = contextvars.ContextVar("ipkernel_output", default=None)

#: True while submitting commands that stand alone (the task farm's): their
#: failure does not clear the queue, and other failures do not clear them.
independent = contextvars.ContextVar("ipkernel_independent", default=False)

#: ``apply_batch`` commands sent to the engine before the first one finished.
PIPELINE_DEPTH = 2
#: Bytes of execute results each engine's history keeps in the controller.
DEFAULT_HISTORY_BYTES = 64 << 20
#: Command numbers evicted for bytes that are remembered, so asking for one
#: says why it is gone (older ones are asked of the engine).
EVICTED_NUMBERS_REMEMBERED = 10_000

#: The engine methods that wait their turn in the queue (the others, such as
#: kill and interrupt, are answered beside it).
_QUEUED_METHODS = tuple(call.name for call in enginewire.ENGINE_CALLS if call.queued)


def _short_repr(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


#: Types copy_plain returns as they are (immutable).
_SCALARS = frozenset({str, int, float, bool, bytes, complex})


def copy_plain(value):
    """A copy of plain data (dicts, lists, tuples of scalars), as deep as
    :func:`copy.deepcopy` but far cheaper; other objects are deep-copied."""
    kind = type(value)
    if kind in _SCALARS or value is None:
        return value
    if kind is dict:
        # (scalars inline: every execute result the controller keeps is copied)
        return {k: v if type(v) in _SCALARS or v is None else copy_plain(v)
                for k, v in value.items()}
    if kind is list:
        return [copy_plain(v) for v in value]
    if kind is tuple:
        return tuple(copy_plain(v) for v in value)
    return copy.deepcopy(value)


def kept_copy(result, _getsizeof=sys.getsizeof):
    """``(copy_plain(result), sizes.estimate of it)`` in one walk: the usual
    execute result (str keys; str, number, None or a dict of str as values)
    is copied and sized at once, anything else the long way.  The controller
    keeps a copy of every execute result of every engine."""
    total = sizes.OBJECT_COST
    copy = {}
    for k, v in result.items():
        kind = type(v)
        if kind is str:
            size = _getsizeof(v)
        elif kind is int or kind is float or kind is bool or v is None:
            size = sizes.OBJECT_COST
        elif kind is dict:
            size = _str_dict_size(v, _getsizeof)
            v = dict(v)
        else:
            size = None
        if size is None or type(k) is not str:
            copy = copy_plain(result)
            return copy, sizes.estimate(copy)
        total += _getsizeof(k) + size
        copy[k] = v
    return copy, total


def _str_dict_size(d, getsizeof):
    """``sizes.estimate(d)`` of a dict of str to str, else None."""
    total = sizes.OBJECT_COST
    for k, v in d.items():
        if type(k) is not str or type(v) is not str:
            return None
        total += getsizeof(k) + getsizeof(v)
    return total


class ByteHistory:
    """Execute results by command number, bounded by count and by bytes.

    Keeps at most ``cap`` results and at most ``max_bytes`` bytes of them
    (measured with :func:`ipkernel.sizes.estimate`: stdout, stderr, input
    text, display); when a new one would pass either bound the oldest go
    first.  A result bigger than ``max_bytes`` alone is not kept.  The
    numbers evicted for bytes are remembered so that :meth:`evicted` can
    tell a caller why one is gone.
    """

    def __init__(self, cap=DEFAULT_HISTORY_CAP, max_bytes=DEFAULT_HISTORY_BYTES):
        self.cap = cap
        self.max_bytes = max_bytes
        # OrderedDicts: dropping the oldest of a plain dict gets slower with
        # every entry deleted before it (the slots left behind are scanned)
        self._entries = OrderedDict()  # number -> (result dict, its size), oldest first
        self._evicted = OrderedDict()  # numbers dropped for bytes, oldest first
        #: Bytes held now (the sum of the kept results' estimates).
        self.nbytes = 0

    def __contains__(self, number):
        return number in self._entries

    def __len__(self):
        return len(self._entries)

    def __getitem__(self, number):
        return self._entries[number][0]

    def add(self, number, result, size=None):
        """Keep ``result`` under ``number`` (``size``: its estimate, if known);
        evict what no longer fits."""
        self._drop(number)
        if size is None:
            size = sizes.estimate(result)
        freed = 0
        if self.max_bytes is not None and size > self.max_bytes:
            self._remember_evicted(number)
            return
        self._entries[number] = (result, size)
        self.nbytes += size
        entries = self._entries
        while len(entries) > self.cap:
            _, (_, dropped) = entries.popitem(last=False)
            self.nbytes -= dropped
            freed += dropped
        while self.max_bytes is not None and self.nbytes > self.max_bytes:
            oldest, (_, dropped) = entries.popitem(last=False)
            self.nbytes -= dropped
            freed += dropped
            self._remember_evicted(oldest)
        if freed:
            memtrim.freed(freed)

    def _drop(self, number):
        entry = self._entries.pop(number, None)
        if entry is None:
            return 0
        self.nbytes -= entry[1]
        return entry[1]

    def _remember_evicted(self, number):
        self._evicted.pop(number, None)
        self._evicted[number] = None
        while len(self._evicted) > EVICTED_NUMBERS_REMEMBERED:
            self._evicted.popitem(last=False)

    def evicted(self, number):
        """True when ``number``'s result was dropped to stay within ``max_bytes``."""
        return number in self._evicted

    def clear(self):
        """Forget everything (the engine was reset)."""
        freed = self.nbytes
        self._entries.clear()
        self._evicted.clear()
        self.nbytes = 0
        memtrim.freed(freed)


class Command:
    """One engine method call waiting for (or having) its turn."""

    __slots__ = ("method", "args", "kwargs", "deferred", "tag", "independent", "finished",
                 "sink", "started")

    def __init__(self, method, *args, **kwargs):
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.deferred = defer.Deferred()
        self.tag = current_request.get()
        self.independent = independent.get()
        self.finished = False
        self.sink = current_output.get()
        #: time.monotonic() when it was sent to the engine (None: waiting).
        self.started = None

    def __repr__(self):
        parts = [_short_repr(a) for a in self.args]
        parts += [f"{k}={_short_repr(v)}" for k, v in self.kwargs.items()]
        return f"{self.method}({', '.join(parts)})"

    def deliver(self, outcome):
        """Fire the command's Deferred with a value or a Failure (once)."""
        if self.finished:
            return
        self.finished = True
        if isinstance(outcome, Failure):
            self.deferred.errback(outcome)
        else:
            self.deferred.callback(outcome)


def _queued(name):
    def method(self, *args, **kwargs):
        return self._submit(Command(name, *args, **kwargs))
    method.__name__ = name
    method.__doc__ = (f"Queue ``{name}`` on the engine; see "
                      f":class:`~ipkernel.interfaces.engine.IEngineBase`.")
    return method


@implementer(IEngineQueued)
class QueuedEngine:
    """Adapter IEngineBase -> IEngineQueued.

    Commands run one at a time, first in first out.  When one fails, every
    waiting command fails with QueueCleared first, then the failure is
    delivered (commands submitted while :data:`~ipkernel.engine.queued.independent`
    is set are left out of this rule both ways).  Execute results are kept
    (at most ``history_cap`` of them and ``history_bytes`` bytes, see
    :class:`~ipkernel.engine.queued.ByteHistory`) so that ``get_result``
    for them is answered here; ``get_result`` of one evicted for bytes
    raises :class:`~ipkernel.error.ResultEvicted`.
    """

    def __init__(self, engine, history_cap=DEFAULT_HISTORY_CAP,
                 history_bytes=DEFAULT_HISTORY_BYTES):
        if not IEngineBase.providedBy(engine):
            raise TypeError(f"QueuedEngine wraps an IEngineBase, not {type(engine).__name__}")
        self.engine = engine
        self.queued = deque()
        self.running = deque()  # sent to the engine, not finished; oldest first
        self.history = ByteHistory(history_cap, history_bytes)
        self.failure_observers = []
        self._dependent_only = set()   # observers not told of independent commands

    def set_history_bytes(self, max_bytes):
        """Change the byte budget of the kept history (None: no byte limit)."""
        self.history.max_bytes = max_bytes

    @property
    def id(self):
        """The engine id; setting it (the controller does) sets the engine's too."""
        return self.engine.id

    @id.setter
    def id(self, value):
        self.engine.id = value

    @property
    def properties(self):
        return self.engine.properties

    for _name in _QUEUED_METHODS:
        locals()[_name] = _queued(_name)
    del _name

    # -- the queue ------------------------------------------------------------------

    @property
    def current(self):
        """The oldest command sent to the engine and not finished, or None."""
        return self.running[0] if self.running else None

    def _submit(self, command):
        self.queued.append(command)
        self._run_next()
        return command.deferred

    def _may_send(self, command):
        if not self.running:
            return True
        return (command.method == "apply_batch" and len(self.running) < PIPELINE_DEPTH
                and all(c.method == "apply_batch" for c in self.running))

    def _run_next(self):
        while self.queued and self._may_send(self.queued[0]):
            command = self.queued.popleft()
            command.started = time.monotonic()
            self.running.append(command)
            try:
                d = getattr(self.engine, command.method)(*command.args, **command.kwargs)
            except Exception:
                d = defer.fail()
            d.addBoth(self._finished, command)

    def _finished(self, outcome, command):
        if command not in self.running:  # abandoned: the late outcome is dropped
            return None
        self.running.remove(command)
        if isinstance(outcome, Failure):
            tag_exception(outcome.value, self.id, command.method)
            if not command.independent:
                self._clear(f"{command!r} failed on engine {self.id} "
                            f"({outcome.type.__name__}: {outcome.value})")
            for observer in list(self.failure_observers):
                if command.independent and observer in self._dependent_only:
                    continue
                try:
                    observer(outcome, repr(command))
                except Exception:
                    log.failure("failure observer {observer!r} raised", observer=observer)
        elif command.method == "execute" and isinstance(outcome, dict) and "number" in outcome:
            self.history.add(outcome["number"], *kept_copy(outcome))
        settling = None
        if command.sink is not None and command.tag is not None:
            settling = command.sink.settled(command.tag)  # its output first, then its answer
        if settling is None:
            command.deliver(outcome)
        else:
            settling.addCallback(lambda _: command.deliver(outcome))
        self._run_next()
        return None

    def _clear(self, msg):
        """Fail the waiting commands with QueueCleared (independent ones stay)."""
        waiting = [c for c in self.queued if not c.independent]
        self.queued = deque(c for c in self.queued if c.independent)
        for command in waiting:
            exc = tag_exception(QueueCleared(msg), self.id, command.method)
            command.deliver(Failure(exc))

    # -- IEngineQueued ----------------------------------------------------------------

    def clear_queue(self, msg=""):
        self._clear(msg or f"the queue of engine {self.id} was cleared")
        return defer.succeed(None)

    def queue_status(self):
        return defer.succeed({
            "queue": [repr(c) for c in self.queued],
            "pending": ", ".join(repr(c) for c in self.running) or "None",
        })

    def remove_commands(self, tag, exception):
        keep, removed = deque(), []
        for command in self.queued:
            (removed if command.tag == tag else keep).append(command)
        self.queued = keep
        for command in removed:
            command.deliver(Failure(tag_exception(exception, self.id, command.method)))
        return len(removed)

    def abandon(self, exception):
        running, self.running = list(self.running), deque()
        waiting, self.queued = self.queued, deque()
        for command in running + list(waiting):
            command.deliver(Failure(tag_exception(exception, self.id, command.method)))

    def register_failure_observer(self, obs, independent=True):
        """Call ``obs(failure, description)`` when a command fails;
        ``independent=False``: not for independent commands (tasks)."""
        self.failure_observers.append(obs)
        if not independent:
            self._dependent_only.add(obs)

    def unregister_failure_observer(self, obs):
        self.failure_observers.remove(obs)
        self._dependent_only.discard(obs)

    # -- methods with special handling ---------------------------------------------

    def get_result(self, i=None):
        if i is not None and not isinstance(i, bool) and isinstance(i, int):
            if i in self.history:
                return defer.succeed(copy_plain(self.history[i]))
            if self.history.evicted(i):
                return defer.fail(tag_exception(ResultEvicted(
                    f"the result of command {i} on engine {self.id} was evicted: the "
                    f"controller keeps at most {sizes.format_size(self.history.max_bytes)} "
                    f"of execute results per engine and newer ones filled it. Keep what you "
                    f"need from execute's answer when it comes (or fetch results sooner), or "
                    f"start ipcontroller with a larger --history-bytes"), self.id,
                    "get_result"))
        return self._submit(Command("get_result", i))

    def reset(self):
        self._clear(f"engine {self.id} was reset")
        self.history.clear()
        return self._submit(Command("reset"))

    def kill(self):
        self._clear(f"engine {self.id} was killed")
        return self._submit(Command("kill"))

    def interrupt(self):
        return self.engine.interrupt()
