"""Where user code runs: off the reactor thread, one call at a time, in order.

An executor takes plain callables and returns Deferreds that fire in the
reactor thread.  :class:`ThreadExecutor` runs them in one dedicated daemon
thread, so an engine busy with user code still answers the network (and
other in-process engines keep working).  ``ipengine`` supplies an executor
that uses the process's main thread instead, so signals can interrupt
blocking calls.
"""
import ctypes
import queue
import threading

from twisted.internet import defer
from twisted.python.failure import Failure

_STOP = object()


class ThreadExecutor:
    """Run callables in one dedicated thread, first come first served."""

    def __init__(self, name="ipkernel-user-code", reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._name = name
        self._jobs = queue.SimpleQueue()
        self._thread = None
        self._running_job = False
        self._lock = threading.Lock()
        self._stopped = None

    def submit(self, func, *args, **kwargs):
        """Run ``func(*args, **kwargs)`` in the user thread; return a Deferred
        that fires (in the reactor thread) with its result or failure."""
        if self._stopped is not None:
            return defer.fail(RuntimeError("the executor has been stopped"))
        d = defer.Deferred()
        self._put((d.callback, d.errback, func, args, kwargs))
        return d

    def submit_plain(self, func, args, on_result, on_failure):
        """Run ``func(*args)`` like :meth:`submit`, without a Deferred: its result
        goes to ``on_result(value)``, a failure to ``on_failure(Failure)``, both
        called in the reactor thread."""
        if self._stopped is not None:
            on_failure(Failure(RuntimeError("the executor has been stopped")))
            return
        self._put((on_result, on_failure, func, args, {}))

    def _put(self, job):
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def _loop(self):
        call = self._reactor.callFromThread
        while True:
            try:
                job = self._jobs.get()
            except KeyboardInterrupt:  # a late interrupt that missed its job
                continue
            if job is _STOP:
                break
            on_result, on_failure, func, args, kwargs = job
            outcome = None
            try:
                with self._lock:
                    self._running_job = True
                try:
                    outcome = (on_result, func(*args, **kwargs))
                except BaseException as exc:  # noqa: B902 - delivered to the caller
                    outcome = (on_failure, Failure(exc))
                self._finish_job()
            except KeyboardInterrupt as exc:  # arrived between user code and bookkeeping
                self._finish_job()
                if outcome is None:
                    outcome = (on_failure, Failure(exc))
            call(*outcome)
        if self._stopped is not None:
            call(self._stopped.callback, None)

    def _finish_job(self):
        with self._lock:
            self._running_job = False
            # cancel an interrupt that was sent but not yet raised
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)

    @property
    def busy(self):
        """True while a submitted callable is running."""
        return self._running_job

    def user_code_done(self):
        """Called from inside a job: its user code has ended, so what is left of
        it (sending the result) is not interrupted and the executor is idle."""
        self._finish_job()

    def interrupt(self):
        """Raise KeyboardInterrupt in the running callable; return True if one was running.

        Takes effect at the next Python bytecode, so it stops Python loops but
        not a blocking C call (such as ``time.sleep``) until that returns.
        """
        with self._lock:
            if self._thread is None or not self._running_job:
                return False
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._thread.ident), ctypes.py_object(KeyboardInterrupt))
            return True

    def stop(self):
        """Stop the thread after the job now running; return a Deferred that
        fires once it has exited.  Waiting jobs fail with RuntimeError."""
        if self._stopped is not None:
            return self._stopped if not self._stopped.called else defer.succeed(None)
        self._stopped = defer.Deferred()
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            job[1](Failure(RuntimeError("the engine stopped before running this call")))
        if self._thread is None:
            self._stopped.callback(None)
            return defer.succeed(None)
        self._jobs.put(_STOP)
        d = defer.Deferred()
        self._stopped.addBoth(lambda r: (d.callback(None), r)[1])
        return d
