"""The main thread runs the event loop while idle (ReactorGate(drive=True)),
on a private epoll reactor run in a thread as ipengine does."""
import socket
import threading

import pytest
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory, Protocol

from ipkernel.engine import reactorgate
from ipkernel.engine.mainthread import MainThreadExecutor
from ipkernel.engine.reactorgate import MAIN, REACTOR, ReactorGate

WAIT = 10


@pytest.fixture
def driven():
    """(reactor, gate, executor): the executor's run() in a 'user' thread that
    drives the loop while idle."""
    reactor = EPollReactor()
    reactor._registerAsIOThread = False
    gate = ReactorGate(reactor, drive=True)
    assert gate.install()
    assert gate.drives, "no timerfd on this machine"
    executor = MainThreadExecutor(reactor, gate=gate)
    thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                              name="test-reactor", daemon=True)
    user = threading.Thread(target=executor.run, name="test-user-thread", daemon=True)
    thread.start()
    user.start()
    yield reactor, gate, executor
    stopped = threading.Event()
    reactor.callFromThread(lambda: executor.stop().addCallback(lambda _: stopped.set()))
    assert stopped.wait(WAIT), "the executor did not stop"
    user.join(WAIT)
    assert not user.is_alive()
    assert gate.owner is REACTOR, "the loop was not given back when the executor stopped"
    reactor.callFromThread(reactor.stop)
    thread.join(WAIT)
    assert not thread.is_alive(), "the reactor thread did not stop"
    reactor.waker.connectionLost(None)
    reactor._poller.close()
    gate.close()


def in_loop(reactor, func):
    """Run ``func`` in whichever thread runs the loop; its result (within WAIT)."""
    done, box = threading.Event(), []
    reactor.callFromThread(lambda: (box.append(func()), done.set()))
    assert done.wait(WAIT)
    return box[0]


def main_thread_drives(reactor):
    """True once a call queued to the loop is run by the main thread.  (In the
    moment of a hand-over the parked reactor thread may wake on that very call
    and take the loop back first; idle, it hands it over again at once.)"""
    return wait_for(lambda: in_loop(reactor, lambda: threading.current_thread().name)
                    == "test-user-thread")


def wait_for(predicate):
    ev = threading.Event()
    for _ in range(1000):
        if predicate():
            return True
        ev.wait(WAIT / 1000)
    return False


def test_an_idle_main_thread_runs_the_loop_and_the_job_and_answers(driven):
    reactor, gate, executor = driven
    assert wait_for(lambda: gate.owner is MAIN), "the loop was never handed over"
    assert main_thread_drives(reactor)
    seen, fired = [], threading.Event()

    def submit():
        seen.append(("submitted in", threading.current_thread().name))
        executor.submit(lambda: threading.current_thread().name).addCallback(
            lambda ran_in: (seen.append(("ran in", ran_in)),
                            seen.append(("answered in", threading.current_thread().name)),
                            fired.set()))
    reactor.callFromThread(submit)
    assert fired.wait(WAIT)
    assert seen == [("submitted in", "test-user-thread"), ("ran in", "test-user-thread"),
                    ("answered in", "test-user-thread")]
    assert wait_for(lambda: gate.owner is MAIN)  # (idle: it stays, or comes back, there)


def test_a_long_job_gives_the_loop_back_to_the_reactor_thread(driven, monkeypatch):
    reactor, gate, executor = driven
    assert wait_for(lambda: gate.owner is MAIN)
    started, release, fired = threading.Event(), threading.Event(), threading.Event()

    def job():
        started.set()
        release.wait(WAIT)
        return "done"
    reactor.callFromThread(lambda: executor.submit(job).addCallback(lambda _: fired.set()))
    assert started.wait(WAIT)
    try:
        # While the job runs the loop must still turn (heartbeats, kill): after
        # the slice the reactor thread runs it.
        timed = threading.Event()
        reactor.callFromThread(lambda: reactor.callLater(0, timed.set))
        assert timed.wait(WAIT), "nothing ran the event loop while the job ran"
        assert gate.owner is REACTOR
        assert in_loop(reactor, lambda: threading.current_thread().name) == "test-reactor"
        assert not fired.is_set()
    finally:
        release.set()
    assert fired.wait(WAIT)
    # idle again: the main thread asks for the loop and gets it
    assert wait_for(lambda: gate.owner is MAIN)
    assert main_thread_drives(reactor)


class _Echo(Protocol):
    """Echoes what it reads, prefixed by the reading thread's name; closes
    the connection by raising on b"raise"."""

    def dataReceived(self, data):
        if data == b"raise":
            raise RuntimeError("a handler failed")
        self.transport.write(threading.current_thread().name.encode() + b":" + data)


def _listen(reactor):
    port = in_loop(reactor, lambda: reactor.listenTCP(0, Factory.forProtocol(_Echo),
                                                      interface="127.0.0.1"))
    return port, port.getHost().port


def test_sockets_are_read_and_answered_by_the_driving_thread(driven):
    reactor, gate, _ = driven
    port, number = _listen(reactor)
    try:
        with socket.create_connection(("127.0.0.1", number), timeout=WAIT) as sock:
            assert wait_for(lambda: gate.owner is MAIN) and main_thread_drives(reactor)
            sock.sendall(b"ping")
            assert sock.recv(100) == b"test-user-thread:ping"
            # a handler that raises: the reactor logs it and closes that
            # connection only; the loop goes on
            sock.sendall(b"raise")
            assert sock.recv(100) == b""
        with socket.create_connection(("127.0.0.1", number), timeout=WAIT) as again:
            again.sendall(b"pong")
            assert again.recv(100).endswith(b":pong")
    finally:
        in_loop(reactor, port.stopListening)


def test_results_keep_their_order_after_what_the_job_queued(driven):
    reactor, gate, executor = driven
    assert wait_for(lambda: gate.owner is MAIN)
    order, fired = [], threading.Event()

    def job(i):
        reactor.callFromThread(order.append, f"queued by {i}")
        return i

    def submit():
        for i in range(3):
            d = executor.submit(job, i)
            d.addCallback(order.append)
        d.addCallback(lambda _: fired.set())
    reactor.callFromThread(submit)
    assert fired.wait(WAIT)
    assert order == ["queued by 0", 0, "queued by 1", 1, "queued by 2", 2]


def test_the_switch_off_keeps_the_loop_in_the_reactor_thread(monkeypatch):
    monkeypatch.setenv(reactorgate.DRIVE_ENV, "0")
    assert reactorgate.drive_wanted() is False
    monkeypatch.setenv(reactorgate.DRIVE_ENV, "1")
    assert reactorgate.drive_wanted() is True
    reactor = EPollReactor()
    try:
        gate = ReactorGate(reactor)  # drive defaults to off
        assert gate.install() and not gate.drives
    finally:
        reactor.waker.connectionLost(None)
        reactor._poller.close()
