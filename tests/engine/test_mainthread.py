"""Tier 1: the SIGINT rules of MainThreadExecutor (issue 13), its handler called directly."""
import signal

import pytest

from ipkernel.engine import mainthread
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
