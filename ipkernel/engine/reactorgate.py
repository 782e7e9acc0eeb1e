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
"""
import threading

from twisted.logger import Logger

log = Logger()


class _GatedPoller:
    """Stands for the reactor's epoll object and lets go of the gate while waiting."""

    def __init__(self, poller, lock):
        self._poller = poller
        self._lock = lock

    def poll(self, *args):
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
            and hasattr(reactor, "threadCallQueue"))


class ReactorGate:
    """Mutual exclusion between an epoll reactor's thread and one other thread.

    Call :meth:`install` before the reactor runs (from then on its thread
    holds the gate whenever it is not waiting for events), and
    :meth:`run_here` from the other thread.  A reactor that does not wait
    through an epoll-like ``_poller`` is left alone: :meth:`install` returns
    False and :meth:`run_here` always declines.
    """

    def __init__(self, reactor):
        self._reactor = reactor
        self._lock = threading.Lock()
        self.installed = False

    def install(self):
        """Wrap the reactor's poller; True if it was wrapped.

        Call it before the reactor thread starts: the gate is held until
        that thread first waits for events.
        """
        reactor = self._reactor
        if self.installed or not _gateable(reactor) or isinstance(reactor._poller, _GatedPoller):
            return False
        self._lock.acquire()  # the reactor thread's, until its first wait
        reactor._poller = _GatedPoller(reactor._poller, self._lock)
        self.installed = True
        return True

    def run_here(self, func, *args):
        """Run ``func(*args)`` in this thread if the reactor is waiting for
        events and no ``callFromThread`` call waits for it; return whether it
        ran (if not, nothing was run)."""
        if not self.installed or not self._lock.acquire(blocking=False):
            return False
        reactor = self._reactor
        if reactor.threadCallQueue:
            # Calls queued with callFromThread (by this thread's job, say) must
            # run first: the caller then goes the same way, behind them.
            self._lock.release()
            return False
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
        return True


def _first_timer(reactor):
    calls = reactor._pendingTimedCalls
    return calls[0].time if calls else None


def _sooner(now, before):
    return now is not None and (before is None or now < before)
