"""HeartMonitor (tier 1): fake engine references and a fake clock.

Each fake engine is a real :class:`RemoteEngine` over a
:class:`FakeReference` whose pings wait until the test answers them, so a
test decides exactly when an engine is silent, slow or fine.
"""
import pytest
from foolscap.api import DeadReferenceError
from twisted.internet import defer, task

from ipkernel.controller.fc import RemoteEngine
from ipkernel.controller.heartbeat import HeartMonitor, drop_connection
from ipkernel.error import EngineError

pytestmark = pytest.mark.tier1


class FakeTransport:
    def __init__(self):
        self.aborted = False

    def abortConnection(self):
        self.aborted = True


class FakeReference:
    """An engine's RemoteReference: pings and commands wait for the test."""

    def __init__(self, clock):
        self.clock = clock
        self.pings = []     # [sent_at, Deferred] of unanswered pings
        self.commands = []  # (method, args, Deferred)
        self.transport = FakeTransport()
        self.tracker = type("Tracker", (), {})()
        self.tracker.broker = type("Broker", (), {})()
        self.tracker.broker.transport = self.transport

    def callRemote(self, method, *args):
        d = defer.Deferred()
        if method == "ping":
            self.pings.append([self.clock.seconds(), d])
        elif method == "set_id":
            d.callback(None)
        else:
            self.commands.append((method, args, d))
        return d

    def answer_pings(self, older_than=0.0):
        """Answer every waiting ping sent at least ``older_than`` seconds ago."""
        now = self.clock.seconds()
        due = [p for p in self.pings if now - p[0] >= older_than]
        self.pings = [p for p in self.pings if now - p[0] < older_than]
        for _, d in due:
            d.callback(1)
        return len(due)


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def monitor_factory(clock):
    monitors = []

    def make(controller, **kwargs):
        monitor = HeartMonitor(controller, clock=clock, **kwargs)
        monitor.startService()
        monitors.append(monitor)
        return monitor

    yield make
    for monitor in monitors:
        if monitor.running:
            monitor.stopService()


def add_remote_engine(controller, clock):
    ref = FakeReference(clock)
    engine_id = controller.register_engine(RemoteEngine(ref))["id"]
    return engine_id, ref


def advance(clock, seconds, step=1.0, each=None):
    """Move the clock forward in ``step``s, calling ``each()`` after each one."""
    moved = 0.0
    while moved < seconds:
        clock.advance(step)
        moved += step
        if each is not None:
            each()


def test_silent_engine_is_unregistered_after_timeout(make_controller, clock, monitor_factory):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock)
    monitor_factory(controller, period=2.0, timeout=6.0)
    running = controller.engines[engine_id].execute("import time; time.sleep(1000)")
    waiting = controller.engines[engine_id].execute("x = 1")
    assert len(ref.pings) == 1  # pinged at once

    clock.advance(5.9)
    assert engine_id in controller.engines
    assert not ref.transport.aborted
    clock.advance(0.1)
    assert engine_id not in controller.engines
    assert ref.transport.aborted
    for d in (running, waiting):
        failure = pytest.raises(EngineError, d.result.raiseException)
        assert f"engine {engine_id}" in str(failure.value)
        d.addErrback(lambda f: None)


def test_slow_but_answering_engine_is_kept(make_controller, clock, monitor_factory):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock)
    monitor = monitor_factory(controller, period=2.0, timeout=6.0)
    answered = []

    def answer_late():
        answered.append(ref.answer_pings(older_than=5.0))

    advance(clock, 120, step=1.0, each=answer_late)
    assert engine_id in controller.engines
    assert sum(answered) >= 15  # it really was pinged all along
    assert not ref.transport.aborted
    assert monitor.beats[engine_id].answered_at >= 110


def test_engine_busy_in_user_code_is_kept(make_controller, clock, monitor_factory):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock)
    monitor_factory(controller, period=2.0, timeout=6.0)
    busy = controller.engines[engine_id].execute("while True: pass")

    advance(clock, 600, step=2.0, each=ref.answer_pings)
    assert engine_id in controller.engines
    assert not busy.called
    method, _, d = ref.commands[0]
    assert method == "execute"
    d.callback({"number": 0})
    assert busy.result == {"number": 0}


def test_only_silent_engine_goes(make_controller, clock, monitor_factory):
    controller = make_controller()
    alive_id, alive = add_remote_engine(controller, clock)
    dead_id, dead = add_remote_engine(controller, clock)
    monitor_factory(controller, period=1.0, timeout=3.0)

    advance(clock, 10, step=1.0, each=alive.answer_pings)
    assert sorted(controller.engines) == [alive_id]
    assert dead.transport.aborted and not alive.transport.aborted


def test_default_settings_detect_a_dead_engine_within_10_seconds(make_controller, clock,
                                                                 monitor_factory):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock)
    monitor = monitor_factory(controller)
    assert monitor.period + monitor.timeout <= 10

    advance(clock, 7.3, step=0.1, each=ref.answer_pings)  # it answers until t=7.3, then dies
    death = clock.seconds()
    while engine_id in controller.engines:
        clock.advance(0.1)
        assert clock.seconds() - death <= 10.0
    assert ref.transport.aborted


def test_in_process_engines_are_not_pinged(make_controller, clock, monitor_factory):
    controller = make_controller(1)
    monitor = monitor_factory(controller, period=1.0, timeout=2.0)
    advance(clock, 30)
    assert list(controller.engines) == [0]
    assert monitor.beats == {}


def test_stalled_controller_judges_nobody_on_the_late_beat(make_controller, clock,
                                                           monitor_factory):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock)
    monitor_factory(controller, period=2.0, timeout=6.0)

    clock.advance(30)  # the reactor was blocked: one late beat
    assert engine_id in controller.engines
    ref.answer_pings()  # the answer was waiting behind the stall
    advance(clock, 4, step=2.0)
    assert engine_id in controller.engines
    advance(clock, 6, step=2.0)  # now it really is silent
    assert engine_id not in controller.engines


def test_failed_ping_counts_as_unanswered(make_controller, clock, monitor_factory):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock)
    monitor_factory(controller, period=1.0, timeout=3.0)
    ref.pings.pop()[1].errback(DeadReferenceError("gone"))

    clock.advance(2.0)
    assert engine_id in controller.engines
    assert ref.pings == []  # no new ping while one is unanswered
    clock.advance(1.0)
    assert engine_id not in controller.engines


def test_late_answer_after_unregistering_is_ignored(make_controller, clock, monitor_factory):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock)
    monitor = monitor_factory(controller, period=1.0, timeout=2.0)
    advance(clock, 3)
    assert engine_id not in controller.engines
    assert ref.answer_pings() == 1
    advance(clock, 3)
    assert engine_id not in controller.engines
    assert monitor.beats == {}


def test_reregistered_engine_is_timed_afresh(make_controller, clock, monitor_factory):
    controller = make_controller()
    engine_id, old = add_remote_engine(controller, clock)
    monitor_factory(controller, period=1.0, timeout=3.0)
    clock.advance(2.0)
    controller.unregister_engine(engine_id)
    new_id, new = add_remote_engine(controller, clock)
    assert new_id == engine_id
    clock.advance(2.0)  # the old engine's ping is 4 s old; the new one's is 1 s old
    assert new_id in controller.engines
    assert not old.transport.aborted
    advance(clock, 10, each=new.answer_pings)
    assert new_id in controller.engines


def test_stop_service_stops_the_pings(make_controller, clock, monitor_factory):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock)
    monitor = monitor_factory(controller, period=1.0, timeout=2.0)
    monitor.stopService()
    assert clock.getDelayedCalls() == []
    ref.answer_pings()
    advance(clock, 10)
    assert ref.pings == []
    assert engine_id in controller.engines


@pytest.mark.parametrize("kwargs", [{"period": 0}, {"period": -1}, {"period": 2, "timeout": 1}])
def test_bad_settings_are_refused(make_controller, clock, kwargs):
    with pytest.raises(ValueError):
        HeartMonitor(make_controller(), clock=clock, **kwargs)


def test_drop_connection_ignores_objects_without_a_connection():
    assert drop_connection(object()) is False
    ref = FakeReference(task.Clock())
    assert drop_connection(ref) is True
    assert ref.transport.aborted
