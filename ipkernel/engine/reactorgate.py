"""Let the engine's main thread deliver a result while the reactor thread sleeps.

A job's result normally goes back to the reactor thread with
``callFromThread``: a write to the reactor's waker, a wake-up of that thread
(which then waits for the GIL the main thread still holds), and then the
Deferred chain that encodes the answer and sends it.  With more engines than
cores those wake-ups cost an engine more than the call itself.

:class:`ReactorGate` makes the reactor thread hold a lock except while it
waits in ``epoll_wait``.  A thread that takes the lock has the reactor to
itself (the reactor's thread is parked in the kernel and cannot touch Twisted
state before the lock is given back), so it may run the Deferred chain
itself: the answer leaves at once and nobody is woken.  When the reactor is
busy, or calls queued with ``callFromThread`` wait for it (which must run
first, in order), the result goes the usual way.

What the chain changes reaches the reactor as follows: file descriptors
registered for reading or writing reach the kernel's epoll set at once; a
timed call added (``callLater``, Foolscap's eventual sends) or moved sooner,
or a call queued with ``callFromThread``, would wait for the next event, so
the reactor is woken when one of those happened.

A gate made with ``drive=True`` also lets the main thread run the event loop
itself while it is idle (see
:class:`~ipkernel.engine.mainthread.MainThreadExecutor`): a small call is
then read, run and answered by the one thread that woke up.  The reactor
thread hands the loop over when asked and the main thread has nothing queued
(:meth:`ReactorGate.ask_for_loop`), and waits parked on a timer and on the
reactor's waker.  It takes the loop back when the main thread lends the gate
for a job (:meth:`ReactorGate.lend`) and the job outlasts
:data:`JOB_SLICE` or calls ``callFromThread``, so heartbeats, ``kill``,
interrupts and the data channel keep working while user code runs.
"""
import os
import select
import threading

from twisted.logger import Logger
from twisted.python import threadable

from ipkernel import reactorloop
from ipkernel.engine.timerfd import make_timer

log = Logger()

#: Who runs the event loop.
REACTOR, MAIN = "reactor", "main"

#: How long (seconds) a job may run with the loop still lent to the main
#: thread before the reactor thread takes the loop back.
JOB_SLICE = float(os.environ.get("IPKERNEL_ENGINE_JOB_SLICE", "0.01"))

#: Set to 0 to keep the event loop in the reactor thread (the main thread
#: then only runs jobs), e.g. to compare both ways in a benchmark.
DRIVE_ENV = "IPKERNEL_ENGINE_DRIVE"


def drive_wanted():
    """False when the environment turns the main thread's loop driving off."""
    return os.environ.get(DRIVE_ENV, "1") not in ("0", "no", "false", "")


class _GatedPoller:
    """Stands for the reactor's epoll object and lets go of the gate while waiting."""

    def __init__(self, poller, lock, gate):
        self._poller = poller
        self._lock = lock
        self._gate = gate

    def poll(self, *args):
        gate = self._gate
        if gate.owner is MAIN:  # the main thread drives: it keeps the gate
            return self._poller.poll(*args)
        if gate.want_main and gate._hand_over():
            return []
        self._lock.release()
        try:
            return self._poller.poll(*args)
        finally:
            self._lock.acquire()

    def __getattr__(self, name):
        return getattr(self._poller, name)


def _gateable(reactor):
    """True for a reactor whose waiting :class:`ReactorGate` can wrap (epoll-like)."""
    poller = getattr(reactor, "_poller", None)
    return (poller is not None and hasattr(poller, "poll")
            and hasattr(reactor, "_newTimedCalls") and hasattr(reactor, "_pendingTimedCalls")
            and hasattr(reactor, "threadCallQueue") and reactorloop.usable(reactor))


class ReactorGate:
    """Mutual exclusion between an epoll reactor's thread and one other thread.

    Call :meth:`install` before the reactor runs (from then on its thread
    holds the gate whenever it is not waiting for events), and
    :meth:`run_here` from the other thread.  A reactor that does not wait
    through an epoll-like ``_poller`` is left alone: :meth:`install` returns
    False and :meth:`run_here` always declines.
    """

    def __init__(self, reactor, drive=False):
        self._reactor = reactor
        self._lock = threading.Lock()
        self.installed = False
        self._drive = drive
        self._timer = None
        #: Who runs the event loop now (:data:`REACTOR` or :data:`MAIN`).
        self.owner = REACTOR
        #: The main thread asked for the loop (:meth:`ask_for_loop`).
        self.want_main = False
        self._main_ident = None
        self._nothing_queued = None   # the main thread's "no job waiting" test
        self._handed_over = None      # tells the main thread the loop is its
        self._io_thread = None        # threadable.ioThread while the reactor runs
        self._park = None
        self._poller = None           # the reactor's own epoll object, once installed

    @property
    def drives(self):
        """True when the main thread may run the event loop while idle."""
        return self._timer is not None

    def install(self):
        """Wrap the reactor's poller; True if it was wrapped.

        Call it before the reactor thread starts: the gate is held until
        that thread first waits for events.
        """
        reactor = self._reactor
        if self.installed or not _gateable(reactor) or isinstance(reactor._poller, _GatedPoller):
            return False
        self._lock.acquire()  # the reactor thread's, until its first wait
        self._poller = reactor._poller
        reactor._poller = _GatedPoller(reactor._poller, self._lock, self)
        self.installed = True
        if self._drive and getattr(reactor, "waker", None) is not None:
            self._timer = make_timer()
        return True

    def close(self):
        """Release the timer (once the reactor has stopped)."""
        if self._timer is not None:
            self._timer.close()

    # -- the loop handed between threads (main-thread side) -------------------------

    def attach(self, nothing_queued, handed_over):
        """Called by the main thread before it asks for the loop:
        ``nothing_queued()`` says whether no job waits for it, and
        ``handed_over()`` (called in the reactor thread) wakes it to drive."""
        self._main_ident = threading.get_ident()
        self._nothing_queued = nothing_queued
        self._handed_over = handed_over

    def ask_for_loop(self):
        """Ask the reactor thread for the loop (it hands it over at its next
        wait if no job is queued then)."""
        if not self.want_main and self._reactor.running:
            self.want_main = True
            self._reactor.wakeUp()

    def take(self):
        """After the main thread took an item from its queue: stop asking; True
        if the loop is the main thread's now (it then holds the gate)."""
        self._lock.acquire()
        self.want_main = False
        if self.owner is MAIN:
            return True
        self._lock.release()
        return False

    def drive_once(self):
        """One turn of the event loop in the main thread (which holds the
        gate); False, doing nothing, once the reactor is stopping."""
        reactor = self._reactor
        if not reactor.running:
            return False
        reactor.runUntilCurrent()
        if self._nothing_queued():
            reactorloop.poll_once(reactor, self._poller, reactor.timeout())
        return True

    def lend(self):
        """Let go of the gate for a job: the reactor thread takes the loop
        back if the job outlasts :data:`JOB_SLICE` or calls callFromThread."""
        self._timer.arm(JOB_SLICE)
        self._lock.release()

    def reclaim(self):
        """After the job: take the gate again; True if the loop is still the
        main thread's (else the reactor thread waits for events)."""
        self._timer.disarm()
        self._lock.acquire()
        return self.owner is MAIN

    def deliver_held(self, func, *args):
        """Run ``func(*args)`` in the main thread, which drives the loop."""
        reactor = self._reactor
        if reactor.threadCallQueue:
            # what the job queued runs first, at the loop's next turn
            reactor.threadCallQueue.append((func, args, {}))
            return
        try:
            func(*args)
        except Exception:
            log.failure("a result delivered from the main thread failed")

    def deliver_reclaimed(self, func, *args):
        """After :meth:`reclaim` returned False: deliver like :meth:`run_here`
        and let go of the gate."""
        self._run_locked(func, args)

    def give_back(self):
        """The main thread (holding the gate and the loop) returns the loop."""
        self._to_reactor()
        self._timer.arm(1e-9)   # wakes the parked reactor thread
        self._lock.release()

    # -- the reactor-thread side -----------------------------------------------------

    def _to_reactor(self):
        self.owner = REACTOR
        if self._io_thread is not None:
            threadable.ioThread = self._io_thread
            self._io_thread = None

    def _hand_over(self):
        """In the reactor thread, holding the gate: give the loop to the main
        thread if it waits, park until it is lent back; True if it was handed."""
        if not self._reactor.running or not self._nothing_queued():
            return False
        self.want_main = False
        if self._park is None:
            self._park = select.poll()
            self._park.register(self._timer.fd, select.POLLIN)
            self._park.register(self._reactor.waker.fileno(), select.POLLIN)
        if threadable.ioThread == threading.get_ident():
            self._io_thread = threadable.ioThread
            threadable.ioThread = self._main_ident
        self.owner = MAIN
        self._handed_over()
        self._lock.release()
        try:
            self._park.poll()
            self._timer.drain()
        finally:
            self._lock.acquire()
        # The main thread let go of the gate: it runs a job (or gave the loop back).
        self._to_reactor()
        return True

    def run_here(self, func, *args):
        """Run ``func(*args)`` in this thread if the reactor is waiting for
        events and no ``callFromThread`` call waits for it; return whether it
        ran (if not, nothing was run)."""
        if not self.installed or not self._lock.acquire(blocking=False):
            return False
        if self._reactor.threadCallQueue:
            # Calls queued with callFromThread (by this thread's job, say) must
            # run first: the caller then goes the same way, behind them.
            self._lock.release()
            return False
        self._run_locked(func, args)
        return True

    def _run_locked(self, func, args):
        reactor = self._reactor
        if reactor.threadCallQueue:
            self._lock.release()
            reactor.callFromThread(func, *args)
            return
        try:
            before = _first_timer(reactor)
            try:
                func(*args)
            except Exception:
                log.failure("a result delivered from the main thread failed")
            wake = (bool(reactor._newTimedCalls) or bool(reactor.threadCallQueue)
                    or _sooner(_first_timer(reactor), before))
        finally:
            self._lock.release()
        if wake:
            reactor.wakeUp()


def _first_timer(reactor):
    calls = reactor._pendingTimedCalls
    return calls[0].time if calls else None


def _sooner(now, before):
    return now is not None and (before is None or now < before)
