"""HeartMonitor (tier 1): fake engine references, a fake clock, a fake pulse prober.

Each fake engine is a real :class:`RemoteEngine` over a
:class:`FakeReference` whose pings wait until the test answers them, so a
test decides exactly when an engine is silent, slow or fine.  A
:class:`FakeProber` stands for the engines' pulse processes: its questions
wait until the test answers them (busy, stopped, idle, gone or silent).
"""
import pytest
from foolscap.api import DeadReferenceError
from twisted.internet import defer, task

from ipkernel.controller.fc import RemoteEngine
from ipkernel.controller.heartbeat import HeartMonitor, drop_connection
from ipkernel.controller.pulseprobe import PulseAddress
from ipkernel.engine.pulse_child import BUSY, GONE, IDLE, KEY_SIZE, STOPPED
from ipkernel.error import EngineError

pytestmark = pytest.mark.tier1


class FakeTransport:
    def __init__(self):
        self.aborted = False

    def abortConnection(self):
        self.aborted = True


class FakeReference:
    """An engine's RemoteReference: pings and commands wait for the test."""

    def __init__(self, clock, pulse=()):
        self.clock = clock
        self.pulse = list(pulse)  # what it answers to "pulse"
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
        elif method == "pulse":
            d.callback(self.pulse)
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


class FakeProber:
    """Stands for PulseProber: each question waits until the test answers it."""

    def __init__(self):
        self.asked = []  # [address, wait, Deferred] of unanswered questions
        self.closed = False

    def ask(self, address, wait):
        d = defer.Deferred()
        self.asked.append([address, wait, d])
        return d

    def answer(self, state, ticks=0):
        """Answer every waiting question (``state`` None: no answer came)."""
        waiting, self.asked = self.asked, []
        for _, _, d in waiting:
            d.callback(None if state is None else (state, ticks))
        return len(waiting)

    def close(self):
        self.closed = True


@pytest.fixture
def prober():
    return FakeProber()


@pytest.fixture
def monitor_factory(clock, prober):
    monitors = []

    def make(controller, **kwargs):
        monitor = HeartMonitor(controller, clock=clock, prober=prober, **kwargs)
        monitor.startService()
        monitors.append(monitor)
        return monitor

    yield make
    for monitor in monitors:
        if monitor.running:
            monitor.stopService()


PULSE_KEY = bytes(range(KEY_SIZE))
#: What an engine with a pulse answers to "pulse".
OFFER = ["udp", "4321", PULSE_KEY.hex()]


def add_remote_engine(controller, clock, pulse=(), ip="10.0.0.7"):
    ref = FakeReference(clock, pulse)
    engine_id = controller.register_engine(RemoteEngine(ref), ip=ip)["id"]
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


# -- the pulse: engines busy in code that holds the GIL ------------------------------------

def messages(log_events):
    from twisted.logger import formatEvent
    return [formatEvent(e) for e in log_events]


def test_engine_whose_pulse_says_busy_is_kept(make_controller, clock, monitor_factory, prober,
                                              log_events):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock, pulse=OFFER)
    monitor_factory(controller, period=1.0, timeout=3.0)
    waiting = controller.engines[engine_id].execute("import re; re.match('(a*)*b', 'a'*40)")

    for _ in range(60):  # a minute of silence, the pulse saying "running" every period
        clock.advance(1.0)
        prober.answer(BUSY, ticks=100)
    assert engine_id in controller.engines
    assert not ref.transport.aborted
    assert not waiting.called
    busy = [m for m in messages(log_events) if "holds the GIL" in m]
    assert len(busy) == 1, busy  # logged once for the whole busy spell
    assert f"engine {engine_id} is busy" in busy[0]
    assert PULSE_KEY.hex() not in " ".join(messages(log_events))

    ref.answer_pings()  # the C code returned: the queued ping is answered
    ref.commands[0][2].callback({"number": 0})
    assert waiting.result == {"number": 0}
    advance(clock, 10, each=ref.answer_pings)
    assert engine_id in controller.engines
    assert prober.asked == []  # no question while the pings are answered


def test_the_pulse_is_asked_at_the_engines_address_with_its_key(make_controller, clock,
                                                                 monitor_factory, prober):
    controller = make_controller()
    monitor_factory(controller, period=1.0, timeout=3.0, pulse_wait=0.5)
    engine_id, ref = add_remote_engine(controller, clock, pulse=OFFER, ip="10.1.2.3")
    advance(clock, 4.0)  # first pinged on the beat at t=1, late at t=4
    [(address, wait, _)] = prober.asked
    assert (address.host, address.port, address.key, wait) == ("10.1.2.3", 4321, PULSE_KEY, 0.5)
    assert PULSE_KEY.hex() not in repr(address)


@pytest.mark.parametrize("state, named", [(STOPPED, "stopped"), (GONE, "gone"),
                                          (IDLE, "alive but idle"), (None, "did not answer")])
def test_engine_whose_pulse_does_not_say_busy_is_dropped(make_controller, clock, monitor_factory,
                                                         prober, log_events, state, named):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock, pulse=OFFER)
    monitor_factory(controller, period=1.0, timeout=3.0)
    waiting = controller.engines[engine_id].execute("x = 1")

    clock.advance(2.9)
    assert prober.asked == [] and engine_id in controller.engines
    clock.advance(0.1)
    assert len(prober.asked) == 1 and engine_id in controller.engines
    prober.answer(state)
    assert engine_id not in controller.engines
    assert ref.transport.aborted
    failure = pytest.raises(EngineError, waiting.result.raiseException)
    assert f"engine {engine_id}" in str(failure.value)
    waiting.addErrback(lambda f: None)
    dropped = [m for m in messages(log_events) if "unregistering it" in m]
    assert len(dropped) == 1 and "did not answer a ping" in dropped[0] and named in dropped[0]


def test_busy_then_stopped_engine_is_dropped(make_controller, clock, monitor_factory, prober):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock, pulse=OFFER)
    monitor_factory(controller, period=1.0, timeout=3.0)
    advance(clock, 10, each=lambda: prober.answer(BUSY))
    assert engine_id in controller.engines
    clock.advance(1.0)
    prober.answer(STOPPED)
    assert engine_id not in controller.engines


def test_one_question_at_a_time_and_a_late_answer_is_ignored(make_controller, clock,
                                                            monitor_factory, prober):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock, pulse=OFFER)
    monitor_factory(controller, period=1.0, timeout=3.0)
    advance(clock, 6)
    assert len(prober.asked) == 1  # still waiting for the first answer: no second question
    ref.answer_pings()             # meanwhile the engine answered its ping
    prober.answer(STOPPED)         # a stale verdict about the old ping
    assert engine_id in controller.engines
    assert not ref.transport.aborted


def test_answer_about_an_unregistered_engine_is_ignored(make_controller, clock, monitor_factory,
                                                        prober):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock, pulse=OFFER)
    monitor_factory(controller, period=1.0, timeout=3.0)
    advance(clock, 3)
    controller.unregister_engine(engine_id)
    new_id, new = add_remote_engine(controller, clock, pulse=OFFER)
    assert new_id == engine_id
    prober.answer(STOPPED)
    assert new_id in controller.engines and not new.transport.aborted


def test_a_dead_engine_with_a_silent_pulse_goes_within_period_timeout_and_wait(
        make_controller, clock, monitor_factory, prober):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock, pulse=OFFER)
    monitor = monitor_factory(controller)
    advance(clock, 7.3, step=0.1, each=ref.answer_pings)  # it answers until t=7.3, then dies
    death = clock.seconds()
    bound = monitor.period + monitor.timeout + monitor.pulse_wait
    assert bound <= 9.0

    def silent_pulse():
        # the real prober answers None once pulse_wait has passed
        for address, wait, d in list(prober.asked):
            if clock.seconds() - asked_at.setdefault(id(d), clock.seconds()) >= wait:
                prober.asked.remove([address, wait, d])
                d.callback(None)
    asked_at = {}
    while engine_id in controller.engines:
        clock.advance(0.1)
        silent_pulse()
        assert clock.seconds() - death <= bound + 1e-6


def test_engine_registered_while_running_is_asked_for_its_pulse_at_once(make_controller, clock,
                                                                        monitor_factory, prober):
    controller = make_controller()
    monitor = monitor_factory(controller, period=5.0, timeout=10.0)
    engine_id, ref = add_remote_engine(controller, clock, pulse=OFFER)
    # before the next beat: the engine may be too busy to answer by then
    assert monitor.beats[engine_id].pulse is not None
    assert monitor.beats[engine_id].pulse.port == 4321


@pytest.mark.parametrize("offer", [[], ["tcp", "1", PULSE_KEY.hex()], ["udp", "x", "00"],
                                   ["udp", "0", PULSE_KEY.hex()], ["udp", "1", "ab"],
                                   ["udp", "70000", PULSE_KEY.hex()], None, "udp"])
def test_engine_without_a_usable_pulse_is_dropped_as_before(make_controller, clock,
                                                            monitor_factory, prober, offer):
    controller = make_controller()
    ref = FakeReference(clock)
    ref.pulse = offer
    engine_id = controller.register_engine(RemoteEngine(ref), ip="10.0.0.7")["id"]
    monitor_factory(controller, period=1.0, timeout=3.0)
    advance(clock, 3.0)
    assert prober.asked == []
    assert engine_id not in controller.engines


def test_engine_that_cannot_say_its_pulse_is_dropped_as_before(make_controller, clock,
                                                               monitor_factory, prober):
    controller = make_controller()
    ref = FakeReference(clock)
    original = ref.callRemote

    def old_engine(method, *args):
        if method == "pulse":
            return defer.fail(DeadReferenceError("no such method"))
        return original(method, *args)
    ref.callRemote = old_engine
    engine_id = controller.register_engine(RemoteEngine(ref), ip="10.0.0.7")["id"]
    monitor_factory(controller, period=1.0, timeout=3.0)
    advance(clock, 3.0)
    assert engine_id not in controller.engines


def test_pulse_address_from_offer():
    address = PulseAddress.from_offer("127.0.0.1", OFFER)
    assert (address.host, address.port, address.key) == ("127.0.0.1", 4321, PULSE_KEY)
    assert PulseAddress.from_offer(None, OFFER) is None  # no address to ask at


def test_stop_service_closes_the_prober(make_controller, clock, monitor_factory, prober):
    monitor = monitor_factory(make_controller())
    monitor.stopService()
    assert prober.closed


@pytest.mark.parametrize("wait", [0, -1])
def test_bad_pulse_wait_is_refused(make_controller, clock, wait):
    with pytest.raises(ValueError, match="pulse wait"):
        HeartMonitor(make_controller(), clock=clock, pulse_wait=wait)


def test_a_failed_ping_is_not_rescued_by_a_busy_pulse(make_controller, clock, monitor_factory,
                                                      prober, log_events):
    controller = make_controller()
    engine_id, ref = add_remote_engine(controller, clock, pulse=OFFER)
    monitor_factory(controller, period=1.0, timeout=3.0)
    ref.pings.pop()[1].errback(DeadReferenceError("connection lost"))
    advance(clock, 3.0)
    assert prober.asked == []  # nothing to ask: the connection is broken
    assert engine_id not in controller.engines
    assert any("its ping failed" in m for m in messages(log_events))
