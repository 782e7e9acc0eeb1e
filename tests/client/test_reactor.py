"""The reactor bridge: calls from worker threads into the running (test)
reactor, results and errors, timeouts, Ctrl-C, the reactor-thread guard;
and that importing the client starts nothing."""
import ctypes
import subprocess
import sys
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads

from ipkernel.client import reactor as client_reactor
from ipkernel.client.reactor import (CallTimeout, ReactorBridge, ReactorNotRunning,
                                     ReactorThreadError)
from ipkernel.error import KernelError

THREAD_TIMEOUT = 20


def bridge():
    return ReactorBridge(call_in_reactor=reactor.callFromThread)


def in_thread(func, *args, **kwargs):
    return threads.deferToThread(func, *args, **kwargs).addTimeout(THREAD_TIMEOUT, reactor)


class Cancellable:
    """A Deferred that only fires when cancelled; records the cancellation and
    the thread it happened in."""

    def __init__(self):
        self.cancelled_in = None
        self.started = defer.Deferred()

    def __call__(self):
        self.started.callback(threading.get_ident())
        return defer.Deferred(canceller=self._cancel)

    def _cancel(self, d):
        self.cancelled_in = threading.get_ident()


@pytest_twisted.ensureDeferred
async def test_values_deferreds_and_errors_cross_threads():
    b = bridge()
    seen = {}

    def in_reactor(x, y=0):
        seen["thread"] = threading.get_ident()
        return x + y

    def later(value):
        d = defer.Deferred()
        reactor.callLater(0, d.callback, value)
        return d

    async def coroutine():
        await later(None)
        return "from a coroutine"

    def user():
        assert b.call(in_reactor, 1, y=2) == 3
        assert b.call(later, [1, 2]) == [1, 2]
        assert b.call(coroutine) == "from a coroutine"
        with pytest.raises(ZeroDivisionError):
            b.call(lambda: 1 / 0)
        with pytest.raises(KeyError):
            b.call(lambda: defer.fail(KeyError("k")))
        return threading.get_ident()
    worker = await in_thread(user)
    assert seen["thread"] == threading.get_ident() != worker   # ran in the reactor thread


@pytest_twisted.ensureDeferred
async def test_timeout_cancels_the_call_and_names_it():
    b = bridge()
    pending = Cancellable()

    def user():
        started = time.monotonic()
        with pytest.raises(CallTimeout) as info:
            b.call(pending, timeout=0.1, what="frobnicate")
        return info.value, time.monotonic() - started
    error, elapsed = await in_thread(user)
    assert pending.cancelled_in == threading.get_ident()   # cancelled, in the reactor
    assert isinstance(error, TimeoutError) and isinstance(error, KernelError)
    assert "frobnicate did not finish within 0.1 s" in str(error)
    assert elapsed < 5


@pytest_twisted.ensureDeferred
async def test_timeout_is_reported_whatever_the_cancelled_chain_raises():
    b = bridge()

    def relabelled():
        d = defer.Deferred()
        return d.addErrback(lambda f: ValueError("converted by an errback"))

    def user():
        with pytest.raises(CallTimeout):
            b.call(lambda: relabelled().addCallback(lambda v: v), timeout=0.05)
    await in_thread(user)


@pytest_twisted.ensureDeferred
async def test_keyboard_interrupt_cancels_and_returns_at_once():
    b = bridge()
    pending = Cancellable()
    box = {}

    def user():
        box["thread"] = threading.get_ident()
        started = time.monotonic()
        try:
            b.call(pending)
        except KeyboardInterrupt:
            return time.monotonic() - started
        return None

    done = in_thread(user)
    await pending.started    # the call runs in the reactor; the worker is waiting
    assert ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(box["thread"]), ctypes.py_object(KeyboardInterrupt)) == 1
    elapsed = await done
    assert elapsed is not None and elapsed < 5
    for _ in range(3):   # the cancellation is handed to the reactor
        if pending.cancelled_in is not None:
            break
        d = defer.Deferred()
        reactor.callLater(0, d.callback, None)
        await d
    assert pending.cancelled_in == threading.get_ident()


@pytest_twisted.ensureDeferred
async def test_blocking_call_in_the_reactor_thread_is_refused():
    # the test body runs in the reactor thread
    with pytest.raises(ReactorThreadError, match="ipkernel.asyncclient"):
        bridge().call(lambda: 1, what="mec.execute")
    with pytest.raises(ReactorThreadError, match="mec.execute"):
        bridge().call(lambda: 1, what="mec.execute")
    with pytest.raises(ReactorThreadError):
        client_reactor.blocking_call(lambda: 1)
    assert client_reactor.reactor_thread() is None


def test_bad_timeouts():
    b = ReactorBridge(call_in_reactor=lambda f: f(), in_reactor_thread=lambda: False)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="timeout"):
            b.call(lambda: 1, timeout=bad)
    assert b.call(lambda: 1, timeout=1) == 1


def test_a_stopped_reactor_is_reported(monkeypatch):
    class Stopped:
        running = False
        _startedBefore = True
    monkeypatch.setattr(client_reactor, "_get_reactor", lambda: Stopped())
    with pytest.raises(ReactorNotRunning, match="cannot be restarted"):
        client_reactor.ensure_reactor()

    class Dead:
        def is_alive(self):
            return False
    monkeypatch.setattr(client_reactor, "_thread", Dead())
    with pytest.raises(ReactorNotRunning, match="stopped"):
        client_reactor.ensure_reactor()


def test_importing_the_client_starts_no_thread():
    code = ("import threading, ipkernel.client, ipkernel.client.reactor as r\n"
            "assert r.reactor_thread() is None\n"
            "assert threading.active_count() == 1, threading.enumerate()\n"
            "from twisted.internet import reactor\n"
            "assert not reactor.running\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
