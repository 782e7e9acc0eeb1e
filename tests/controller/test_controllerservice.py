"""Tier 1: ControllerService, the engine registry (IControllerCore)."""
import time

import pytest
import pytest_twisted
from twisted.internet import defer
from zope.interface.verify import verifyObject

from ipkernel.controller import ControllerService
from ipkernel.engine import QueuedEngine
from ipkernel.error import ControllerError, EngineError
from ipkernel.interfaces.controller import IControllerBase, IControllerCore
from ipkernel.interfaces.engine import IEngineQueued

from awaiting import within

pytestmark = pytest.mark.tier1


@pytest.fixture
def new_engine(make_engine):
    """``new_engine() -> QueuedEngine`` around a fresh in-process engine."""
    return lambda: QueuedEngine(make_engine())


class Recorder:
    """A callable that remembers how it was called."""

    def __init__(self, fail_with=None):
        self.calls = []
        self.fail_with = fail_with

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.fail_with is not None:
            raise self.fail_with


class ObserverBoom(Exception):
    pass


def logged_failures(events):
    found = []
    for event in events:
        failure = event.get("log_failure", event.get("failure"))
        if failure is not None:
            found.append(failure)
    return found


# --- interface -----------------------------------------------------------

def test_provides_controller_interfaces():
    controller = ControllerService()
    assert verifyObject(IControllerCore, controller)
    assert verifyObject(IControllerBase, controller)
    assert controller.engines == {}


# --- registration and ids --------------------------------------------------

def test_register_with_requested_id_zero(new_engine):
    controller = ControllerService()
    engine = new_engine()
    result = controller.register_engine(engine, 0)
    assert result == {"id": 0}
    assert list(controller.engines) == [0]
    assert controller.engines[0] is engine


def test_register_gives_the_engine_its_id(new_engine):
    controller = ControllerService()
    controller.register_engine(new_engine())
    engine = new_engine()
    assert controller.register_engine(engine) == {"id": 1}
    assert engine.id == 1


@pytest_twisted.ensureDeferred
async def test_registered_engine_sees_its_id_in_namespace(new_engine):
    controller = ControllerService()
    first, second = new_engine(), new_engine()
    controller.register_engine(first, id=3)
    controller.register_engine(second)
    assert await within(first.pull("id")) == 3
    assert await within(second.pull("id")) == 0


@pytest_twisted.ensureDeferred
async def test_register_wraps_a_plain_engine(make_engine):
    controller = ControllerService()
    assert controller.register_engine(make_engine()) == {"id": 0}
    queued = controller.engines[0]
    assert IEngineQueued.providedBy(queued)
    result = await within(queued.execute("a = 7"))
    assert result["number"] == 1
    assert await within(queued.pull("a")) == 7


def test_unregister_removes(new_engine):
    controller = ControllerService()
    controller.register_engine(new_engine(), 0)
    assert controller.unregister_engine(0) is True
    assert controller.engines == {}
    assert controller.unregister_engine(0) is False


def test_unregister_unknown_id_returns_false_and_keeps_others(new_engine):
    controller = ControllerService()
    engine = new_engine()
    controller.register_engine(engine)
    assert controller.unregister_engine(7) is False
    assert controller.engines == {0: engine}


def test_id_reuse_scenario(new_engine):
    controller = ControllerService()
    a, b = new_engine(), new_engine()
    assert controller.register_engine(a, 0) == {"id": 0}
    assert controller.register_engine(b, 1) == {"id": 1}
    assert controller.unregister_engine(0) is True
    assert controller.register_engine(a, 0) == {"id": 0}
    assert controller.unregister_engine(1) is True
    # B asks for 0, which A holds: it gets the lowest free id instead
    assert controller.register_engine(b, 0) == {"id": 1}
    assert controller.engines == {0: a, 1: b}
    assert controller.unregister_engine(0) is True
    assert controller.unregister_engine(1) is True
    assert controller.engines == {}


def test_lowest_free_id_is_used_first(new_engine):
    controller = ControllerService()
    ids = [controller.register_engine(new_engine())["id"] for _ in range(4)]
    assert ids == [0, 1, 2, 3]
    controller.unregister_engine(2)
    controller.unregister_engine(1)
    assert controller.register_engine(new_engine()) == {"id": 1}
    assert controller.register_engine(new_engine()) == {"id": 2}
    assert controller.register_engine(new_engine()) == {"id": 4}
    assert sorted(controller.engines) == [0, 1, 2, 3, 4]


def test_desired_id_honoured_when_free(new_engine):
    controller = ControllerService()
    assert controller.register_engine(new_engine(), id=5) == {"id": 5}
    assert controller.register_engine(new_engine()) == {"id": 0}
    assert controller.register_engine(new_engine(), id=5) == {"id": 1}
    assert controller.register_engine(new_engine(), id=3) == {"id": 3}
    assert sorted(controller.engines) == [0, 1, 3, 5]


def test_save_ids_keeps_an_unregistered_id_for_explicit_requests(new_engine):
    controller = ControllerService(save_ids=True)
    first = new_engine()
    assert controller.register_engine(first) == {"id": 0}
    assert controller.unregister_engine(0) is True
    # a newcomer that asks for nothing does not get the saved id
    assert controller.register_engine(new_engine()) == {"id": 1}
    assert controller.register_engine(new_engine()) == {"id": 2}
    # the returning engine asks for its id and gets it back
    assert controller.register_engine(first, id=0) == {"id": 0}
    assert sorted(controller.engines) == [0, 1, 2]


def test_without_save_ids_an_unregistered_id_is_reused(new_engine):
    controller = ControllerService(save_ids=False)
    controller.register_engine(new_engine())
    controller.unregister_engine(0)
    assert controller.register_engine(new_engine()) == {"id": 0}


def test_controller_error_when_no_id_is_free(new_engine):
    # the id pool is 0..max_engines inclusive
    controller = ControllerService(max_engines=1)
    assert controller.register_engine(new_engine()) == {"id": 0}
    assert controller.register_engine(new_engine()) == {"id": 1}
    with pytest.raises(ControllerError):
        controller.register_engine(new_engine())
    assert sorted(controller.engines) == [0, 1]
    # freeing an id makes registration possible again
    controller.unregister_engine(0)
    assert controller.register_engine(new_engine()) == {"id": 0}
    with pytest.raises(ControllerError):
        controller.register_engine(new_engine())


@pytest.mark.parametrize("kwargs", [
    {"id": "0"},
    {"id": 1.5},
    {"ip": 127},
    {"port": "10105"},
    {"pid": "123"},
    {"pid": 1.0},
], ids=lambda kw: "-".join(f"{k}={v!r}" for k, v in kw.items()))
def test_register_bad_argument_types(new_engine, kwargs):
    controller = ControllerService()
    with pytest.raises(TypeError):
        controller.register_engine(new_engine(), **kwargs)
    assert controller.engines == {}


def test_register_something_that_is_not_an_engine():
    controller = ControllerService()
    with pytest.raises(TypeError):
        controller.register_engine(object())
    assert controller.engines == {}


@pytest.mark.parametrize("bad_id", ["foo", 1.5, [0]])
def test_unregister_bad_argument_type(new_engine, bad_id):
    controller = ControllerService()
    controller.register_engine(new_engine())
    with pytest.raises(TypeError):
        controller.unregister_engine(bad_id)
    assert list(controller.engines) == [0]


# --- observers ------------------------------------------------------------

def test_on_register_observer_with_id_and_extra_arguments(new_engine):
    controller = ControllerService()
    seen_engines = []
    record = Recorder()

    def observer(*args, **kwargs):
        seen_engines.append(sorted(controller.engines))
        record(*args, **kwargs)

    controller.on_register_engine_do(observer, True, "x", 2, flag=True)
    controller.register_engine(new_engine())
    controller.register_engine(new_engine(), id=4)
    assert record.calls == [((0, "x", 2), {"flag": True}),
                            ((4, "x", 2), {"flag": True})]
    # observers run after the engine is in the registry
    assert seen_engines == [[0], [0, 4]]


def test_on_register_observer_without_id(new_engine):
    controller = ControllerService()
    record = Recorder()
    bare = Recorder()
    controller.on_register_engine_do(record, False, "y", key="v")
    controller.on_register_engine_do(bare, False)
    controller.register_engine(new_engine())
    assert record.calls == [(("y",), {"key": "v"})]
    assert bare.calls == [((), {})]


def test_on_unregister_observer_with_and_without_id(new_engine):
    controller = ControllerService()
    with_id, without_id = Recorder(), Recorder()
    controller.on_unregister_engine_do(with_id, True, "a", k=1)
    controller.on_unregister_engine_do(without_id, False, "b")
    controller.register_engine(new_engine())
    controller.register_engine(new_engine())
    assert with_id.calls == [] and without_id.calls == []
    controller.unregister_engine(1)
    assert with_id.calls == [((1, "a"), {"k": 1})]
    assert without_id.calls == [(("b",), {})]
    # unregistering an unknown id notifies nobody
    controller.unregister_engine(9)
    assert len(with_id.calls) == 1 and len(without_id.calls) == 1


def test_on_register_do_not_removes_observer(new_engine):
    controller = ControllerService()
    removed, kept = Recorder(), Recorder()
    controller.on_register_engine_do(removed, False)
    controller.on_register_engine_do(kept, True)
    controller.register_engine(new_engine())
    controller.on_register_engine_do_not(removed)
    controller.register_engine(new_engine())
    assert removed.calls == [((), {})]
    assert kept.calls == [((0,), {}), ((1,), {})]


def test_do_not_removes_only_the_first_matching_entry(new_engine):
    controller = ControllerService()
    record = Recorder()
    controller.on_register_engine_do(record, True, "first")
    controller.on_register_engine_do(record, True, "second")
    controller.on_register_engine_do_not(record)
    controller.register_engine(new_engine())
    assert record.calls == [((0, "second"), {})]


def test_on_unregister_do_not_removes_observer(new_engine):
    controller = ControllerService()
    removed, kept = Recorder(), Recorder()
    controller.on_unregister_engine_do(removed, True)
    controller.on_unregister_engine_do(kept, True)
    controller.register_engine(new_engine())
    controller.register_engine(new_engine())
    controller.unregister_engine(0)
    controller.on_unregister_engine_do_not(removed)
    controller.unregister_engine(1)
    assert removed.calls == [((0,), {})]
    assert kept.calls == [((0,), {}), ((1,), {})]


def test_failing_register_observer_is_logged_and_kept(new_engine, log_events):
    controller = ControllerService()
    failing = Recorder(fail_with=ObserverBoom("observer failed"))
    after = Recorder()
    controller.on_register_engine_do(failing, True)
    controller.on_register_engine_do(after, True)

    assert controller.register_engine(new_engine()) == {"id": 0}
    assert 0 in controller.engines
    booms = [f for f in logged_failures(log_events) if f.check(ObserverBoom)]
    assert len(booms) == 1
    # the observers registered after the failing one still ran
    assert after.calls == [((0,), {})]

    # the failing observer was kept: it runs (and is logged) again
    assert controller.register_engine(new_engine()) == {"id": 1}
    assert failing.calls == [((0,), {}), ((1,), {})]
    assert after.calls == [((0,), {}), ((1,), {})]
    booms = [f for f in logged_failures(log_events) if f.check(ObserverBoom)]
    assert len(booms) == 2


def test_failing_unregister_observer_is_logged_and_kept(new_engine, log_events):
    controller = ControllerService()
    failing = Recorder(fail_with=ObserverBoom("unregister observer failed"))
    controller.on_unregister_engine_do(failing, True)
    controller.register_engine(new_engine())
    controller.register_engine(new_engine())
    assert controller.unregister_engine(0) is True
    assert 0 not in controller.engines
    assert controller.unregister_engine(1) is True
    assert failing.calls == [((0,), {}), ((1,), {})]
    booms = [f for f in logged_failures(log_events) if f.check(ObserverBoom)]
    assert len(booms) == 2
    assert controller.engines == {}


def test_on_n_engines_registered_later_called_exactly_once(new_engine):
    controller = ControllerService()
    record = Recorder()
    controller.on_n_engines_registered_do(2, record, "ready", count=2)
    controller.register_engine(new_engine())
    assert record.calls == []
    controller.register_engine(new_engine())
    assert record.calls == [(("ready",), {"count": 2})]
    controller.register_engine(new_engine())
    controller.unregister_engine(2)
    controller.unregister_engine(1)
    controller.register_engine(new_engine())
    assert record.calls == [(("ready",), {"count": 2})]


def test_on_n_engines_registered_called_now_if_already_enough(new_engine):
    controller = ControllerService()
    for _ in range(3):
        controller.register_engine(new_engine())
    record = Recorder()
    controller.on_n_engines_registered_do(2, record, 1, 2, three=3)
    assert record.calls == [((1, 2), {"three": 3})]
    controller.register_engine(new_engine())
    assert len(record.calls) == 1


def test_failing_n_engines_observer_is_logged(new_engine, log_events):
    controller = ControllerService()
    failing = Recorder(fail_with=ObserverBoom("n engines observer failed"))
    controller.on_n_engines_registered_do(1, failing)
    assert controller.register_engine(new_engine()) == {"id": 0}
    assert len(failing.calls) == 1
    assert any(f.check(ObserverBoom) for f in logged_failures(log_events))


@pytest_twisted.ensureDeferred
async def test_wait_for_engines_fires_once_enough_are_registered(new_engine):
    controller = ControllerService()
    d = controller.wait_for_engines(2)
    assert isinstance(d, defer.Deferred)
    assert not d.called
    controller.register_engine(new_engine())
    assert not d.called
    controller.register_engine(new_engine(), id=5)
    ids = await within(d)
    assert sorted(ids) == [0, 5]


@pytest_twisted.ensureDeferred
async def test_wait_for_engines_already_satisfied(new_engine):
    controller = ControllerService()
    for _ in range(3):
        controller.register_engine(new_engine())
    ids = await within(controller.wait_for_engines(2))
    assert sorted(ids) == [0, 1, 2]


@pytest_twisted.ensureDeferred
async def test_several_waiters_for_engines(new_engine):
    controller = ControllerService()
    one = controller.wait_for_engines(1)
    three = controller.wait_for_engines(3)
    controller.register_engine(new_engine())
    assert sorted(await within(one)) == [0]
    assert not three.called
    controller.register_engine(new_engine())
    controller.register_engine(new_engine())
    assert sorted(await within(three)) == [0, 1, 2]


def test_engine_info(new_engine):
    controller = ControllerService()
    before = time.time()
    controller.register_engine(new_engine(), ip="10.0.0.7", port=10201, pid=4242)
    controller.register_engine(new_engine())
    after = time.time()
    info = controller.engine_info(0)
    assert set(info) == {"id", "ip", "port", "pid", "registered"}
    assert (info["id"], info["ip"], info["port"], info["pid"]) == (0, "10.0.0.7", 10201, 4242)
    assert before <= info["registered"] <= after
    bare = controller.engine_info(1)
    assert (bare["id"], bare["ip"], bare["port"], bare["pid"]) == (1, None, None, None)
    with pytest.raises(KeyError):
        controller.engine_info(2)
    controller.unregister_engine(0)
    with pytest.raises(KeyError):
        controller.engine_info(0)


# --- unregistering a busy engine -----------------------------------------

@pytest_twisted.ensureDeferred
async def test_unregister_fails_that_engines_commands(make_controller, gates):
    controller = make_controller(2)
    gate = gates.new()
    busy = controller.engines[0]
    running = busy.execute(gate.code)
    waiting = [busy.execute("a = 1"), busy.pull("id"), busy.push({"b": 2})]
    other = controller.engines[1].execute("c = 3")
    await gate.wait_arrivals(1)

    assert controller.unregister_engine(0) is True
    for d in waiting:
        with pytest.raises(EngineError):
            await within(d)
    with pytest.raises(EngineError):
        await within(running)
    gate.open()

    # engine 1 is untouched
    assert (await within(other))["number"] == 1
    assert await within(controller.engines[1].pull("c")) == 3
    assert sorted(controller.engines) == [1]


# --- shutdown ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_shutdown_calls_the_hook():
    calls = []
    controller = ControllerService(shutdown_hook=lambda *a, **kw: calls.append((a, kw)))
    d = controller.shutdown()
    assert isinstance(d, defer.Deferred)
    assert await within(d) is None
    assert len(calls) == 1


@pytest_twisted.ensureDeferred
async def test_shutdown_without_hook_fires_none():
    controller = ControllerService()
    assert await within(controller.shutdown()) is None
