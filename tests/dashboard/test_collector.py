"""Tier 1: what the dashboard's ClusterWatch asks of engines, and when
(issue 17: nobody watching, no questions to engines)."""
import pytest
from twisted.internet import defer, task

from ipkernel.dashboard.collector import WATCH_IDLE, ClusterWatch

pytestmark = pytest.mark.tier1


class FakeEngine:
    """Answers ``stats()`` with growing CPU seconds; counts the questions."""

    def __init__(self):
        self.asked = 0

    def stats(self):
        self.asked += 1
        return defer.succeed({"rss": 50 << 20, "cpu": 0.25 * self.asked})


class FakeQueued:
    def __init__(self):
        self.engine = FakeEngine()
        self.observers = []

    def register_failure_observer(self, obs, independent=True):
        self.observers.append(obs)

    def unregister_failure_observer(self, obs):
        self.observers.remove(obs)


class FakeController:
    def __init__(self, n):
        self.engines = {i: FakeQueued() for i in range(n)}

    def engine_info(self, engine_id):
        return {"ip": "127.0.0.1", "pid": 1000 + engine_id}

    def on_register_engine_do(self, f, *args):
        pass

    on_unregister_engine_do = on_register_engine_do_not = on_unregister_engine_do_not = \
        on_register_engine_do


class FakeNode:
    def __init__(self, n):
        self.controller = FakeController(n)


@pytest.fixture
def watched():
    clock = task.Clock()
    node = FakeNode(2)
    watch = ClusterWatch(node, clock=clock)
    watch.start()
    yield watch, clock, [q.engine for q in node.controller.engines.values()]
    watch.stop()


def asked(engines):
    return [e.asked for e in engines]


def test_nobody_watching_no_engine_is_asked(watched):
    watch, clock, engines = watched
    clock.pump([1.0] * 10)
    assert asked(engines) == [0, 0]
    assert len(watch.task_history) == 10     # the cheap counters are sampled anyway
    watch.snapshot()                         # the page's pushes do not count as a request
    clock.pump([1.0] * 3)
    assert asked(engines) == [0, 0]


def test_an_open_stream_is_asked_for_each_second_and_stops_when_it_closes(watched):
    watch, clock, engines = watched
    watch.viewers = 1
    clock.pump([1.0] * 4)
    assert asked(engines) == [4, 4]
    rows = {row["id"]: row for row in watch.engines()}
    assert rows[0]["rss"] == 50 << 20
    assert rows[0]["cpu"] == pytest.approx(25.0)   # 0.25 CPU s per 1 s: 25 %
    watch.viewers = 0
    clock.pump([1.0] * 4)
    assert asked(engines) == [4, 4]


def test_an_api_request_keeps_engines_asked_for_a_while(watched):
    watch, clock, engines = watched
    watch.watched()
    clock.pump([1.0] * int(WATCH_IDLE))
    assert asked(engines) == [int(WATCH_IDLE)] * 2
    clock.pump([1.0] * 5)
    assert asked(engines) == [int(WATCH_IDLE)] * 2


def test_a_gone_engine_is_shown_dead_and_not_asked(watched):
    watch, clock, engines = watched
    watch.viewers = 1
    queued = watch.node.controller.engines.pop(1)
    watch._unregistered(1)
    clock.pump([1.0] * 3)
    assert asked(engines) == [3, 0]
    assert not queued.observers
    assert [(row["id"], row["state"]) for row in watch.engines()] == [(0, "idle"), (1, "dead")]


def test_an_update_holds_only_the_samples_and_errors_after_its_mark(watched):
    watch, clock, engines = watched
    clock.pump([1.0] * 10)
    first = watch.snapshot()
    assert len(first["tasks"]["throughput"]) == len(first["channels"]["history"]) == 10
    assert first["limits"] == {"history": 600, "errors": 100}
    mark = watch.mark()
    clock.pump([1.0] * 3)
    watch._note_error(1, "execute('1/0')", ZeroDivisionError("division by zero"))
    update = watch.update(mark)
    assert [t for t, _ in update["tasks"]["throughput"]] == \
        [t for t, _ in watch.task_history][-3:]
    assert len(update["channels"]["history"]) == 3
    (error,) = update["errors"]
    assert (error["engine_id"], error["what"], error["seq"]) == (1, "execute", 1)
    assert [len(e) for e in (update["engines"], update["clients"])] == [2, 0]

    nothing_new = watch.update(watch.mark())
    assert nothing_new["tasks"]["throughput"] == nothing_new["channels"]["history"] == []
    assert nothing_new["errors"] == [] and len(nothing_new["engines"]) == 2


def test_an_update_after_more_than_the_history_holds_is_the_whole_history():
    clock = task.Clock()
    watch = ClusterWatch(FakeNode(1), clock=clock, history=5)
    watch.start()
    mark = watch.mark()
    clock.pump([1.0] * 12)
    assert len(watch.update(mark)["tasks"]["throughput"]) == 5
    watch.stop()


def test_what_it_keeps_is_bounded_however_long_it_runs(watched):
    from ipkernel.dashboard.collector import HISTORY, MAX_ERRORS, MAX_GONE, TRACEBACK_CHARS

    watch, clock, engines = watched
    clock.pump([1.0] * (HISTORY + 50))
    assert len(watch.task_history) == len(watch.channel_history) == HISTORY
    for k in range(5 * MAX_ERRORS):
        watch._note_error(0, "execute('x')", ValueError("x" * (2 * TRACEBACK_CHARS)))
    assert len(watch.errors) == MAX_ERRORS
    assert watch.errors[0]["seq"] == 4 * MAX_ERRORS + 1 and watch.errors[-1]["seq"] == 500
    assert all(len(e["traceback"]) <= TRACEBACK_CHARS for e in watch.errors)
    for engine_id in range(100, 100 + 3 * MAX_GONE):
        watch._unregistered(engine_id)
    assert len(watch.gone) == MAX_GONE
