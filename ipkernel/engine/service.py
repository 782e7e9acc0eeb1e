"""EngineService: an :class:`~ipkernel.interfaces.engine.IEngineBase` over an
interpreter, off the reactor thread."""
import itertools
import time

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ipkernel import serialize
from ipkernel.engine.capture import publishing
from ipkernel.engine.executor import ThreadExecutor
from ipkernel.engine.functions import FunctionBinder, SingleArguments
from ipkernel.engine.interpreter import DEFAULT_HISTORY_CAP, HIDDEN_NAMES, Interpreter
from ipkernel.engine.interpreter import format_user_traceback
from ipkernel.engine.properties import StrictDict, drop_engine, get_engine
from ipkernel.engine.taskbody import CaptureOutput
from ipkernel.error import EngineError, tag_exception
from ipkernel.interfaces.engine import IEngineBase

log = Logger()


def _key_list(keys):
    """Normalise ``keys`` to (list_of_str, single) or raise TypeError."""
    if isinstance(keys, str):
        return [keys], True
    if isinstance(keys, (list, tuple)) and all(isinstance(k, str) for k in keys):
        return list(keys), False
    raise TypeError(f"keys must be a str or a list/tuple of str, not {keys!r}")


def _load(value):
    """Rebuild ``value`` if it arrived serialized (values sent over the network do)."""
    return serialize.unserialize(value) if isinstance(value, serialize.Serialized) else value


#: Seconds between two reports of how far a map got (the client's progress bar).
PROGRESS_EVERY = 0.2
#: Items a map runs between two looks at the clock.
PROGRESS_SLICE = 256

#: The engine methods that run in the user thread as ``_<method>`` with the
#: method's own arguments (see :meth:`EngineService.user_thread_function`).
USER_THREAD_METHODS = frozenset({
    "execute", "push_serialized", "pull", "push_function", "pull_function", "apply",
    "starmap", "complete", "get_result", "keys", "pull_serialized"})


@implementer(IEngineBase)
class EngineService(service.Service):
    """A persistent Python namespace that runs user code.

    ``shell_class`` builds the interpreter (default :class:`Interpreter`);
    ``mpi`` is an object with ``rank`` and ``size`` (the engine then asks for
    id == rank); ``history_cap`` bounds the result history; ``exec_lines``
    are run at start and after every ``reset``; ``kill_hook`` is called by
    ``kill()`` (``ipengine`` uses it to stop the process); ``executor``
    chooses where user code runs (default: one dedicated thread).
    """

    name = "EngineService"

    def __init__(self, shell_class=Interpreter, mpi=None, *, history_cap=DEFAULT_HISTORY_CAP,
                 exec_lines=(), kill_hook=None, executor=None):
        self.shell_class = shell_class
        self.mpi = mpi
        self.history_cap = history_cap
        self.exec_lines = list(exec_lines)
        self.kill_hook = kill_hook
        self.executor = executor if executor is not None else ThreadExecutor()
        self.killed = False
        self._id = None
        #: Where what user code writes during execute/apply/map goes as it is
        #: written (an :class:`~ipkernel.engine.outlet.OutputOutlet`, set by the
        #: engine's connector), or None.
        self.outlet = None
        self.properties = StrictDict()
        self._new_shell()
        if mpi is not None:
            log.info("engine running under MPI: rank {rank} of {size}", rank=mpi.rank, size=mpi.size)
            self.id = mpi.rank

    # -- identity -------------------------------------------------------------

    @property
    def id(self):
        """The engine id; setting it publishes ``id`` in the user namespace."""
        return self._id

    @id.setter
    def id(self, value):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"an engine id is an int or None, not {value!r}")
        self._id = value
        self.shell.user_ns["id"] = value
        if value is not None:
            api = get_engine(value)
            if api.properties is not self.properties:
                api.properties.update(dict.items(self.properties))
                self.properties = api.properties

    def _new_shell(self):
        self.shell = self.shell_class(history_cap=self.history_cap)
        if hasattr(self.shell, "input_hook"):
            self.shell.input_hook = self._ask
        self.binder = FunctionBinder(self.shell.user_ns)
        self.shell.user_ns["id"] = self._id
        self.shell.user_ns["mpi"] = self.mpi

    def _run_exec_lines(self):
        for line in self.exec_lines:
            try:
                self.shell.execute(line)
            except BaseException:  # noqa: B902 - startup errors must not stop the engine
                log.failure("startup line {line!r} failed on engine {id}", line=line, id=self._id)

    # -- service --------------------------------------------------------------

    def startService(self):
        super().startService()
        if self.exec_lines:
            self.executor.submit(self._run_exec_lines)

    def stopService(self):
        super().stopService()
        # A stopped engine's properties must not leak to the next engine
        # given the same id in this process.
        if self._id is not None and get_engine(self._id).properties is self.properties:
            drop_engine(self._id)
        return self.executor.stop()

    # -- plumbing ---------------------------------------------------------------

    def _call(self, method, func, *args):
        """Run ``func(*args)`` in the user thread; label failures with ``method``."""
        if self.killed:
            return defer.fail(self._killed())
        run, started = self._job(func)
        d = self.executor.submit(run, *args)
        d.addErrback(self._label, method, started)
        return d

    def run_plain(self, method, func, args, on_result, on_failure):
        """Run ``func(*args)`` in the user thread like the engine methods do, but
        without Deferreds: ``on_result(value)`` or ``on_failure(Failure)`` (labelled
        with ``method``) is called where their Deferreds would fire.  Returns
        False, doing nothing, when the executor offers no such way (the caller
        then uses the engine method)."""
        submit = getattr(self.executor, "submit_plain", None)
        if submit is None:
            return False
        if self.killed:
            on_failure(Failure(self._killed()))
            return True
        run, started = self._job(func)
        submit(run, args, on_result,
               lambda failure: on_failure(self._label(failure, method, started)))
        return True

    def user_thread_function(self, method):
        """The function engine method ``method`` runs in the user thread, with
        the same arguments (for :meth:`run_plain`), or None if it runs elsewhere."""
        if method not in USER_THREAD_METHODS:
            return None
        return getattr(self, "_" + method)

    @staticmethod
    def _job(func):
        started = []

        def run(*args):
            started.append(True)
            return func(*args)
        return run, started

    def _killed(self):
        return EngineError(f"engine {self._id} has been killed")

    def _label(self, failure, method, started=()):
        if self.killed:
            # what the kill interrupted or left waiting: say so, not KeyboardInterrupt
            when = "while running it" if started else "before it ran"
            failure = Failure(EngineError(f"engine {self._id} was killed by a client {when} "
                                          f"({method})"))
        exc = failure.value
        tag_exception(exc, self._id, method, format_user_traceback(exc))
        return failure

    def _now(self, method, func, *args):
        """Run ``func(*args)`` right here (reactor thread), as a Deferred."""
        if self.killed:
            return defer.fail(self._killed())
        try:
            return defer.succeed(func(*args))
        except Exception as exc:
            tag_exception(exc, self._id, method)
            return defer.fail(exc)

    def call_serialized(self, method, *args, post=None):
        """Run engine method ``method`` and fire with its result serialized.

        Serialisation happens in the user-code thread, so a large result does
        not stall the reactor; so does ``post(serialized)``, if given (the
        network adapter sends large results on the data channel there).
        """
        return self._call(method, self.serializing(getattr(self, "_" + method), post), *args)

    def serializing(self, impl, post=None):
        """``impl`` made to return its result serialized (then passed through
        ``post``, if given), as :meth:`call_serialized` runs it."""
        def run(*args):
            value = serialize.serialize(impl(*args))
            if post is None:
                return value
            # The answer may reach the client before post returns: from here
            # on the engine counts as idle and a SIGINT interrupts nothing.
            self.executor.user_code_done()
            return post(value)
        return run

    # -- IEngineCore --------------------------------------------------------------

    def execute(self, lines):
        return self._call("execute", self._execute, lines)

    def _execute(self, lines):
        result = self._live(self.shell.execute, lines)
        result["id"] = self._id
        return result

    def _ask(self, prompt):
        """``input(prompt)`` in user code: asked of the client whose call runs (user thread)."""
        from ipkernel.engine.interpreter import NO_INPUT

        outlet = self.outlet
        if outlet is None or outlet.target is None:
            raise RuntimeError(NO_INPUT)
        return outlet.ask(prompt)

    def _live(self, func, *args):
        """``func(*args)`` with what it writes published on :attr:`outlet` as
        it is written; returns once that output was taken (user thread)."""
        outlet = self.outlet
        if outlet is None or outlet.target is None:
            return func(*args)
        try:
            with publishing(outlet.write):
                return func(*args)
        finally:
            outlet.settle()

    def push(self, namespace):
        return self._call("push", self._push, namespace)

    def _push(self, namespace):
        self.shell.bind(namespace, "push")

    def pull(self, keys):
        return self._call("pull", self._pull, keys)

    def _pull(self, keys):
        names, single = _key_list(keys)
        ns = self.shell.user_ns
        values = []
        for name in names:
            if name not in ns:
                raise NameError(f"name {name!r} is not defined on engine {self._id}")
            values.append(ns[name])
        return values[0] if single else values

    def push_function(self, namespace):
        return self._call("push_function", self._push_function, namespace)

    def _push_function(self, namespace):
        self.shell.check_names(namespace, "push_function")
        namespace = {k: _load(v) for k, v in namespace.items()}
        for name, func in namespace.items():
            if not callable(func) or isinstance(func, type):
                raise TypeError(f"push_function takes functions; {name!r} is a "
                                f"{type(func).__name__} (use push for other objects)")
        self.shell.bind({k: self.binder.bind(f) for k, f in namespace.items()}, "push_function")

    def pull_function(self, keys):
        return self._call("pull_function", self._pull_function, keys)

    def _pull_function(self, keys):
        values = self._pull(keys)
        for value in ([values] if isinstance(keys, str) else values):
            if not callable(value) or isinstance(value, type):
                raise TypeError(f"pull_function found a {type(value).__name__}, not a function "
                                f"(use pull for other objects)")
        return values

    def apply(self, func, args=(), kwargs=None):
        return self._call("apply", self._apply, func, args, kwargs)

    def _apply(self, func, args, kwargs):
        return self._live(self._call_function, func, args, kwargs)

    def _call_function(self, func, args, kwargs):
        func, args, kwargs = _load(func), _load(args), _load(kwargs)
        if isinstance(func, CaptureOutput):   # a task: its output goes back with its value
            return func.run(self._call_function, args, kwargs, self._id)
        if not callable(func):
            raise TypeError(f"apply needs a callable, not {type(func).__name__}")
        return self.binder.bind(func)(*tuple(args), **dict(kwargs or {}))

    def apply_batch(self, calls, encode=None):
        """See :meth:`~ipkernel.interfaces.engine.IEngineCore.apply_batch`.

        ``encode(ok, value)``, if given, turns each outcome into what is
        returned instead of the value or Failure; it runs in the user thread
        (the network adapter serializes results there).
        """
        return self._call("apply_batch", self._apply_batch, calls, encode)

    def _apply_batch(self, calls, encode):
        if not isinstance(calls, (list, tuple)):
            raise TypeError(f"apply_batch takes a list of (func, args, kwargs), "
                            f"not {type(calls).__name__}")
        out = []
        for n, call in enumerate(calls):
            started = time.time()
            try:
                func, args, kwargs = call
                ok, value = True, self._call_function(func, args, kwargs)
            except KeyboardInterrupt as exc:
                # An interrupt (or a stop) ends the batch: the call it hit
                # fails, the ones after it are reported as not run.
                value = self._labelled_failure(exc)
                out.append(self._batch_item(False, value, started, encode))
                out.extend([(None, None, None, None)] * (len(calls) - n - 1))
                break
            except Exception as exc:
                ok, value = False, self._labelled_failure(exc)
            out.append(self._batch_item(ok, value, started, encode))
        return out

    def _labelled_failure(self, exc):
        tag_exception(exc, self._id, "apply", format_user_traceback(exc))
        return Failure(exc)

    @staticmethod
    def _batch_item(ok, value, started, encode):
        finished = time.time()
        if encode is not None:
            try:
                value = encode(ok, value)
            except Exception as exc:  # an unpicklable result fails its call only
                ok, value = False, encode(False, Failure(exc))
        return (ok, value, started, finished)

    def starmap(self, func, argtuples):
        return self._call("starmap", self._starmap, func, argtuples)

    def _starmap(self, func, argtuples):
        return self._live(self._map_function, func, argtuples)

    def _map_function(self, func, argtuples):
        func, argtuples = _load(func), _load(argtuples)
        if isinstance(func, str):
            if func not in self.shell.user_ns:
                raise NameError(f"name {func!r} is not defined on engine {self._id}")
            func = self.shell.user_ns[func]
        if not callable(func):
            raise TypeError(f"map needs a callable, not {type(func).__name__}")
        bound = self.binder.bind(func)
        single = isinstance(argtuples, SingleArguments)
        items = argtuples.items if single else argtuples
        outlet = self.outlet
        if outlet is None or outlet.target is None or not hasattr(items, "__getitem__"):
            return list(map(bound, items)) if single else [bound(*args) for args in items]
        # in slices, telling the client how far it got at most every PROGRESS_EVERY
        # seconds (its progress bar): a short map sends nothing
        out = []
        tell_at = time.monotonic() + PROGRESS_EVERY
        for start in range(0, len(items), PROGRESS_SLICE):
            part = items[start:start + PROGRESS_SLICE]
            out.extend(map(bound, part) if single else itertools.starmap(bound, part))
            now = time.monotonic()
            if now >= tell_at:
                outlet.write("progress", str(len(out)))
                tell_at = now + PROGRESS_EVERY
        return out

    def complete(self, text, line=None):
        return self._call("complete", self._complete, text, line)

    def _complete(self, text, line):
        return self.shell.complete(text, line)

    def get_result(self, i=None):
        return self._call("get_result", self._get_result, i)

    def _get_result(self, i):
        result = self.shell.get_result(i)
        result["id"] = self._id
        return result

    def reset(self):
        return self._call("reset", self._reset)

    def _reset(self):
        self._new_shell()
        self.properties.clear()
        self._run_exec_lines()

    def kill(self):
        """Stop the engine at once: answered right away, not after the running
        command.  That command is interrupted (KeyboardInterrupt) and fails, as
        do the waiting ones, with EngineError "killed by a client"; then
        ``kill_hook`` is called (``ipengine`` ends the process)."""
        if self.killed:
            return defer.succeed(None)
        self.killed = True
        busy = self.executor.busy
        log.info("engine {id} killed by a client{busy}", id=self._id,
                 busy=" (interrupting the running command)" if busy else "")
        drop_engine(self._id)
        if busy:
            self.executor.interrupt()
        self.executor.stop()
        if self.kill_hook is not None:
            try:
                self.kill_hook()
            except Exception:
                log.failure("the kill hook of engine {id} raised", id=self._id)
        return defer.succeed(None)

    def keys(self):
        return self._call("keys", self._keys)

    def _keys(self):
        return [k for k in self.shell.user_ns if k not in HIDDEN_NAMES]

    def interrupt(self):
        return defer.succeed(self.executor.interrupt())

    # -- IEngineSerialized ----------------------------------------------------------

    def push_serialized(self, namespace):
        return self._call("push_serialized", self._push_serialized, namespace)

    def _push_serialized(self, namespace):
        self.shell.check_names(namespace, "push_serialized")
        values = {k: serialize.unserialize(v) for k, v in namespace.items()}
        self.shell.bind(values, "push_serialized")

    def pull_serialized(self, keys):
        return self._call("pull_serialized", self._pull_serialized, keys)

    def _pull_serialized(self, keys):
        values = self._pull(keys)
        if isinstance(keys, str):
            return serialize.serialize(values)
        return [serialize.serialize(v) for v in values]

    # -- IEngineProperties --------------------------------------------------------------

    def set_properties(self, properties):
        return self._now("set_properties", self._set_properties, properties)

    def _set_properties(self, properties):
        if not isinstance(properties, dict):
            raise TypeError(f"set_properties takes a dict, not {type(properties).__name__}")
        self.properties.update(properties)

    def get_properties(self, keys=None):
        return self._now("get_properties", self._get_properties, keys)

    def _get_properties(self, keys):
        if keys is None:
            return self.properties.copy()
        names, _ = _key_list(keys)
        missing = [k for k in names if k not in self.properties]
        if missing:
            raise KeyError(f"no property {missing[0]!r} on engine {self._id}")
        return self.properties.sub_dict(*names)

    def del_properties(self, keys):
        return self._now("del_properties", self._del_properties, keys)

    def _del_properties(self, keys):
        names, _ = _key_list(keys)
        missing = [k for k in names if k not in self.properties]
        if missing:
            raise KeyError(f"no property {missing[0]!r} on engine {self._id}")
        for name in names:
            del self.properties[name]

    def has_properties(self, keys):
        return self._now("has_properties", self._has_properties, keys)

    def _has_properties(self, keys):
        names, _ = _key_list(keys)
        return [k in self.properties for k in names]

    def clear_properties(self):
        return self._now("clear_properties", self.properties.clear)
