"""The Twisted reactor behind the blocking clients.

Blocking clients talk to the controller through Twisted, whose reactor must
keep turning while the user's thread waits.  This module provides that:

* The reactor is started lazily, the first time a blocking call needs it
  (never when a module is imported), in one daemon thread per process.  If
  the reactor already runs somewhere else (a Twisted application, a test
  runner), that reactor is used and no thread is started.
* :func:`blocking_call` runs a function in the reactor thread and waits for
  the Deferred it returns.  The wait can be bounded (``timeout``), and
  Ctrl-C during the wait cancels the call and hands control back at once.
* A blocking call made *from* the reactor thread would wait for itself
  forever; it fails at once with :class:`ReactorThreadError` instead.
* At interpreter exit the client Tub is stopped and the reactor thread shut
  down (only when this module started it).

:class:`ReactorBridge` bundles the two choices a caller may want to replace
(tests do): how to run a function in the reactor thread, and how to tell
whether the current thread is the reactor thread.
"""
import atexit
import threading
import time

from ipkernel.error import KernelError

__all__ = ["ReactorThreadError", "CallTimeout", "ReactorNotRunning", "ReactorBridge",
           "blocking_call", "call_in_reactor", "ensure_reactor", "default_bridge",
           "before_shutdown", "reactor_thread"]

#: How often (seconds) a waiting thread wakes up to notice Ctrl-C and a dead reactor.
POLL_INTERVAL = 0.1
#: How long to wait for a freshly started reactor thread to begin turning.
START_TIMEOUT = 10.0
#: Extra time the waiting thread grants the reactor to deliver a timeout it fired.
TIMEOUT_GRACE = 5.0
#: Bounds for the clean shutdown at interpreter exit.
EXIT_TIMEOUT = 5.0


class ReactorThreadError(KernelError):
    """A blocking call was made from the thread that runs the Twisted reactor.

    The call would wait for the reactor, which cannot turn while it waits:
    code running in the reactor thread must use the Deferred-based clients of
    :mod:`ipkernel.asyncclient` instead.
    """


class CallTimeout(KernelError, TimeoutError):
    """A blocking call did not finish within its timeout (it was cancelled)."""


def call_timeout(what, timeout):
    """The CallTimeout of a blocking call ``what`` given up after ``timeout`` s."""
    return CallTimeout(
        f"{what} did not finish within {timeout:g} s and was given up "
        f"(work already sent to engines may still run: see interrupt() and "
        f"abort()); pass a larger timeout=, or timeout=None to wait without limit")


class ReactorNotRunning(KernelError):
    """The reactor the blocking clients need has stopped or cannot be started."""


def _get_reactor():
    from twisted.internet import reactor
    return reactor


def _describe(func):
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


# -- the reactor thread ------------------------------------------------------------------

_lock = threading.Lock()
_thread = None  # the thread this module started, if any


def reactor_thread():
    """The reactor thread started by this module, or None (not started, or a
    reactor running elsewhere is used)."""
    return _thread


def _run_reactor(reactor):
    reactor.run(installSignalHandlers=False)


def ensure_reactor():
    """Return the global reactor, running.

    Uses the reactor if it already runs (in whatever thread); otherwise
    starts it in a daemon thread (once per process) and waits until it turns.
    Raises :class:`ReactorNotRunning` if it ran before and has stopped (a
    Twisted reactor cannot be restarted) or does not start in time.
    """
    global _thread
    reactor = _get_reactor()
    with _lock:
        if _thread is not None:
            if not _thread.is_alive():
                raise ReactorNotRunning(
                    "the reactor thread of the blocking clients has stopped (the interpreter "
                    "is exiting, or something stopped the Twisted reactor); blocking calls "
                    "are no longer possible in this process")
        elif reactor.running:
            return reactor
        elif getattr(reactor, "_startedBefore", False):
            raise ReactorNotRunning(
                "the Twisted reactor of this process has already run and stopped, and a "
                "reactor cannot be restarted; blocking clients need a running reactor")
        else:
            started = threading.Event()
            reactor.callWhenRunning(started.set)
            thread = threading.Thread(target=_run_reactor, args=(reactor,), daemon=True,
                                      name="ipkernel-reactor")
            thread.start()
            _thread = thread
            atexit.register(_shutdown_at_exit)
            if not started.wait(START_TIMEOUT):
                raise ReactorNotRunning(f"the reactor thread did not start within "
                                        f"{START_TIMEOUT:g} s")
    return reactor


def call_in_reactor(func, *args, **kwargs):
    """Arrange for ``func(*args, **kwargs)`` to run in the reactor thread
    (starting the reactor thread if needed); returns at once."""
    ensure_reactor().callFromThread(func, *args, **kwargs)


def in_reactor_thread():
    """True when the current thread is the one running the Twisted reactor."""
    from twisted.python import threadable
    return threadable.isInIOThread()


_default_call_in_reactor = call_in_reactor
_default_in_reactor_thread = in_reactor_thread


_exit_hooks = []


def before_shutdown(func):
    """Have ``func()`` run in the reactor thread at interpreter exit, before
    the client Tub stops (only if this module started the reactor thread).
    Returns ``func``."""
    _exit_hooks.append(func)
    return func


def _run_exit_hooks():
    import gc

    for hook in list(_exit_hooks):
        try:
            hook()
        except Exception:  # noqa: B902 - one failing hook must not stop the others
            pass
    # Network objects dropped by the hooks are freed now, in this thread,
    # while Foolscap can still send their release messages.
    gc.collect()


def _shutdown_at_exit():
    """Release the clients, stop the client Tub, then stop the reactor thread
    this module started."""
    thread = _thread
    if thread is None or not thread.is_alive():
        return
    from ipkernel.client import connect

    reactor = _get_reactor()
    bridge = default_bridge()
    for step, what in ((_run_exit_hooks, "releasing the clients"),
                       (connect.stop_shared_tub, "stopping the client Tub")):
        try:
            bridge.call(step, timeout=EXIT_TIMEOUT, what=what)
        except BaseException:  # noqa: B902 - exiting anyway; never block or fail the exit
            pass
    reactor.callFromThread(reactor.stop)
    thread.join(EXIT_TIMEOUT)


# -- waiting for a call in the reactor -------------------------------------------------------


class _Call:
    """One call running in the reactor; the waiting thread polls :attr:`done`."""

    def __init__(self, bridge, func, args, kwargs, timeout, what):
        self.bridge = bridge
        self.func, self.args, self.kwargs = func, args, kwargs
        self.timeout = timeout
        self.what = what
        self.done = threading.Event()
        #: True once the outcome is in (``done`` may also be set by others: see call_pumping)
        self.finished = False
        self.value = None
        self.failure = None
        self.deferred = None
        self.timer = None
        self.timed_out = False
        self.abandoned = False  # the waiter went away (Ctrl-C); drop the outcome

    # -- in the reactor thread ----------------------------------------------------
    def start(self):
        from twisted.internet import defer

        if self.abandoned:
            return
        d = defer.maybeDeferred(self.func, *self.args, **self.kwargs)
        self.deferred = d
        if self.timeout is not None and not d.called:
            self.timer = self.bridge.reactor.callLater(self.timeout, self._time_out)
        d.addBoth(self._settle)

    def _time_out(self):
        self.timer = None
        self.timed_out = True
        self.deferred.cancel()

    def _settle(self, outcome):
        from twisted.python.failure import Failure

        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.deferred = None
        if not self.abandoned:
            if isinstance(outcome, Failure):
                self.failure = outcome
            else:
                self.value = outcome
        self.finished = True
        self.done.set()
        return None  # the outcome is delivered through this object, not the chain

    def cancel(self):
        self.abandoned = True
        if self.deferred is not None:
            self.deferred.cancel()

    # -- in the waiting thread ------------------------------------------------------
    def timeout_error(self):
        return call_timeout(self.what, self.timeout)

    def outcome(self):
        if self.timed_out:  # cancelled by the timer: whatever the chain made of that
            raise self.timeout_error()
        if self.failure is None:
            return self.value
        failure, self.failure = self.failure, None
        failure.raiseException()


class ReactorBridge:
    """Runs functions in the reactor thread for blocking callers.

    ``call_in_reactor(func)`` must arrange for ``func()`` to run in the
    reactor thread soon and return at once (default: start the reactor
    thread if needed, then ``reactor.callFromThread``).
    ``in_reactor_thread()`` tells whether the caller is the reactor thread
    (default: Twisted's ``threadable.isInIOThread``).
    """

    def __init__(self, call_in_reactor=None, in_reactor_thread=None, reactor=None):
        self._call_in_reactor = call_in_reactor or _default_call_in_reactor
        self._in_reactor_thread = in_reactor_thread or _default_in_reactor_thread
        self._reactor = reactor

    @property
    def reactor(self):
        """The reactor used for timers (the global one unless given)."""
        return self._reactor if self._reactor is not None else _get_reactor()

    def call(self, func, *args, timeout=None, what=None, **kwargs):
        """Run ``func(*args, **kwargs)`` in the reactor thread and return the
        result of the Deferred it returns (or its plain return value).

        The exception it fails with is raised here.  After ``timeout``
        seconds (None: no limit) the call is cancelled and
        :class:`CallTimeout` raised, naming ``what`` (default: the function's
        name).  KeyboardInterrupt while waiting cancels the call and
        propagates at once.  From the reactor thread:
        :class:`ReactorThreadError`.
        """
        return self.call_pumping(func, *args, timeout=timeout, what=what, **kwargs)

    def call_pumping(self, func, *args, timeout=None, what=None, wake=None, pump=None,
                     **kwargs):
        """:meth:`call`, running ``pump()`` in the waiting thread each time the
        ``threading.Event`` ``wake`` is set (and once the call is over, before
        returning or raising): how a blocking call prints what arrives while
        it waits."""
        what = what or _describe(func)
        if timeout is not None:
            timeout = float(timeout)
            if not timeout > 0:
                raise ValueError(f"timeout must be a positive number of seconds or None, "
                                 f"not {timeout!r}")
        if self._in_reactor_thread():
            raise ReactorThreadError(
                f"{what} is a blocking call and was made from the thread that runs the "
                f"Twisted reactor: it would wait forever for the reactor it is blocking. "
                f"In Twisted code (reactor thread, callbacks, inlineCallbacks, async "
                f"functions run by the reactor) use the Deferred-based clients of "
                f"ipkernel.asyncclient, or run blocking code in another thread "
                f"(twisted.internet.threads.deferToThread)")
        call = _Call(self, func, args, kwargs, timeout, what)
        if wake is not None:
            call.done = wake   # (set by the call's end too)
        deadline = None if timeout is None else time.monotonic() + timeout + TIMEOUT_GRACE
        try:
            self._call_in_reactor(call.start)
            while not call.finished:
                if call.done.wait(POLL_INTERVAL) and pump is not None:
                    pump()
                if call.finished:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    # the reactor did not even deliver the timeout: it is stuck
                    self._call_in_reactor(call.cancel)
                    raise call.timeout_error()
                self._check_reactor(what)
        except BaseException:
            # Ctrl-C (or anything else) while waiting: give the call up, return now
            call.abandoned = True
            try:
                self._call_in_reactor(call.cancel)
            except Exception:  # noqa: B902 - the reactor is gone: nothing to cancel
                pass
            raise
        finally:
            if pump is not None:
                pump()
        return call.outcome()

    def in_reactor_thread(self):
        """True when the calling thread runs the reactor (a blocking call
        made here would raise :class:`ReactorThreadError`)."""
        return self._in_reactor_thread()

    def post(self, func):
        """Run ``func()`` in the reactor thread soon, without waiting for it."""
        self._call_in_reactor(func)

    def _check_reactor(self, what):
        thread = _thread
        if self._call_in_reactor is _default_call_in_reactor and thread is not None \
                and not thread.is_alive():
            raise ReactorNotRunning(f"{what} cannot finish: the reactor thread has stopped "
                                    f"(is the interpreter exiting?)")


_default_bridge = ReactorBridge()


def default_bridge():
    """The process-wide :class:`ReactorBridge` (lazy reactor thread)."""
    return _default_bridge


def blocking_call(func, *args, timeout=None, **kwargs):
    """Run ``func(*args, **kwargs)`` in the reactor thread (started on first
    use) and wait for its result; see :meth:`ReactorBridge.call`."""
    return _default_bridge.call(func, *args, timeout=timeout, **kwargs)
