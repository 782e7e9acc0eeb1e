"""Run user code in the process's main thread, so signals can interrupt it.

``ipengine`` runs the Twisted reactor in a background thread and gives the
main thread to :class:`MainThreadExecutor`: :meth:`~MainThreadExecutor.run`
loops over submitted jobs until the executor is stopped.  The API the
engine uses is the one of :class:`~ipkernel.engine.executor.ThreadExecutor`
(``submit``, ``interrupt``, ``stop``, ``busy`` called from the reactor
thread, ``user_code_done`` from inside a job); results come back as
Deferreds fired in the reactor thread, or, with a
:class:`~ipkernel.engine.reactorgate.ReactorGate`, in the main thread while
the reactor thread waits for events (which is just as safe, and saves
waking that thread).

With a gate that :attr:`~ipkernel.engine.reactorgate.ReactorGate.drives`,
the main thread also runs the event loop while no job runs: a small call
is read, run and answered by this thread alone (one wake-up, no hand-off
between threads).  While a job runs the gate is lent to the reactor
thread, which takes the loop back if the job is long or needs it (see
:mod:`ipkernel.engine.reactorgate`).

Interrupts are real SIGINTs sent to the main thread, so they stop Python
loops and also blocking calls such as ``time.sleep`` or socket reads (any
call that returns on EINTR).  The SIGINT handler (installed by
:meth:`~MainThreadExecutor.install_signal_handlers`) tells the cases apart:

* an interrupt asked for by :meth:`interrupt` raises KeyboardInterrupt in
  the job it was aimed at, and is ignored if that job has already ended.
  A signal that lands just before the job enters a blocking call (between
  two of Python's checks for signals) is only seen once that call returns,
  so while it is not handled and the job still runs, the signal is sent
  again every :data:`INTERRUPT_RESEND` seconds (at most
  :data:`INTERRUPT_RESENDS` times): the blocking call then returns on EINTR;
* any other SIGINT (Ctrl-C, ``launcher.interrupt()``) interrupts the
  running job; when no job runs it is logged and ignored, unless a second
  one follows within :data:`SIGINT_REPEAT` seconds (Ctrl-C twice at the
  terminal of a hand-started engine): that stops the engine;
* SIGTERM stops the engine, interrupting the running job first.
"""
import itertools
import queue
import signal
import threading
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

_STOP = object()
_LOOP = object()   # the reactor thread handed the event loop over

#: Two SIGINTs this close together (seconds) while idle stop the engine.
SIGINT_REPEAT = 2.0
#: Seconds after which an interrupt not yet handled is sent again, and how often.
INTERRUPT_RESEND = 0.2
INTERRUPT_RESENDS = 25


class MainThreadExecutor:
    """Jobs run one at a time, in order, in the thread that calls :meth:`run`."""

    def __init__(self, reactor=None, gate=None):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self._current = None          # serial number of the running job
        self._aimed = None            # the job the latest interrupt is meant for
        self._signal_pending = False  # our SIGINT was sent and not yet handled
        self._main_ident = None
        self._handlers_installed = False
        self._idle_sigint = None      # when the last SIGINT came while idle (monotonic)
        self._stopping = False        # no new jobs
        self._finished = False        # run() has returned
        self._on_finished = []        # Deferreds fired (in the reactor) when run() returns
        self.stop_reason = None
        #: A :class:`~ipkernel.engine.reactorgate.ReactorGate` (or None): results
        #: are delivered from this thread when the reactor is waiting.
        self.gate = gate

    # -- called from the reactor thread ---------------------------------------------

    def submit(self, func, *args, **kwargs):
        """Queue ``func(*args, **kwargs)``; return a Deferred firing in the reactor
        thread with its result or failure."""
        if self._stopping:
            return defer.fail(RuntimeError("the engine is stopping; the call was not run"))
        d = defer.Deferred()
        self._jobs.put((d.callback, d.errback, func, args, kwargs))
        return d

    def submit_plain(self, func, args, on_result, on_failure):
        """Queue ``func(*args)`` like :meth:`submit`, without a Deferred: its
        result goes to ``on_result(value)``, a failure to ``on_failure(Failure)``,
        called where a Deferred from :meth:`submit` would fire."""
        if self._stopping:
            on_failure(Failure(RuntimeError("the engine is stopping; the call was not run")))
            return
        self._jobs.put((on_result, on_failure, func, args, {}))

    @property
    def busy(self):
        """True while a submitted job is running."""
        return self._current is not None

    def user_code_done(self):
        """Called from inside a job: its user code has ended, so what is left of
        it (sending the result) is not interrupted and the engine counts as
        idle (a SIGINT from now on is an idle one)."""
        self._end_job()

    def interrupt(self):
        """Raise KeyboardInterrupt in the running job; return True if one was running."""
        with self._lock:
            if self._current is None or not self._handlers_installed:
                return False
            self._aimed = self._current
            if not self._signal_pending:  # at most one of our signals in flight
                self._signal_pending = True
                signal.pthread_kill(self._main_ident, signal.SIGINT)
                self._reactor.callLater(INTERRUPT_RESEND, self._resend, self._aimed,
                                        INTERRUPT_RESENDS)
            return True

    def _resend(self, aimed, left):
        """Send the SIGINT aimed at job ``aimed`` again while it is not handled
        and that job runs (see the module doc)."""
        with self._lock:
            if not (self._signal_pending and self._current == aimed == self._aimed):
                return
            signal.pthread_kill(self._main_ident, signal.SIGINT)
        if left > 1:
            self._reactor.callLater(INTERRUPT_RESEND, self._resend, aimed, left - 1)

    def stop(self, reason="stopped"):
        """End :meth:`run` once the jobs submitted so far have run (the one now
        running and those waiting, in order); a job submitted from now on
        fails at once.  Returns a Deferred that fires once :meth:`run`
        returned."""
        self._request_stop(reason)
        if self._finished:
            return defer.succeed(None)
        d = defer.Deferred()
        self._on_finished.append(d)
        return d

    # -- the main thread -------------------------------------------------------------------

    def install_signal_handlers(self):
        """Handle SIGINT and SIGTERM as the module doc says (main thread only)."""
        signal.signal(signal.SIGINT, self._on_sigint)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._main_ident = threading.get_ident()
        self._handlers_installed = True

    def run(self):
        """Run jobs until :meth:`stop` or a stopping signal; return the stop reason.

        Call it from the thread that called :meth:`install_signal_handlers`
        (without them, :meth:`interrupt` does nothing and returns False).
        """
        gate = self.gate
        if gate is not None and gate.drives:
            self._run_driving(gate)
        else:
            while True:
                try:
                    job = self._jobs.get()
                except KeyboardInterrupt:  # a stale interrupt that missed its job
                    continue
                if job is _STOP:
                    break
                self._run_one(*job)
        self._finish()
        return self.stop_reason

    def _run_driving(self, gate):
        jobs = self._jobs
        gate.attach(jobs.empty, lambda: jobs.put(_LOOP))
        holding = False  # this thread holds the gate and runs the event loop
        try:
            while True:
                if holding:
                    job = self._drive(gate)
                    if job is None:  # the reactor is stopping: its thread finishes
                        holding = False
                        gate.give_back()
                        continue
                else:
                    if jobs.empty():
                        gate.ask_for_loop()
                    try:
                        job = jobs.get()
                    except KeyboardInterrupt:
                        continue
                    holding = gate.take()
                    if job is _LOOP:
                        continue
                if job is _STOP:
                    break
                if holding:
                    holding = self._run_held(gate, *job)
                else:
                    self._run_one(*job)
        finally:
            if holding:
                gate.give_back()

    def _drive(self, gate):
        """Run the event loop until a job (or the stop) is queued; None if the
        reactor stops meanwhile."""
        jobs = self._jobs
        while True:
            while not jobs.empty():
                job = jobs.get_nowait()
                if job is not _LOOP:
                    return job
            if not gate.drive_once():
                return None

    def _run_held(self, gate, on_result, on_failure, func, args, kwargs):
        """Run a job taken while driving the loop; True if the loop is still ours."""
        gate.lend()
        outcome = self._call(on_result, on_failure, func, args, kwargs)
        if gate.reclaim():
            gate.deliver_held(*outcome)
            return True
        gate.deliver_reclaimed(*outcome)
        return False

    def _run_one(self, on_result, on_failure, func, args, kwargs):
        outcome = self._call(on_result, on_failure, func, args, kwargs)
        gate = self.gate
        if gate is None or not gate.run_here(*outcome):
            self._reactor.callFromThread(*outcome)

    def _call(self, on_result, on_failure, func, args, kwargs):
        """Run one job; return (what to call with its outcome, the outcome)."""
        outcome = None
        try:
            with self._lock:
                self._current = next(self._serial)
            try:
                outcome = (on_result, func(*args, **kwargs))
            except BaseException as exc:  # noqa: B902 - delivered to the caller
                outcome = (on_failure, Failure(exc))
            self._end_job()
        except KeyboardInterrupt as exc:  # arrived between the job and the bookkeeping
            self._end_job()
            if outcome is None:
                outcome = (on_failure, Failure(exc))
        return outcome

    def _end_job(self):
        with self._lock:
            self._current = None

    def _finish(self):
        waiting = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP and job is not _LOOP:
                waiting.append(job[1])
        self._finished = True
        call = self._reactor.callFromThread
        error = RuntimeError("the engine stopped before running this call")
        for on_failure in waiting:
            call(on_failure, Failure(error))
        call(self._fire_finished)

    def _fire_finished(self):
        done, self._on_finished = self._on_finished, []
        for d in done:
            d.callback(None)

    def _request_stop(self, reason):
        if not self._stopping:
            self._stopping = True
            self.stop_reason = reason
            self._jobs.put(_STOP)  # SimpleQueue.put is safe in signal handlers

    # -- signal handlers (run in the main thread, between bytecodes) --------------------

    # No locks and no writes to files here: the handler may run while this
    # thread holds a lock or is in the middle of writing the log.

    def _note(self, message):
        self._reactor.callFromThread(log.info, message)

    def _on_sigint(self, signum, frame):
        running = self._current
        if self._signal_pending:  # ours (an external SIGINT arriving with it merges)
            self._signal_pending = False
            if running is not None and self._aimed == running:
                raise KeyboardInterrupt
            return  # the job it was meant for has ended
        if running is not None:
            raise KeyboardInterrupt
        now, last = time.monotonic(), self._idle_sigint
        self._idle_sigint = now
        if last is not None and now - last < SIGINT_REPEAT:
            self._note(f"SIGINT received twice within {SIGINT_REPEAT:g} s while idle: "
                       f"stopping the engine")
            self._request_stop("SIGINT twice")
            return
        self._note(f"SIGINT received while idle: ignored (no user code runs to interrupt; "
                   f"SIGTERM, kill() from a client, or a second SIGINT within "
                   f"{SIGINT_REPEAT:g} s stops the engine)")

    def _on_sigterm(self, signum, frame):
        self._note("SIGTERM received: stopping the engine")
        self._request_stop("SIGTERM")
        if self._current is not None:
            raise KeyboardInterrupt
