"""QueuedEngine: one command at a time per engine, in submission order.

``apply_batch`` commands are the exception: they never fail as a whole for
a user error (each call has its own outcome), so up to
:data:`PIPELINE_DEPTH` of them may be on their way to the engine at once.
The engine runs them in order while the next one travels, which hides the
controller/engine round trip between batches of small tasks.
"""
import contextvars
import copy
from collections import deque

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ipkernel.engine.interpreter import CappedHistory, DEFAULT_HISTORY_CAP
from ipkernel.error import QueueCleared, tag_exception
from ipkernel.interfaces.engine import IEngineBase, IEngineQueued

log = Logger()

#: The request a command belongs to.  Commands capture its value when they are
#: submitted, so one request's waiting commands can be removed (abort).
current_request = contextvars.ContextVar("ipkernel_request", default=None)

#: True while submitting commands that stand alone (the task farm's): their
#: failure does not clear the queue, and other failures do not clear them.
independent = contextvars.ContextVar("ipkernel_independent", default=False)

#: ``apply_batch`` commands sent to the engine before the first one finished.
PIPELINE_DEPTH = 2

_QUEUED_METHODS = (
    "execute", "push", "pull", "push_function", "pull_function", "apply", "apply_batch",
    "starmap",
    "complete", "keys", "push_serialized", "pull_serialized", "set_properties",
    "get_properties", "del_properties", "has_properties", "clear_properties",
)


def _short_repr(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


#: Types copy_plain returns as they are (immutable).
_SCALARS = frozenset({str, int, float, bool, bytes, complex})


def copy_plain(value):
    """A copy of plain data (dicts, lists, tuples of scalars), as deep as
    :func:`copy.deepcopy` but far cheaper; other objects are deep-copied."""
    kind = type(value)
    if kind is dict:
        return {k: copy_plain(v) for k, v in value.items()}
    if kind is list:
        return [copy_plain(v) for v in value]
    if kind is tuple:
        return tuple(copy_plain(v) for v in value)
    if kind in _SCALARS or value is None:
        return value
    return copy.deepcopy(value)


class Command:
    """One engine method call waiting for (or having) its turn."""

    __slots__ = ("method", "args", "kwargs", "deferred", "tag", "independent", "finished")

    def __init__(self, method, *args, **kwargs):
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.deferred = defer.Deferred()
        self.tag = current_request.get()
        self.independent = independent.get()
        self.finished = False

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
    (``history_cap`` of them) so that ``get_result`` for them is answered here.
    """

    def __init__(self, engine, history_cap=DEFAULT_HISTORY_CAP):
        if not IEngineBase.providedBy(engine):
            raise TypeError(f"QueuedEngine wraps an IEngineBase, not {type(engine).__name__}")
        self.engine = engine
        self.queued = deque()
        self.running = deque()  # sent to the engine, not finished; oldest first
        self.history = CappedHistory(history_cap)
        self.failure_observers = []

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
                try:
                    observer(outcome, repr(command))
                except Exception:
                    log.failure("failure observer {observer!r} raised", observer=observer)
        elif command.method == "execute" and isinstance(outcome, dict) and "number" in outcome:
            self.history[outcome["number"]] = copy_plain(outcome)
        command.deliver(outcome)
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

    def register_failure_observer(self, obs):
        self.failure_observers.append(obs)

    def unregister_failure_observer(self, obs):
        self.failure_observers.remove(obs)

    # -- methods with special handling ---------------------------------------------

    def get_result(self, i=None):
        if i is not None and not isinstance(i, bool) and i in self.history:
            return defer.succeed(copy_plain(self.history[i]))
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
