"""Tasks: StringTask (code with push/pull) and MapTask (a function call)."""
import time

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from ipkernel import callargs, serialize
from ipkernel.engine.taskbody import CaptureOutput, DependCheck, string_task, uncaptured
from ipkernel.error import TaskRejectError, exception_summary
from ipkernel.interfaces.task import ITask

_TIME_FORMAT = "%Y/%m/%d %H:%M:%S"


def _check_after(after):
    """Normalise ``after`` to None or ``(mode, [ids])``."""
    if after is None:
        return None
    if isinstance(after, int) and not isinstance(after, bool):
        return ("all", [after])
    mode = "all"
    if (isinstance(after, tuple) and len(after) == 2 and isinstance(after[0], str)):
        mode, after = after
    if mode not in ("all", "any"):
        raise ValueError(f"after mode must be 'all' or 'any', not {mode!r}")
    if not isinstance(after, (list, tuple)) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in after):
        raise TypeError(f"after takes a list of task ids or ('all'|'any', [ids]), not {after!r}")
    return (mode, list(after))


@implementer(ITask)
class BaseTask:
    """What every task shares: engine resets, retries, recovery and dependencies.

    ``clear_before`` / ``clear_after`` reset the engine before / after the
    run; ``retries`` failed runs are repeated (on the same or another engine);
    ``recovery_task`` runs under the same id when all retries failed;
    ``depend(properties) -> bool`` is called on the engine; ``after`` is a
    list of task ids (or ``('all'|'any', ids)``) that must finish first.
    """

    def __init__(self, clear_before=False, clear_after=False, retries=0,
                 recovery_task=None, depend=None, after=None):
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise TypeError(f"retries must be an int >= 0, not {retries!r}")
        if recovery_task is not None and not ITask.providedBy(recovery_task):
            raise TypeError(f"recovery_task must be a task, not {type(recovery_task).__name__}")
        if depend is not None and not callable(depend):
            raise TypeError(f"depend must be callable, not {type(depend).__name__}")
        self.clear_before = bool(clear_before)
        self.clear_after = bool(clear_after)
        self.retries = retries
        self.recovery_task = recovery_task
        self.depend = depend
        self._depend_check = DependCheck(depend) if depend is not None else None
        self.after = _check_after(after)
        self.taskid = None
        self._engineid = None
        self.start = self.stop = self.duration = None
        self.submitted = self.completed = None

    def call(self):
        """The task's own work as one apply: ``(func, args, kwargs)``."""
        raise NotImplementedError

    def submit(self, engine):
        """Start the task's own work on ``engine``; a Deferred of its raw value."""
        return engine.apply(*self.call())

    @property
    def batchable(self):
        """True when the whole run is the one apply of :meth:`call` (no
        ``depend`` check, no engine reset): such tasks can share a batch."""
        return self._depend_check is None and not (self.clear_before or self.clear_after)

    def run_failure(self, failure):
        """The Failure a failed run is reported with (subclasses translate)."""
        return failure

    def batch_outcome(self, engine_id, ok, value, started, finished):
        """Record one ``IEngineBase.apply_batch`` outcome of this task's call;
        return ``(success, result)`` as :meth:`run_on` does."""
        self._engineid = engine_id
        self._set_times(started, finished)
        return (True, value) if ok else (False, self.run_failure(value))

    def _set_times(self, start, stop):
        self.start, self.stop = start, stop
        self.duration = stop - start
        self.submitted = time.strftime(_TIME_FORMAT, time.localtime(start))
        self.completed = time.strftime(_TIME_FORMAT, time.localtime(stop))

    def run_on(self, engine):
        """Run the task on ``engine`` (a queued engine); a Deferred firing with
        ``(success, result)``."""
        return defer.ensureDeferred(self._run_on(engine))

    async def _run_on(self, engine):
        self.start = time.time()
        self._engineid = engine.id
        try:
            if self._depend_check is not None:
                reason = await engine.apply(self._depend_check, (engine.id,))
                if reason is not None:
                    raise TaskRejectError(reason)
            if self.clear_before:
                await engine.reset()
            try:
                value = await self.submit(engine)
            finally:
                if self.clear_after:
                    engine.reset().addErrback(lambda _: None)
            outcome = (True, value)
        except Exception:
            outcome = (False, self.run_failure(Failure()))
        self._set_times(self.start, time.time())
        return outcome

    def finish(self, success, result):
        return success, result


class StringTask(BaseTask):
    """Run ``expression`` (source text) after pushing the dict ``push``; pull the
    names in ``pull`` (a str or a list).  Its result is a :class:`TaskResult`,
    also when the code failed.

    The arguments after ``push`` are those of :class:`BaseTask`, in IPython
    0.10's order, so they may be given by position as well as by name::

        StringTask("y = x ** 2", "y", {"x": 3}, False, True, 2)   # clear_after, retries=2

    ``after`` (task dependencies, new in ipkernel) is keyword-only.
    """

    def __init__(self, expression, pull=None, push=None, clear_before=False, clear_after=False,
                 retries=0, recovery_task=None, depend=None, *, after=None):
        if not isinstance(expression, str):
            raise TypeError(f"expression must be a str, not {type(expression).__name__}")
        if pull is None:
            pull = ()
        elif isinstance(pull, str):
            pull = (pull,)
        elif not isinstance(pull, (list, tuple)) or not all(isinstance(p, str) for p in pull):
            raise TypeError(f"pull must be a str or a list of str, not {pull!r}")
        if push is None:
            push = {}
        elif not isinstance(push, dict) or not all(isinstance(k, str) for k in push):
            raise TypeError(f"push must be a dict with str keys, not {type(push).__name__}")
        super().__init__(clear_before, clear_after, retries, recovery_task, depend, after=after)
        self.expression = expression
        self.pull = tuple(pull)
        self.push = push

    def call(self):
        return CaptureOutput(string_task), (self.push, self.expression, self.pull), {}

    def finish(self, success, result):
        if success:
            results, stdout, stderr = uncaptured(result)
            tr = TaskResult(results, self._engineid)
        else:
            tr = TaskResult({}, self._engineid, failure=result)
            stdout = getattr(result.value, "_ipkernel_stdout", "")
            stderr = getattr(result.value, "_ipkernel_stderr", "")
        tr.stdout, tr.stderr = stdout, stderr
        tr.taskid = self.taskid
        tr.submitted, tr.completed, tr.duration = self.submitted, self.completed, self.duration
        return True, tr


class MapTask(BaseTask):
    """Call ``function(*args, **kwargs)`` on an engine.  Its result is the
    return value; a failure makes ``get_task_result`` fail with the function's
    exception.

    ``function`` is any picklable callable: a function (also a lambda or a
    closure; a plain function sees the engine's namespace as its globals), a
    builtin, a ``functools.partial``, a bound method or an object with a
    ``__call__`` method.  It is serialized when the task is made, so an
    unpicklable one fails here with
    :class:`~ipkernel.error.SerializationError`.  ``args`` is a list or
    tuple, ``kwargs`` a dict.

    The arguments after ``kwargs`` are those of :class:`BaseTask`, in IPython
    0.10's order (positional or by name); ``after`` is keyword-only.
    """

    def __init__(self, function, args=None, kwargs=None, clear_before=False, clear_after=False,
                 retries=0, recovery_task=None, depend=None, *, after=None):
        if not callable(function):
            raise TypeError(f"function must be callable, not {type(function).__name__}")
        args, kwargs = callargs.checked(args, kwargs, "MapTask")
        super().__init__(clear_before, clear_after, retries, recovery_task, depend, after=after)
        self.function = function
        self._function = serialize.serialize(function)
        self.args = args
        self.kwargs = kwargs

    def call(self):
        return self._function, self.args, self.kwargs


class ResultNS(dict):
    """A dict whose keys are also attributes."""

    def __init__(self, results):
        super().__init__(results)
        self.__dict__.update(results)

    def __repr__(self):
        return "NS" + repr({k: v for k, v in self.__dict__.items() if not k.startswith("__")})


#: Characters of the results a TaskResult's repr shows.
REPR_CHARS = 200


class TaskResult:
    """The outcome of a StringTask.

    ``results`` maps pulled names to values (``{}`` on failure); ``failure`` is
    None or the Failure of the task's code; ``engineid``, ``taskid``,
    ``submitted``, ``completed`` (``'%Y/%m/%d %H:%M:%S'``) and ``duration``
    (seconds) describe the run; ``stdout`` and ``stderr`` hold what it printed.  ``tr.ns.x`` and ``tr['x']`` read results and
    re-raise the task's exception when it failed.
    """

    taskid = None

    #: What the task printed (its code's stdout and stderr while it ran).
    stdout = stderr = ""

    def __init__(self, results, engineid, failure=None):
        self.results = dict(results)
        self.engineid = engineid
        self.failure = failure
        self.keys = list(self.results)
        self.submitted = self.completed = self.duration = None

    def raise_exception(self):
        """Re-raise the task's exception if it failed; else return None."""
        if self.failure is not None:
            self.failure.raiseException()

    @property
    def ns(self):
        """The results as a :class:`ResultNS` (``tr.ns.x``); re-raises the
        task's exception when it failed."""
        self.raise_exception()
        return ResultNS(self.results)

    def __getitem__(self, key):
        self.raise_exception()
        return self.results[key]

    def __repr__(self):
        where = f"engine {self.engineid}" if self.engineid is not None else "no engine"
        if self.duration is not None:
            where += f", {self.duration:.3g} s"
        if self.failure is not None:
            what = f"failed: {exception_summary(getattr(self.failure, 'value', self.failure))}"
        else:
            what = repr(self.results)
            if len(what) > REPR_CHARS:
                what = what[:REPR_CHARS - 3] + "..."
        return f"TaskResult[ID:{self.taskid}]: {what} ({where})"
