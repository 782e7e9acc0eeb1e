"""ReactorGate on a real epoll reactor of its own, run in a thread as ipengine does."""
import threading

import pytest
from twisted.internet.epollreactor import EPollReactor

from ipkernel.engine.mainthread import MainThreadExecutor
from ipkernel.engine.reactorgate import ReactorGate

WAIT = 10


@pytest.fixture
def running():
    """(reactor, gate): a private EPollReactor with a gate, running in a thread."""
    reactor = EPollReactor()
    # Not the process's I/O thread: that stays the test reactor's (code that
    # asks isInIOThread() in later tests would be misled otherwise).
    reactor._registerAsIOThread = False
    gate = ReactorGate(reactor)
    assert gate.install()
    started = threading.Event()
    reactor.callWhenRunning(started.set)
    thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                              name="test-reactor", daemon=True)
    thread.start()
    assert started.wait(WAIT), "the reactor thread did not start"
    yield reactor, gate
    reactor.callFromThread(reactor.stop)
    thread.join(WAIT)
    assert not thread.is_alive(), "the reactor thread did not stop"
    reactor.waker.connectionLost(None)
    reactor._poller.close()


def run_when_waiting(gate, func, *args):
    """Offer ``func`` to the gate until the reactor is waiting (it is, unless
    busy), within WAIT seconds; True once it ran."""
    done = threading.Event()
    for _ in range(1000):
        if gate.run_here(func, *args):
            return True
        done.wait(WAIT / 1000)
    return False


def test_runs_in_the_calling_thread_while_the_reactor_waits(running):
    _, gate = running
    seen = []
    assert run_when_waiting(gate, lambda: seen.append(threading.get_ident()))
    assert seen == [threading.get_ident()]


def test_declines_while_the_reactor_thread_is_busy(running):
    reactor, gate = running
    inside, release = threading.Event(), threading.Event()

    def busy():
        inside.set()
        release.wait(WAIT)
    reactor.callFromThread(busy)
    assert inside.wait(WAIT)
    ran = []
    try:
        assert gate.run_here(ran.append, 1) is False
        assert ran == []
    finally:
        release.set()
    assert run_when_waiting(gate, ran.append, 2)
    assert ran == [2]


def test_a_timed_call_added_inside_wakes_the_reactor(running):
    # With no timers the reactor waits for events without a timeout: the new
    # call would never run unless the gate woke it.
    reactor, gate = running
    fired = threading.Event()
    assert run_when_waiting(gate, reactor.callLater, 0, fired.set)
    assert fired.wait(WAIT), "a callLater added through the gate did not run"


def test_a_timer_moved_sooner_inside_wakes_the_reactor(running):
    reactor, gate = running
    fired, scheduled, made = threading.Event(), threading.Event(), []

    def schedule():
        made.append(reactor.callLater(3600, fired.set))
        scheduled.set()
    reactor.callFromThread(schedule)
    assert scheduled.wait(WAIT)
    assert run_when_waiting(gate, lambda: None)  # the timer is in the heap now
    assert run_when_waiting(gate, lambda: made[0].reset(0))
    assert fired.wait(WAIT), "a timer reset to now through the gate did not run"


def test_an_error_in_the_function_is_logged_and_the_gate_stays_usable(running):
    _, gate = running

    def boom():
        raise ValueError("boom")
    assert run_when_waiting(gate, boom)
    ran = []
    assert run_when_waiting(gate, ran.append, 1)
    assert ran == [1]


def test_a_reactor_without_an_epoll_poller_is_left_alone():
    class NoPoller:
        pass
    gate = ReactorGate(NoPoller())
    assert gate.install() is False
    ran = []
    assert gate.run_here(ran.append, 1) is False and ran == []


def test_installs_once():
    reactor = EPollReactor()
    try:
        gate = ReactorGate(reactor)
        assert gate.install() is True
        assert gate.install() is False
        assert ReactorGate(reactor).install() is False  # already wrapped
    finally:
        reactor.waker.connectionLost(None)
        reactor._poller.close()


def test_the_executor_delivers_results_through_the_gate(running):
    reactor, gate = running
    executor = MainThreadExecutor(reactor, gate=gate)
    worker = threading.Thread(target=executor.run, name="test-user-thread", daemon=True)
    worker.start()
    fired, go, outcome = threading.Event(), threading.Event(), []

    def deliver(value):
        outcome.append((value, threading.current_thread().name))
        fired.set()

    def job():
        go.wait(WAIT)
        return 6 * 7

    def submit():
        executor.submit(job).addCallback(deliver)
    reactor.callFromThread(submit)
    assert run_when_waiting(gate, lambda: None)  # the reactor is idle from now on
    go.set()
    assert fired.wait(WAIT)
    stopped = threading.Event()
    reactor.callFromThread(lambda: executor.stop().addCallback(lambda _: stopped.set()))
    assert stopped.wait(WAIT)
    worker.join(WAIT)
    assert not worker.is_alive()
    # The reactor was waiting when the job ended: the job's own thread fired it.
    assert outcome == [(42, "test-user-thread")]


def test_calls_queued_from_threads_keep_their_place_before_it(running):
    # A job that queued a call for the reactor (callFromThread) and then
    # ended: that call must run before the job's result is delivered.  The
    # call is put in the queue without waking the reactor, so it is certain
    # to wait there while the reactor sleeps.
    reactor, gate = running
    assert run_when_waiting(gate, lambda: None)
    order, first_ran = [], threading.Event()
    reactor.threadCallQueue.append(
        (lambda: (order.append("queued first"), first_ran.set()), (), {}))
    assert gate.run_here(order.append, "result") is False
    assert order == []
    reactor.wakeUp()
    assert first_ran.wait(WAIT)
    assert run_when_waiting(gate, order.append, "result")
    assert order == ["queued first", "result"]


def test_the_executor_delivers_after_what_the_job_queued(running):
    reactor, gate = running
    executor = MainThreadExecutor(reactor, gate=gate)
    worker = threading.Thread(target=executor.run, name="test-user-thread", daemon=True)
    worker.start()
    order, fired = [], threading.Event()

    def job():
        reactor.callFromThread(order.append, "queued by the job")
        return "result"

    def submit():
        executor.submit(job).addCallback(lambda value: (order.append(value), fired.set()))
    reactor.callFromThread(submit)
    assert fired.wait(WAIT)
    stopped = threading.Event()
    reactor.callFromThread(lambda: executor.stop().addCallback(lambda _: stopped.set()))
    assert stopped.wait(WAIT)
    worker.join(WAIT)
    assert order == ["queued by the job", "result"]
