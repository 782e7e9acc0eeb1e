"""Tier 1: the SIGINT rules of MainThreadExecutor (issue 13), its handler called directly,
and when an executor counts a job as ended."""
import signal
import threading

import pytest

from ipkernel.engine import mainthread
from ipkernel.engine.executor import ThreadExecutor
from ipkernel.engine.mainthread import SIGINT_REPEAT, MainThreadExecutor

pytestmark = pytest.mark.tier1


class Reactor:
    """Collects what the executor hands to the reactor thread."""

    def __init__(self):
        self.calls = []

    def callFromThread(self, f, *args):
        self.calls.append((f, args))


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(mainthread.time, "monotonic", lambda: now[0])
    return now


def notes(reactor):
    return [args[0] for _, args in reactor.calls if args and isinstance(args[0], str)]


def test_a_sigint_while_idle_is_logged_and_ignored(clock):
    reactor = Reactor()
    executor = MainThreadExecutor(reactor)
    executor._on_sigint(signal.SIGINT, None)
    assert executor.stop_reason is None and not executor._stopping
    assert any("SIGINT received while idle: ignored" in n for n in notes(reactor))
    clock[0] += SIGINT_REPEAT + 0.1   # a later one, far apart: still ignored
    executor._on_sigint(signal.SIGINT, None)
    assert not executor._stopping
    assert executor.submit(lambda: None) is not None   # still takes work


def test_two_sigints_in_quick_succession_while_idle_stop(clock):
    reactor = Reactor()
    executor = MainThreadExecutor(reactor)
    executor._on_sigint(signal.SIGINT, None)
    clock[0] += SIGINT_REPEAT / 2
    executor._on_sigint(signal.SIGINT, None)
    assert executor._stopping and executor.stop_reason == "SIGINT twice"
    assert any("received twice" in n for n in notes(reactor))


def test_a_sigint_while_a_job_runs_interrupts_it(clock):
    executor = MainThreadExecutor(Reactor())
    executor._current = 7   # a job is running
    with pytest.raises(KeyboardInterrupt):
        executor._on_sigint(signal.SIGINT, None)
    assert not executor._stopping


def test_a_sigint_after_the_jobs_user_code_ended_is_an_idle_one(clock):
    # A result may be answered before its job returns (the data channel's
    # post step): from user_code_done on, a SIGINT interrupts nothing.
    reactor = Reactor()
    executor = MainThreadExecutor(reactor)
    executor._current = 7   # a job is running ...
    executor.user_code_done()   # ... and its user code has ended
    assert not executor.busy and executor.interrupt() is False
    executor._on_sigint(signal.SIGINT, None)   # does not raise
    assert any("SIGINT received while idle: ignored" in n for n in notes(reactor))


def test_the_thread_executor_is_idle_once_a_jobs_user_code_ended():
    executor = ThreadExecutor(reactor=Reactor())
    seen, done = [], threading.Event()

    def job():
        seen.append(executor.busy)
        executor.user_code_done()
        seen.append((executor.busy, executor.interrupt()))
        done.set()
    executor.submit(job)
    assert done.wait(10), "the job did not run"
    assert seen == [True, (False, False)]


@pytest.mark.parametrize("kind", ["main thread", "thread"])
def test_plain_jobs_deliver_outcomes_in_order_with_deferred_jobs(kind):
    reactor = Reactor()
    executor = MainThreadExecutor(reactor) if kind == "main thread" else \
        ThreadExecutor(reactor=reactor)
    results, failures, fired = [], [], []
    executor.submit_plain(lambda a, b: a + b, (2, 3), results.append, failures.append)
    executor.submit(lambda: "deferred").addCallback(fired.append)
    executor.submit_plain(lambda: 1 / 0, (), results.append, failures.append)
    executor.submit_plain(str.upper, ("x",), results.append, failures.append)
    if kind == "main thread":
        executor._request_stop("test")
        assert executor.run() == "test"
    else:
        done = threading.Event()
        executor.submit_plain(done.set, (), results.append, failures.append)
        assert done.wait(10), "the jobs did not run"
    for f, args in list(reactor.calls):   # delivered with callFromThread, in order
        f(*args)
    assert results[:2] == [5, "X"] and fired == ["deferred"]
    assert len(failures) == 1 and failures[0].check(ZeroDivisionError)
    order = [getattr(f, "__self__", f) for f, _ in reactor.calls][:4]
    assert order[0] is results and order[2] is failures and order[3] is results


@pytest.mark.parametrize("kind", ["main thread", "thread"])
def test_a_plain_job_after_stop_fails_at_once(kind):
    reactor = Reactor()
    executor = MainThreadExecutor(reactor) if kind == "main thread" else \
        ThreadExecutor(reactor=reactor)
    executor.stop()
    results, failures = [], []
    executor.submit_plain(lambda: "ran", (), results.append, failures.append)
    assert results == [] and len(failures) == 1 and failures[0].check(RuntimeError)



def interrupted_executor(monkeypatch):
    """An executor whose job 7 runs, interrupted once; the SIGINTs it sends are counted."""
    from twisted.internet.task import Clock

    reactor = Clock()
    reactor.callFromThread = lambda f, *args: f(*args)
    sent = []
    monkeypatch.setattr(mainthread.signal, "pthread_kill", lambda ident, sig: sent.append(sig))
    executor = MainThreadExecutor(reactor)
    executor._handlers_installed = True
    executor._current = 7
    assert executor.interrupt() is True
    return executor, reactor, sent


def test_an_interrupt_not_yet_handled_is_sent_again_while_its_job_runs(monkeypatch):
    # (a SIGINT landing just before a blocking call is only seen once that call returns)
    executor, reactor, sent = interrupted_executor(monkeypatch)
    assert sent == [signal.SIGINT]
    reactor.advance(mainthread.INTERRUPT_RESEND)
    assert sent == [signal.SIGINT] * 2
    for _ in range(3 * mainthread.INTERRUPT_RESENDS):
        reactor.advance(mainthread.INTERRUPT_RESEND)
    assert len(sent) == 1 + mainthread.INTERRUPT_RESENDS   # bounded
    assert not reactor.getDelayedCalls()


@pytest.mark.parametrize("then", ["handled", "job ended", "another job"])
def test_an_interrupt_is_not_sent_again_once_handled_or_its_job_is_over(monkeypatch, then):
    executor, reactor, sent = interrupted_executor(monkeypatch)
    if then == "handled":
        with pytest.raises(KeyboardInterrupt):
            executor._on_sigint(signal.SIGINT, None)
    elif then == "job ended":
        executor._end_job()
    else:
        executor._current = 8
    reactor.advance(mainthread.INTERRUPT_RESEND)
    assert sent == [signal.SIGINT]
    assert not reactor.getDelayedCalls()
