"""The blocking multi-engine client: plain method calls that return results.

::

    from ipkernel.client import MultiEngineClient

    mec = MultiEngineClient()            # the controller of ~/.ipkernel (or $IPKERNEL_DIR)
    mec.execute("import math")
    mec.map(lambda x: x ** 10, range(32))
    pr = mec.execute("x = slow()", block=False)   # a PendingResult
    pr.r                                          # wait for it

:class:`MultiEngineClient` wraps the Deferred-based
:class:`~ipkernel.client.fcmultiengine.FCFullSynchronousMultiEngineClient`;
every call is run in the Twisted reactor thread (see
:mod:`ipkernel.client.reactor`) while the calling thread waits, with a
timeout, interruptible with Ctrl-C.
"""
import functools
import inspect
import itertools
import sys
import threading
import time
import weakref

from twisted.logger import Logger

from ipkernel import wire
from ipkernel.client import progress as _progress
from ipkernel.client.direct import DIRECT_METHODS, NOT_DIRECT, DirectCalls
from ipkernel.client.output import in_ipython
from ipkernel.client.reactor import CallTimeout, ReactorBridge, before_shutdown, default_bridge
from ipkernel import mapping
from ipkernel.error import KernelError, NotAPendingResult, ResultNotCompleted
from ipkernel.interfaces import multienginewire
from ipkernel.interfaces.multiengine import IFullSynchronousMultiEngine
from ipkernel.signatures import interface_signature

__all__ = ["MultiEngineClient", "get_multiengine_client", "PendingResult", "ResultList",
           "MultiEngineMapper", "ParallelFunction", "CLIENT_DEFAULT"]


class _ClientDefault:
    """The ``timeout=`` default of blocking calls: use the client's ``timeout``."""

    def __repr__(self):
        return "CLIENT_DEFAULT"


#: Passed as ``timeout=`` (the default): use the client's ``timeout`` attribute.
CLIENT_DEFAULT = _ClientDefault()


def _check_timeout(timeout, what="timeout"):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"{what} must be a positive number of seconds, or None for no "
                         f"limit, not {timeout!r}")
    return timeout


def _check_block(block):
    if not isinstance(block, bool):
        raise TypeError(f"block must be True or False, not {block!r}")
    return block


def _check_targets(targets):
    wire.encode_targets(targets)  # InvalidEngineID (a ValueError) when malformed
    return list(targets) if isinstance(targets, tuple) else targets


# -- results ----------------------------------------------------------------------------------

_COLOURS = {"In": "\x1b[32m", "Out": "\x1b[31m", "Err": "\x1b[1;31m"}
_RESET = "\x1b[0m"


def _use_colour():
    import os
    import sys

    if os.environ.get("NO_COLOR"):
        return False
    try:
        return bool(sys.stdout.isatty())
    except (AttributeError, ValueError):
        return False


def _block_lines(prompt, text, colour, kind):
    lines = text.rstrip("\n").split("\n") if text else [""]
    shown = f"{_COLOURS[kind]}{prompt}{_RESET}" if colour else prompt
    indent = " " * len(prompt)
    return [f"{shown}{lines[0]}".rstrip()] + [f"{indent}{line}".rstrip() for line in lines[1:]]


def _format_result(result, colour):
    if not isinstance(result, dict):
        return [repr(result)]
    engine = result.get("id", "?")
    number = result.get("number", "?")
    source = result.get("input", "")
    if isinstance(source, dict):
        source = source.get("translated", source.get("raw", ""))
    lines = _block_lines(f"[{engine}] In [{number}]: ", str(source), colour, "In")
    shown = []
    if result.get("stdout"):
        shown.append(result["stdout"].rstrip("\n"))
    display = result.get("display")
    if isinstance(display, dict) and (display.get("pprint") or display.get("repr")):
        shown.append(display.get("pprint") or display.get("repr"))
    if shown:
        lines += _block_lines(f"[{engine}] Out[{number}]: ", "\n".join(shown), colour, "Out")
    if result.get("stderr"):
        lines += _block_lines(f"[{engine}] Err[{number}]: ", result["stderr"], colour, "Err")
    return lines


class ResultList(list):
    """A list of execution result dicts, displayed like an interactive session::

        <Results List>
        [0] In [1]: print(id)
        [0] Out[1]: 0
        [1] In [1]: print(id)
        [1] Out[1]: 1

    ``[engine] In [n]`` is the code engine ``engine`` ran as its command
    ``n``; ``Out`` what it printed (and the value of a final expression);
    ``Err`` what it wrote to stderr.  Prompts are coloured when standard
    output is a terminal (and ``$NO_COLOR`` is not set).  Otherwise a plain
    list: index it to get each engine's dict.
    """

    def __repr__(self):
        colour = _use_colour()
        lines = ["<Results List>"]
        for result in self:
            lines.extend(_format_result(result, colour))
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_pretty_(self, printer, cycle):  # IPython's display hook
        printer.text(repr(self))


def _result_list(results):
    if isinstance(results, dict):
        return ResultList([results])
    return ResultList(results)


#: The calls whose results are execute result dicts (which hold the whole output).
_RESULT_DICTS = frozenset({"execute", "run"})
#: The calls that run user code: their output streams, and Ctrl-C interrupts them.
STREAMED = frozenset({"execute", "run", "apply", "raw_map"})
_NOT_YET = object()
_log = Logger()
_callback_pool = None
_callback_pool_lock = threading.Lock()


#: Seconds the interrupt sent after a Ctrl-C may take.
INTERRUPT_TIMEOUT = 10.0


def _in_callback_thread(func, *args):
    """Run ``func(*args)`` soon in the clients' callback thread (user
    callbacks may make blocking calls: never in the reactor thread)."""
    global _callback_pool
    with _callback_pool_lock:
        if _callback_pool is None:
            from concurrent.futures import ThreadPoolExecutor
            _callback_pool = ThreadPoolExecutor(1, thread_name_prefix="ipkernel-callbacks")
    _callback_pool.submit(func, *args)


def _run_done_callback(fn, pending):
    """Run ``fn(pending)`` in the clients' callback thread, logging what it raises."""
    _in_callback_thread(_call_logged, fn, pending)


def _call_logged(fn, pending):
    try:
        fn(pending)
    except BaseException:  # noqa: B902 - a user callback: report, carry on
        _log.failure("the done callback {fn!r} of {pending!r} raised", fn=fn, pending=pending)


class PendingResult:
    """The result of a non-blocking (``block=False``) call, fetched on demand.

    :meth:`get_result` waits for it (or, with ``block=False``, returns
    ``default`` if it is not ready).  The first outcome obtained, a value
    or an exception, is kept: later calls return the same value or raise the
    same exception again.  Pending results sort in the order they were made.

    The habits of ``multiprocessing``/ipyparallel results work too:
    :meth:`ready`, :meth:`wait`, :meth:`get`, :meth:`successful`,
    :attr:`elapsed`, :meth:`add_done_callback`; :attr:`done` is True once
    the call has finished.  What the engines printed while running it is in
    :attr:`stdout` and :attr:`stderr` (one text per target engine), and
    :attr:`metadata` has one dict per engine.
    """

    _serial = itertools.count()

    def __init__(self, client, result_id, label=None, targets=None, stream=False):
        self.client = client
        #: The controller's id of the pending call (a str).
        self.result_id = result_id
        #: What the call was (e.g. ``"execute"``), for messages.
        self.label = label or "call"
        #: The targets the call was made to (an id, a list of ids, ``'all'``; None: unknown).
        self.targets = targets
        #: Whether waiting for it prints the engines' output as it arrives.
        self.stream = stream
        self._order = next(PendingResult._serial)
        self._lock = threading.RLock()
        self._callbacks = []
        self._done_callbacks = []
        self._watched = False
        self._done = False
        self._value = None
        self._error = None
        self._error_tb = None
        self._submitted = time.time()
        self._completed = None
        self._on_progress = None   # f(items done) while a map waits with a bar
        self._ids = None
        claim = getattr(client, "_claim_output", None)
        self._output = claim(result_id, stream) if claim is not None else None
        # reactor-thread state: the one blocking fetch on its way, and its waiters
        self._inflight = None
        self._arrived = None  # ("ok", value) or ("error", Failure) once fetched
        self._observers = []

    def __repr__(self):
        state = "done" if self._done else "pending"
        return f"<PendingResult {self.label} {self.result_id[:8]}... {state}>"

    def __lt__(self, other):
        if not isinstance(other, PendingResult):
            return NotImplemented
        return self._order < other._order

    def add_callback(self, f, *args, **kwargs):
        """Have ``f(value, *args, **kwargs)`` replace the value when it arrives.

        Callbacks run in order, in the thread that fetches the result; one
        that raises makes that exception the outcome.  Added after the value
        arrived, ``f`` is applied to the kept value at once.
        """
        with self._lock:
            self._callbacks.append((f, args, kwargs))
            if self._done and self._error is None:
                try:
                    self._value = f(self._value, *args, **kwargs)
                except Exception as exc:  # noqa: B902 - kept like any other outcome
                    self._value, self._error, self._error_tb = None, exc, exc.__traceback__

    def get_result(self, default=None, block=True, *, timeout=CLIENT_DEFAULT):
        """Return the value of the call, or raise its exception.

        With ``block=False`` return ``default`` when the call has not
        finished yet.  ``timeout`` bounds the wait (default: the client's
        ``timeout``; None waits without limit); when it expires
        :class:`~ipkernel.client.reactor.CallTimeout` (a ``TimeoutError``) is
        raised and the result can still be fetched later.
        """
        _check_block(block)
        with self._lock:
            if self._done:
                return self._deliver()
        outcome = self.client._fetch_pending(self, block, timeout)
        if outcome is None:
            return default
        self._settle(outcome)
        with self._lock:
            return self._deliver()

    @property
    def r(self):
        """The result, waiting for it: ``get_result(block=True)``."""
        return self.get_result(block=True)

    # -- the habits of AsyncResult and Future ----------------------------------------------

    def ready(self):
        """True once the call has finished (its outcome is then kept here)."""
        if self._done:
            return True
        try:
            self.get_result(_NOT_YET, block=False)
        except BaseException:  # noqa: B902
            if not self._done:  # not the call's outcome (a closed client, Ctrl-C)
                raise
        return self._done

    @property
    def done(self):
        """True once the call has finished (asks the controller if not known yet)."""
        return self.ready()

    def wait(self, timeout=None):
        """Wait until the call has finished, at most ``timeout`` seconds (None:
        no limit); True if it has.  Its outcome is kept, not raised."""
        try:
            self.get_result(block=True, timeout=timeout)
        except CallTimeout:
            if not self._done:
                return False
        except BaseException:  # noqa: B902
            if not self._done:
                raise
        return True

    def get(self, timeout=None):
        """The value of the call (its exception raised), waiting at most
        ``timeout`` seconds (None: no limit); ``TimeoutError`` when it is
        not ready by then: call again to keep waiting."""
        return self.get_result(block=True, timeout=timeout)

    def successful(self):
        """True if the call finished without an exception; ValueError if it
        has not finished."""
        if not self.ready():
            raise ValueError(f"the {self.label} call has not finished yet; wait() for it first")
        return self._error is None

    @property
    def elapsed(self):
        """Seconds from sending the call to learning it finished (so far, if not)."""
        end = self._completed if self._completed is not None else time.time()
        return end - self._submitted

    def add_done_callback(self, fn):
        """Call ``fn(self)`` once the call has finished (at once if it has), in
        a background thread of the client; an exception ``fn`` raises is
        logged."""
        with self._lock:
            if not self._done:
                self._done_callbacks.append(fn)
                start = not self._watched
                self._watched = True
                fn = None
        if fn is not None:
            _run_done_callback(fn, self)
        elif start:
            self.client._watch_pending(self)

    # -- what the engines printed ------------------------------------------------------

    def engine_ids(self):
        """The engines the call went to, in target order (for ``'all'``: the
        engines registered when first asked, and those that printed)."""
        if self._ids is None:
            targets = self.targets
            if isinstance(targets, int):
                ids = [targets]
            elif isinstance(targets, list):
                ids = list(targets)
            else:
                printed = self._output.engine_ids() if self._output is not None else []
                ids = sorted(set(self._result_ids() or self.client.get_ids()) | set(printed))
            self._ids = ids
        return self._ids

    def _result_ids(self):
        value = self._value if self._done and self._error is None else None
        if self.label in _RESULT_DICTS and isinstance(value, list) and value and all(isinstance(r, dict) and "id" in r
                                                     for r in value):
            return [r["id"] for r in value]
        return None

    def _texts(self, name):
        value = self._value if self._done and self._error is None else None
        by_result = {}
        if self.label in _RESULT_DICTS and isinstance(value, list) and all(isinstance(r, dict) and "id" in r for r in value):
            by_result = {r["id"]: r.get(name, "") for r in value}  # execute: the whole text
        out = []
        for engine_id in self.engine_ids():
            if engine_id in by_result:
                out.append(by_result[engine_id])
            else:
                out.append(self._output.text(engine_id, name) if self._output is not None else "")
        return out

    @property
    def stdout(self):
        """What each target engine wrote to stdout during the call (one str per
        engine, in :meth:`engine_ids` order; so far, if it has not finished)."""
        return self._texts("stdout")

    @property
    def stderr(self):
        """What each target engine wrote to stderr during the call."""
        return self._texts("stderr")

    @property
    def metadata(self):
        """One dict per target engine: ``engine_id``, ``submitted`` and
        ``completed`` (``time.time()`` values as the client saw them:
        sending the call, learning it finished; None until then),
        ``stdout``, ``stderr``."""
        return [{"engine_id": engine_id, "submitted": self._submitted,
                 "completed": self._completed, "stdout": out, "stderr": err}
                for engine_id, out, err in zip(self.engine_ids(), self.stdout, self.stderr)]

    def display_outputs(self):
        """Print what the engines wrote, ``[stdout:N]``-prefixed per line."""
        from ipkernel.client.output import prefixed_lines

        for engine_id, out, err in zip(self.engine_ids(), self.stdout, self.stderr):
            if out:
                sys.stdout.write(prefixed_lines(engine_id, "stdout", out))
            if err:
                sys.stderr.write(prefixed_lines(engine_id, "stderr", err))

    # -- internals ------------------------------------------------------------------
    def _settle(self, outcome):
        """Keep ``outcome`` unless one is kept already; run the done callbacks."""
        with self._lock:
            if self._done:
                return
            self._keep(outcome)
            self._completed = time.time()
            callbacks, self._done_callbacks = self._done_callbacks, []
        for fn in callbacks:
            _run_done_callback(fn, self)

    def _keep(self, outcome):
        kind, payload = outcome
        value = error = None
        if kind == "ok":
            value = payload
            try:
                for f, args, kwargs in self._callbacks:
                    value = f(value, *args, **kwargs)
            except Exception as exc:  # noqa: B902 - kept like any other outcome
                value, error = None, exc
        else:
            try:
                payload.raiseException()
            except BaseException as exc:  # noqa: B902 - a remote outcome, kept
                error = exc
        self._value, self._error, self._done = value, error, True
        self._error_tb = error.__traceback__ if error is not None else None

    def _deliver(self):
        if self._error is not None:
            raise self._error.with_traceback(self._error_tb)
        return self._value

    # reactor thread ------------------------------------------------------------------
    def _fetch_in_reactor(self, fc, block):
        """The outcome tuple, or None (not ready); a Deferred of either."""
        if self._arrived is not None:
            return self._arrived
        if self._inflight is not None:
            return self._observer() if block else None
        d = fc.get_pending_deferred(self.result_id, block)
        if block:
            self._inflight = d
            d.addBoth(self._landed)
            if self._arrived is not None:  # it failed (or was answered) at once
                return self._arrived
            return self._observer()

        def not_ready(failure):
            if failure.check(ResultNotCompleted):
                return None
            return self._store(failure)
        return d.addCallbacks(lambda value: self._store(value), not_ready)

    def _store(self, outcome):
        from twisted.python.failure import Failure

        self._arrived = ("error", outcome) if isinstance(outcome, Failure) else ("ok", outcome)
        return self._arrived

    def _landed(self, outcome):
        self._inflight = None
        arrived = self._store(outcome)
        observers, self._observers = self._observers, []
        for d in observers:
            d.callback(arrived)
        return None

    def _observer(self):
        from twisted.internet import defer

        def forget(d):
            if d in self._observers:
                self._observers.remove(d)
        d = defer.Deferred(canceller=forget)
        self._observers.append(d)
        return d


# -- map and parallel -----------------------------------------------------------------------


class MultiEngineMapper:
    """``map`` with fixed options: ``mapper.map(func, *sequences)``.

    Made by :meth:`MultiEngineClient.mapper`.  ``dist`` is how the items are
    split over the engines (``'b'`` contiguous blocks, ``'r'`` round
    robin); ``block=None`` means the client's ``block`` at call time;
    ``chunksize`` is as for :meth:`MultiEngineClient.map`.
    """

    def __init__(self, client, dist="b", targets="all", block=None, chunksize=None):
        self.client = client
        self.dist = mapping.check_dist(dist)
        self.targets = _check_targets(targets)
        self.block = None if block is None else _check_block(block)
        self.chunksize = _progress.check_chunksize(chunksize)

    def __repr__(self):
        return (f"<MultiEngineMapper dist={self.dist!r} targets={self.targets!r} "
                f"block={self.block!r} chunksize={self.chunksize!r}>")

    def map(self, func, *sequences, timeout=CLIENT_DEFAULT):
        """Parallel ``list(map(func, *sequences))``: the list of results, in
        order (a PendingResult when not blocking)."""
        return self.client._map(func, sequences, dist=self.dist, targets=self.targets,
                                block=self.block, timeout=timeout, chunksize=self.chunksize)


class ParallelFunction:
    """A decorator turning a function into its parallel map over the engines.

    ``ParallelFunction(mapper)(f)`` is a function ``g(*sequences)`` that
    returns ``mapper.map(f, *sequences)`` (whatever that mapper's ``map``
    returns: results here, a Deferred from the Deferred-based client).  See
    :meth:`MultiEngineClient.parallel`.
    """

    def __init__(self, mapper):
        self.mapper = mapper

    def __call__(self, func):
        if not (callable(func) or isinstance(func, str)):
            raise TypeError(f"parallel() decorates a callable (or the name of a function "
                            f"defined on the engines), not {type(func).__name__}")
        mapper = self.mapper

        def parallel_function(*sequences):
            return mapper.map(func, *sequences)
        if callable(func):
            # name and doc only: a callable object's attributes could hide ``mapper``
            functools.update_wrapper(parallel_function, func, updated=())
        else:
            parallel_function.__name__ = parallel_function.__qualname__ = func
        parallel_function.mapper = mapper
        return parallel_function


# -- the client ------------------------------------------------------------------------------


_live_clients = weakref.WeakSet()
#: Guards making a client's DirectCalls (two threads may call at once).
_direct_lock = threading.Lock()


@before_shutdown
def _release_all():
    """At interpreter exit (reactor thread): drop every client's network objects."""
    for client in list(_live_clients):
        client._closed = True
        client._holder.clear()


def _drop(holder, owned=True):
    # ``owned=False``: the async client (holder[0]) belongs to whoever adapted
    # it (adapt_to_blocking_client) and stays open; only our own objects close.
    for fc in holder if owned else holder[1:]:
        close = getattr(fc, "close", None)
        if close is not None:
            close()  # the data channel and the lane, if any
    holder.clear()


def _release(bridge, holder, owned=True):
    """Drop the client's network objects in the reactor thread (Foolscap
    objects must only be touched there)."""
    try:
        bridge.post(lambda: _drop(holder, owned))
    except Exception:  # noqa: B902 - no reactor left: nothing to release
        pass


class MultiEngineClient:
    """A blocking client of a controller's multi-engine interface.

    ``furl_or_file`` is the controller's multi-engine FURL, or a file holding
    it; by default the file ``security/ipcontroller-mec.furl`` of the
    cluster directory ``cluster_dir`` (default ``$IPKERNEL_DIR`` or
    ``~/.ipkernel``).

    Most methods take ``targets`` (an engine id, a list of ids, or
    ``'all'``) and ``block``; left at None they use the :attr:`targets` and
    :attr:`block` attributes.  With ``block=False`` a method returns a
    :class:`PendingResult` at once.  A call waits at most ``timeout`` seconds
    (per call ``timeout=``, default the client's :attr:`timeout`, which is
    None: no limit, as long computations are normal), can be interrupted
    with Ctrl-C, and raises :class:`~ipkernel.error.ControllerError` when the
    controller is gone (a controller that stops answering is noticed by the
    connection's keepalives within a minute).  ``connect_timeout`` bounds
    connecting.

    ``progress`` enables progress bars for long ``map``/``barrier``/parallel
    calls (also switched off by ``IPKERNEL_PROGRESS=0``; only shown on a
    terminal or in Jupyter).  ``tub`` (a started Foolscap Tub) and ``call_in_reactor``
    (how to run a function in the reactor thread) are for programs and tests
    that run the reactor themselves.

    Use it as a context manager, or call :meth:`close`, to free the
    controller-side state early.
    """

    def __init__(self, furl_or_file=None, *, cluster_dir=None, timeout=None, progress=True,
                 tub=None, call_in_reactor=None, connect_timeout=30):
        from ipkernel import asyncclient
        from ipkernel.client import connect

        bridge = (ReactorBridge(call_in_reactor=call_in_reactor) if call_in_reactor is not None
                  else default_bridge())
        self._setup(bridge, timeout, progress)
        if furl_or_file is None:
            furl_or_file = connect.default_furl_file(cluster_dir=cluster_dir)
        elif cluster_dir is not None:
            raise TypeError("give either a FURL (or FURL file) or cluster_dir, not both")
        connect_timeout = _check_timeout(connect_timeout, "connect_timeout")
        # Kept so a lost connection is made again on the next call.
        self._reconnect_args = (furl_or_file, tub, connect_timeout)
        fc = self._bridge.call(asyncclient.get_multiengine_client, furl_or_file, tub,
                               connect_timeout, what="connecting to the controller")
        self._attach(fc)

    @classmethod
    def _over(cls, fc, bridge, timeout=None, progress=True, owned=True):
        """A client over an already connected async client (for tests, and for
        ``adapt_to_blocking_client`` with ``owned=False``: closing this client
        then leaves ``fc``, its connection and its pending results alone).
        No reconnection: the client lives and dies with ``fc``."""
        self = cls.__new__(cls)
        self._setup(bridge, timeout, progress)
        self._owned = owned
        self._attach(fc)
        return self

    def _setup(self, bridge, timeout, progress):
        self._reconnect_args = None
        self._owned = True
        self._holder = []
        self._closed = True
        self.timeout = timeout
        self.progress = progress
        self._block = True
        self._targets = "all"
        self._stream = None
        self.interrupt_on_ctrl_c = None
        self._bridge = bridge

    def _attach(self, fc):
        self.furl = getattr(fc, "furl", None)
        self._holder.append(fc)
        self._closed = False
        self._finalizer = weakref.finalize(self, _release, self._bridge, self._holder,
                                           self._owned)
        self._finalizer.atexit = False
        _live_clients.add(self)

    # -- attributes ----------------------------------------------------------------

    @property
    def block(self):
        """The default of ``block`` (True: wait for results)."""
        return self._block

    @block.setter
    def block(self, value):
        self._block = _check_block(value)

    @property
    def targets(self):
        """The default of ``targets``: an engine id, a list of ids, or ``'all'``."""
        return self._targets

    @targets.setter
    def targets(self, value):
        self._targets = _check_targets(value)

    @property
    def stream(self):
        """Whether blocking calls that run user code (execute, apply, map, run)
        print the engines' output as it is produced, ``[stdout:N]`` before
        each line.  None (the default): yes in IPython and Jupyter, no in
        scripts.  Each of those calls takes ``stream=`` too."""
        return self._stream

    @stream.setter
    def stream(self, value):
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"stream must be True, False or None (automatic), not {value!r}")
        self._stream = value

    def _streams(self, stream):
        """Whether a call with ``stream=stream`` streams its output."""
        if stream is None:
            stream = self._stream
        if stream is None:
            stream = in_ipython()
        if not isinstance(stream, bool):
            raise TypeError(f"stream must be True, False or None (automatic), not {stream!r}")
        return stream

    def _interrupts(self):
        """Whether Ctrl-C during a blocking call interrupts the engines'
        command (:attr:`interrupt_on_ctrl_c`; None: in IPython and Jupyter)."""
        value = self.interrupt_on_ctrl_c
        return in_ipython() if value is None else bool(value)

    @property
    def timeout(self):
        """Seconds a blocking call may take (None: no limit)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value):
        self._timeout = _check_timeout(value)

    def __repr__(self):
        # The FURL without its secret part (``furl`` holds the whole FURL).
        from ipkernel.fcutil import redacted_furl

        state = "closed" if self._closed else f"targets={self._targets!r} block={self._block!r}"
        return f"<MultiEngineClient {redacted_furl(self.furl) or '?'} {state}>"

    def executor(self, targets=None):
        """A ``concurrent.futures.Executor`` running each submitted call on
        one engine of ``targets`` (default: all registered now), in turn
        (see :class:`~ipkernel.client.executor.EngineExecutor`)."""
        from ipkernel.client.executor import EngineExecutor
        return EngineExecutor(self, targets)

    def activate(self):
        """Make this client the one the IPython magics (``%px``, ``%autopx``,
        ``%result``) use, and register them in the running IPython."""
        from ipkernel import magic
        magic.activate(self)

    # -- plumbing ------------------------------------------------------------------------

    def _resolve_timeout(self, timeout):
        if timeout is CLIENT_DEFAULT:
            return self._timeout
        return _check_timeout(timeout)

    def _resolve(self, targets, block):
        targets = self._targets if targets is None else _check_targets(targets)
        block = self._block if block is None else _check_block(block)
        return targets, block

    def _fc_now(self):
        """The async client (reactor thread only)."""
        if not self._holder:
            raise KernelError("this MultiEngineClient is closed")
        return self._holder[0]

    def _check_open(self):
        if self._closed:
            raise KernelError("this MultiEngineClient is closed; make a new one")

    def _invoke(self, method, args, kwargs):
        fc = self._fc_now()
        remote = getattr(fc, "remote", None)
        if self._reconnect_args is not None and remote is not None and not remote.isConnected():
            # The connection was lost (controller restarted, network cut): the
            # call that noticed failed with ControllerError; make a new one now.
            # Results still pending from the old connection are gone with it.
            from ipkernel import asyncclient

            d = asyncclient.get_multiengine_client(*self._reconnect_args)

            def reconnected(new_fc):
                _drop(self._holder)
                self._holder[:] = [new_fc]
                self.furl = getattr(new_fc, "furl", self.furl)
                return self._invoke(method, args, kwargs)
            return d.addCallback(reconnected)
        if callable(method):
            return method(fc, *args, **kwargs)
        return getattr(fc, method)(*args, **kwargs)

    def _call(self, method, *args, timeout=CLIENT_DEFAULT, what=None, **kwargs):
        """``fc.method(*args, **kwargs)`` (or ``method(fc, ...)`` for a function)
        in the reactor thread, or in this thread on the direct path; wait for
        its result."""
        self._check_open()
        timeout = self._resolve_timeout(timeout)
        what = f"MultiEngineClient.{what or method}"
        if (method in DIRECT_METHODS and kwargs.get("block", True) is True
                and not self._bridge.in_reactor_thread()):   # (there: ReactorThreadError)
            direct = self._direct_calls()
            if direct is not None:
                answer = direct.call(method, args, kwargs, timeout, what)
                if answer is not NOT_DIRECT:
                    return answer
        return self._bridge.call(self._invoke, method, args, kwargs, timeout=timeout, what=what)

    def _direct_calls(self):
        """The DirectCalls of the current async client (made at first use), or None."""
        holder = self._holder
        with _direct_lock:
            if not holder:
                return None
            if len(holder) == 1:
                holder.append(DirectCalls(holder[0], self._bridge))
            return holder[1]

    def _two_phase(self, method, args, targets, block, timeout, post=None, stream=None,
                   **kwargs):
        targets, block = self._resolve(targets, block)
        streaming = method in STREAMED and self._streams(stream) and self._listens()
        if block and streaming:
            # sent non-blocking, then waited for: the output of the call is
            # printed as it comes, and Ctrl-C can interrupt what it runs
            result_id = self._call(method, *args, targets=targets, block=False,
                                   timeout=timeout, **kwargs)
            pending = PendingResult(self, result_id, label=method, targets=targets,
                                    stream=streaming)
            if post is not None:
                pending.add_callback(post)
            return self._wait_interruptibly(pending, timeout)
        try:
            answer = self._call(method, *args, targets=targets, block=block, timeout=timeout,
                                **kwargs)
        except KeyboardInterrupt:
            if block and method in STREAMED:
                self._interrupt_engines(targets)
            raise
        if block:
            return post(answer) if post is not None else answer
        pending = PendingResult(self, answer, label=method, targets=targets, stream=streaming)
        if post is not None:
            pending.add_callback(post)
        return pending

    def _wait_interruptibly(self, pending, timeout):
        """``pending.get_result(timeout=timeout)``; on Ctrl-C (when
        :meth:`_interrupts`) the engines' running command is interrupted too."""
        try:
            return pending.get_result(timeout=timeout)
        except KeyboardInterrupt:
            self._interrupt_engines(pending.targets)
            self._discard([pending])
            raise

    def _interrupt_engines(self, targets):
        """After Ctrl-C in a blocking call to ``targets``: interrupt their running
        command when :meth:`_interrupts` says so, and say what was done."""
        if not self._interrupts() or self._closed:
            return
        targets = "all" if targets is None else targets
        try:
            self.interrupt(targets=targets, block=True, timeout=INTERRUPT_TIMEOUT)
            said = f"interrupted the command running on engine(s) {targets}"
        except BaseException as exc:  # noqa: B902 - say so, and let the Ctrl-C through
            said = f"could not interrupt the engines ({type(exc).__name__}: {exc})"
        print(f"ipkernel: {said} (mec.interrupt_on_ctrl_c = False leaves them running)",
              file=sys.stderr)

    def _listens(self):
        """True when the controller sends this client the live output of its calls."""
        fc = self._holder[0] if self._holder else None
        return getattr(fc, "output", None) is not None

    def _claim_output(self, result_id, answers=False):
        """The CallOutput of the call ``result_id`` (None: no live output);
        ``answers``: its engines' input() is asked here (a streamed call)."""
        fc = self._holder[0] if self._holder else None
        listener = getattr(fc, "output", None)
        return listener.claim(result_id, answers) if listener is not None else None

    def _watch_pending(self, pending):
        """Fetch ``pending`` in the background; settle it (and run its done
        callbacks) when it arrives."""
        def arrived(outcome):
            if outcome is not None:
                _in_callback_thread(pending._settle, outcome)

        def start():
            try:
                d = pending._fetch_in_reactor(self._fc_now(), True)
            except Exception:  # noqa: B902 - closed: nothing will arrive
                return
            if isinstance(d, tuple):
                arrived(d)
            else:
                d.addCallback(arrived)
                d.addErrback(lambda f: _log.failure("watching {p!r} failed", f, p=pending))
        self._bridge.post(start)

    def _fetch_pending(self, pending, block, timeout):
        if pending.client is not self:
            raise ValueError("this PendingResult belongs to another client")
        self._check_open()
        timeout = self._resolve_timeout(timeout)
        output = pending._output
        streaming = block and output is not None and (pending.stream or self._streams(None))
        on_progress = pending._on_progress if block and output is not None else None
        pump = {}
        if streaming or on_progress is not None:
            def show():
                if streaming:
                    output.show()
                if on_progress is not None:
                    on_progress(output.items_done())
            pump = {"wake": output.wake, "pump": show}
        try:
            return self._bridge.call_pumping(
                lambda: pending._fetch_in_reactor(self._fc_now(), block), timeout=timeout,
                what=f"waiting for the result of {pending.label}", **pump)
        except CallTimeout:
            raise CallTimeout(
                f"the result of {pending.label} (pending id {pending.result_id}) did not "
                f"arrive within {timeout:g} s; it is still on its way: call get_result() "
                f"again to keep waiting") from None
        finally:
            if streaming:
                output.show(final=True)   # the ends of lines, and input() nobody answers now

    def _discard(self, pendings):
        """Abort and drop pending results nobody will fetch (fire and forget)."""
        ids = [p.result_id for p in pendings if not p.done]
        if not ids or self._closed:
            return

        def drop():
            fc = self._fc_now()
            for result_id in ids:
                d = fc.abort(result_id)
                d.addBoth(lambda _, i=result_id: fc.get_pending_deferred(i, True))
                d.addErrback(lambda _: None)
        try:
            self._bridge.post(drop)
        except Exception:  # noqa: B902 - best effort
            pass

    # -- the engine methods ------------------------------------------------------------

    # Each engine method that a row of multienginewire describes is made below
    # the class; those here do more.

    def run(self, filename, targets=None, block=None, *, timeout=CLIENT_DEFAULT, stream=None):
        """Execute the local Python file ``filename`` on the targets (like
        :meth:`execute` of its text)."""
        return self._two_phase("run", (filename,), targets, block, timeout, _result_list,
                               stream=stream)

    def zip_pull(self, keys, targets=None, block=None, *, timeout=CLIENT_DEFAULT):
        """Like :meth:`pull`, transposed: for several keys one tuple per key,
        holding that name's value on each target."""
        return self._two_phase("zip_pull", (keys,), targets, block, timeout)

    # -- data distribution ---------------------------------------------------------------

    def scatter(self, key, seq, dist="b", flatten=False, targets=None, block=None, *,
                timeout=CLIENT_DEFAULT):
        """Split ``seq`` over the targets (``dist='b'``: contiguous blocks, the
        first ones one item longer; ``'r'``: round robin) and store each part
        as ``key``.  ``flatten=True`` stores one-item parts as the bare item."""
        mapping.check_dist(dist)
        return self._two_phase("scatter", (key, seq), targets, block, timeout, dist=dist,
                               flatten=flatten)

    def gather(self, key, dist="b", targets=None, block=None, *, timeout=CLIENT_DEFAULT):
        """Pull ``key`` from the targets and join the parts (the reverse of
        :meth:`scatter` with the same ``dist``)."""
        mapping.check_dist(dist)
        return self._two_phase("gather", (key,), targets, block, timeout, dist=dist)

    def raw_map(self, func, seqs, dist="b", targets=None, block=None, *,
                timeout=CLIENT_DEFAULT, stream=None):
        """Parallel ``list(map(func, *seqs))`` over the targets, as one call."""
        mapping.check_dist(dist)
        return self._two_phase("raw_map", (func, seqs), targets, block, timeout, dist=dist,
                               stream=stream)

    def map(self, func, *sequences, dist="b", targets="all", block=None,
            timeout=CLIENT_DEFAULT, chunksize=None):
        """Parallel ``list(map(func, *sequences))``: the results, in order.

        The items are split over ``targets`` (all engines by default, not
        the client's ``targets``) by ``dist``; ``block=None`` follows the
        client's ``block``.  ``func`` is a callable or the name of a function
        defined on the engines.  Not load balanced.

        A blocking map is one call per engine (its progress bar follows the
        engines' reports of how far they got).  ``chunksize=k`` sends it in
        chunks of ``k`` items per engine call instead (see
        :func:`ipkernel.client.progress.plan_map`); each engine still
        computes exactly its part of the split, in order.  A non-blocking
        map is always one call (:meth:`raw_map`), and takes no ``chunksize``.
        """
        return self._map(func, sequences, dist=dist, targets=targets, block=block,
                         timeout=timeout, chunksize=chunksize)

    def mapper(self, dist="b", targets="all", block=None, chunksize=None):
        """A :class:`MultiEngineMapper` with these options (``block=None``:
        the client's ``block`` when ``map`` is called)."""
        return MultiEngineMapper(self, dist=dist, targets=targets, block=block,
                                 chunksize=chunksize)

    def parallel(self, dist="b", targets=None, block=None, chunksize=None):
        """A decorator making a function map itself over the engines::

            @mec.parallel()
            def f(x):
                return 10.0 * x ** 4

            f(range(32))   # [f(0), f(1), ...], computed on the engines

        ``targets``/``block`` left at None take the client's attributes now,
        when decorating; ``chunksize`` is as for :meth:`map`.
        """
        targets, block = self._resolve(targets, block)
        return ParallelFunction(self.mapper(dist=dist, targets=targets, block=block,
                                            chunksize=chunksize))

    def _map(self, func, sequences, dist, targets, block, timeout, chunksize=None):
        if not (callable(func) or isinstance(func, str)):
            raise TypeError(f"map needs a callable or the name of a function defined on the "
                            f"engines, not {type(func).__name__}")
        if not sequences:
            raise TypeError("map needs at least one sequence")
        seqs = mapping.as_sequences(sequences)
        lengths = [len(s) for s in seqs]
        if len(set(lengths)) > 1:
            raise ValueError(f"the sequences to map over have different lengths: {lengths}")
        mapping.check_dist(dist)
        targets = _check_targets(targets)
        block = self._block if block is None else _check_block(block)
        chunksize = _progress.check_chunksize(chunksize)
        if block:
            return self._map_in_chunks(func, seqs, dist, targets, timeout, chunksize)
        if chunksize is not None:
            raise ValueError("chunksize= is for blocking maps: a non-blocking map is one "
                             "call (use block=True, or leave chunksize out)")
        return self.raw_map(func, seqs, dist=dist, targets=targets, block=False,
                            timeout=timeout)

    def _map_in_chunks(self, func, seqs, dist, targets, timeout, chunksize):
        """A blocking map, in the chunks of :func:`~ipkernel.client.progress.plan_map`
        (one ordinary call when that is a single chunk), advancing a bar."""
        timeout = self._resolve_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining():
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallTimeout(f"MultiEngineClient.map did not finish within {timeout:g} s")
            return left
        n_items = len(seqs[0])
        if chunksize is None:
            return self._map_whole(func, seqs, dist, targets, timeout, n_items)
        if not _progress.may_chunk(n_items, chunksize):  # whatever the number of engines
            return self.raw_map(func, seqs, dist=dist, targets=targets, block=True,
                                timeout=timeout)
        if targets == "all":
            # (raw_map would ask for them too: passing them on saves that call)
            ids = self.get_ids(timeout=remaining())
        else:
            ids = [targets] if isinstance(targets, int) else targets
        plan = _progress.plan_map(n_items, len(ids), chunksize) if ids else [[]]
        if len(plan) < 2:  # one call (no engines at all: raw_map says so)
            return self.raw_map(func, seqs, dist=dist, block=True, timeout=remaining(),
                                targets=ids if targets == "all" and ids else targets)
        positions = [_progress.chunk_positions(n_items, len(ids), dist, chunk) for chunk in plan]
        calls = [([_progress.take(seq, where) for seq in seqs], ids[:len(chunk)])
                 for chunk, where in zip(plan, positions)]
        with _progress.bar(n_items, "map", _progress.wanted(self.progress)) as shown:
            chunk_results = self._call(_run_chunks, func, calls, dist,
                                       lambda k: shown.update(len(positions[k])),
                                       timeout=remaining(), what="map")
        results = [None] * n_items
        for where, values in zip(positions, chunk_results):
            if len(values) != len(where):
                raise KernelError(f"a chunk of the map returned {len(values)} results for "
                                  f"{len(where)} items")
            for position, value in zip(where, values):
                results[position] = value
        return results

    def _map_whole(self, func, seqs, dist, targets, timeout, n_items):
        """A blocking map as one call per engine.  Its bar, when one is shown,
        follows the engines' own reports of how far they got (an engine
        reports at most a few times a second: a short map not at all)."""
        if not (_progress.wanted(self.progress) and self._listens()):
            return self.raw_map(func, seqs, dist=dist, targets=targets, block=True,
                                timeout=timeout)
        with _progress.bar(n_items, "map", True) as shown:
            pending = self.raw_map(func, seqs, dist=dist, targets=targets, block=False,
                                   timeout=timeout)
            pending.stream = self._streams(None)
            done = [0]

            def advance(count):
                if count > done[0]:
                    shown.update(min(count, n_items) - done[0])
                    done[0] = min(count, n_items)
            pending._on_progress = advance
            results = self._wait_interruptibly(pending, timeout)
            advance(n_items)
        return results

    # -- pending results -------------------------------------------------------------------

    def barrier(self, pending_results, *, timeout=CLIENT_DEFAULT):
        """Wait until every one of ``pending_results`` has finished.

        Their outcomes (values or exceptions) are kept in each
        :class:`PendingResult`, not raised here.  ``timeout`` bounds the
        whole wait.  Shows a progress bar when it takes a while.
        """
        pendings = list(pending_results)
        for p in pendings:
            if not isinstance(p, PendingResult):
                raise NotAPendingResult(f"barrier takes PendingResults, not "
                                        f"{type(p).__name__}: {p!r:.100}")
        timeout = self._resolve_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        show = _progress.wanted(self.progress)
        with _progress.bar(len(pendings), "barrier", show) as shown:
            for p in sorted(pendings):
                left = None
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise CallTimeout(f"MultiEngineClient.barrier did not finish within "
                                          f"{timeout:g} s")
                try:
                    p.get_result(block=True, timeout=left)
                except BaseException:  # noqa: B902
                    if not p.done:  # not the call's outcome (timeout, Ctrl-C, closed)
                        raise
                    # the call's own exception: kept in the PendingResult
                shown.update(1)

    def abort(self, pending_result_or_id, *, timeout=CLIENT_DEFAULT):
        """Abort a non-blocking call (a PendingResult or its id): its commands
        that have not started are removed and its result fails with
        :class:`~ipkernel.error.Aborted`.  True if something was aborted,
        False if the call had already finished."""
        result_id = getattr(pending_result_or_id, "result_id", pending_result_or_id)
        if not isinstance(result_id, str):
            raise TypeError(f"abort takes a PendingResult or its id, not "
                            f"{pending_result_or_id!r:.100}")
        return self._call("abort", result_id, timeout=timeout)

    def flush(self, *, timeout=CLIENT_DEFAULT):
        """Forget every unfetched non-blocking result of this client on the
        controller (their PendingResults can no longer be fetched)."""
        self._call("clear_pending_deferreds", timeout=timeout, what="flush")

    clear_pending_results = flush

    def get_ids(self, *, timeout=CLIENT_DEFAULT):
        """The ids of the registered engines, sorted (always blocking)."""
        return self._call("get_ids", timeout=timeout)

    def sync_imports(self, quiet=False, targets=None):
        """A context manager importing modules here and on the engines::

            with mec.sync_imports():
                import numpy, os.path as p
                from math import sqrt

        The import statements run by the block's own code are done here as
        usual, then, when the block ends, run on ``targets`` (default: the
        client's) in one blocking call; an import failing there raises
        :class:`~ipkernel.error.CompositeError`.  Imports made by imported
        modules or by functions called in the block are not sent, nor
        relative ones; nothing is sent if the block raises.  Unless
        ``quiet``, prints ``importing numpy on engine(s)`` per statement.
        """
        from ipkernel.client.syncimports import SyncImports

        targets = self._targets if targets is None else _check_targets(targets)
        return SyncImports(lambda lines: self.execute(lines, targets=targets, block=True),
                           quiet=quiet)

    # -- dictionary interface ---------------------------------------------------------------

    def __setitem__(self, key, value):
        if not isinstance(key, str):
            raise TypeError(f"engine variable names are str, not {type(key).__name__}; "
                            f"use a view for engines: client[0][name] = value")
        self.push({key: value})

    def __getitem__(self, key):
        """``client['a']``: ``pull('a')``.  ``client[0]``, ``client[[0, 2]]``,
        ``client[1:3]``, ``client[:]``: a :class:`~ipkernel.client.view.View`
        of those engines (a slice is over the ids registered now)."""
        if isinstance(key, str):
            return self.pull(key)
        from ipkernel.client.view import View, select_targets

        if isinstance(key, bool) or not isinstance(key, (int, slice, list, tuple, range)):
            select_targets(key, [])  # raises the TypeError saying what indexes a client
        return View(self, select_targets(key, self.get_ids()))

    __iter__ = None  # __getitem__ takes names, not positions

    def __len__(self):
        return len(self.get_ids())

    def __bool__(self):
        return True

    # -- life cycle -------------------------------------------------------------------------------

    def close(self):
        """Forget this client's unfetched results on the controller and drop the
        connection objects.  Further calls raise KernelError.  Idempotent."""
        if self._closed:
            return
        try:
            if self._owned:  # an adapted client's results belong to its async client
                self._call("clear_pending_deferreds", timeout=min(self._timeout or 5, 5),
                           what="close")
        except KernelError:
            pass  # the controller is gone, or this is the reactor thread
        self._closed = True
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    # -- benchmark ---------------------------------------------------------------------------

    def benchmark(self, push_size=10000, *, timeout=CLIENT_DEFAULT):
        """Measure this connection: a dict with ``single_engine_latency`` and
        ``all_engine_latency`` (ms per ``execute('pass')``, best of 3 runs of
        10) and, when numpy is available, ``single_engine_push`` and
        ``all_engine_push`` (MB/s delivered pushing a float64 array of
        ``push_size`` items to one / every engine)."""
        ids = self.get_ids(timeout=timeout)
        if not ids:
            from ipkernel.error import NoEnginesRegistered
            raise NoEnginesRegistered("benchmark needs at least one registered engine")

        def best(action, repeat=3, number=10):
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                for _ in range(number):
                    action()
                times.append((time.perf_counter() - start) / number)
            return min(times)

        stats = {
            "single_engine_latency": 1000 * best(
                lambda: self.execute("pass", targets=ids[0], block=True, timeout=timeout)),
            "all_engine_latency": 1000 * best(
                lambda: self.execute("pass", targets=ids, block=True, timeout=timeout)),
        }
        try:
            import numpy
        except ImportError:
            return stats
        data = numpy.zeros(int(push_size), dtype=numpy.float64)
        megabytes = data.nbytes / 1e6
        name = "_ipkernel_benchmark_data"
        for key, targets in (("single_engine_push", ids[0]), ("all_engine_push", ids)):
            seconds = best(lambda t=targets: self.push({name: data}, targets=t, block=True,
                                                       timeout=timeout), repeat=3, number=3)
            copies = 1 if isinstance(targets, int) else len(targets)
            stats[key] = megabytes * copies / seconds
        self.execute(f"del {name}", targets=ids, block=True, timeout=timeout)
        return stats


def _blocking_signature(call):
    """``(self, <the interface's arguments>, targets=None, block=None, *,
    timeout=CLIENT_DEFAULT)``: None means the client's own setting."""
    signature = interface_signature(IFullSynchronousMultiEngine[call.name])
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [p for name, p in signature.parameters.items() if name != "targets"]
    params += [inspect.Parameter("targets", kind, default=None),
               inspect.Parameter("block", kind, default=None),
               inspect.Parameter("timeout", inspect.Parameter.KEYWORD_ONLY,
                                 default=CLIENT_DEFAULT)]
    if call.name in STREAMED:
        params.append(inspect.Parameter("stream", inspect.Parameter.KEYWORD_ONLY, default=None))
    return signature.replace(parameters=params)


def _blocking_method(call):
    """MultiEngineClient's ``<name>`` for the multi-engine call ``call``: the
    async client's, waited for (a PendingResult with ``block=False``)."""
    signature = _blocking_signature(call)
    names = [n for n in signature.parameters
             if n not in ("self", "targets", "block", "timeout", "stream")]
    post = _result_list if call.result == multienginewire.COMMAND_RESULTS else None

    def method(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        return self._two_phase(call.name, tuple(given[n] for n in names), given["targets"],
                               given["block"], given["timeout"], post,
                               stream=given.get("stream"))
    method.__name__ = call.name
    method.__qualname__ = f"MultiEngineClient.{call.name}"
    method.__signature__ = signature
    method.__doc__ = inspect.cleandoc(call.doc or IFullSynchronousMultiEngine[call.name].getDoc())
    return method


for _call in multienginewire.MULTIENGINE_CALLS:
    if _call.multiplexed and _call.name not in vars(MultiEngineClient):
        setattr(MultiEngineClient, _call.name, _blocking_method(_call))
del _call


def _run_chunks(fc, func, calls, dist, landed):
    """Run the chunks of a map: ``calls`` is a list of ``(seqs, targets)``.

    Reactor thread.  Every chunk is submitted as a non-blocking map at once,
    in order (an engine runs its pieces in that order), and fetched as soon as
    it is submitted; ``landed(k)`` is called as chunk ``k`` arrives.  A
    Deferred of the list of the chunks' results.  On the first failure, or
    when cancelled (timeout, Ctrl-C), the chunks not yet in are aborted and
    later answers are dropped.
    """
    from twisted.internet import defer

    unfetched = set()  # ids submitted whose results have not arrived
    over = []

    async def chunk(seqs, targets):
        result_id = await fc.raw_map(func, seqs, dist=dist, targets=targets, block=False)
        if over:  # given up meanwhile: nobody wants it
            d = fc.abort(result_id)
            d.addBoth(lambda _: fc.get_pending_deferred(result_id, True))
            d.addErrback(lambda _: None)
            return None
        unfetched.add(result_id)
        try:
            return await fc.get_pending_deferred(result_id, True)
        finally:
            unfetched.discard(result_id)

    def give_up():
        over.append(True)
        for result_id in list(unfetched):
            fc.abort(result_id).addErrback(lambda _: None)  # its fetch drains it
    chunks = [defer.Deferred.fromCoroutine(chunk(seqs, targets)) for seqs, targets in calls]
    return _progress.gather_landing(chunks, landed, give_up)


def get_multiengine_client(furl_or_file="", **options):
    """A connected :class:`MultiEngineClient`: IPython 0.10's spelling of
    ``MultiEngineClient(furl_or_file, **options)``.

    ``furl_or_file`` ``''`` or None means the FURL file
    ``security/ipcontroller-mec.furl`` of the default cluster directory
    (``$IPKERNEL_DIR`` or ``~/.ipkernel``); ``options`` are those of
    :class:`MultiEngineClient` (``timeout``, ``cluster_dir``, ...).
    """
    return MultiEngineClient(furl_or_file or None, **options)
