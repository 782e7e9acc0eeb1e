"""How often a task whose engine is lost mid-run is rescheduled (issue 13; tier 1).

The engines are in-process; "losing" one is unregistering it while it runs
the task, which is what the controller sees when an engine process dies.
"""
import argparse

import pytest
import pytest_twisted

from ipkernel import wire
from ipkernel.engine import QueuedEngine
from ipkernel.error import EngineError, TaskKilledEngines
from ipkernel.task import StringTask, TaskController
from ipkernel.task.controller import loss_count
from ipkernel.task.fc import WireTask
from ipkernel.task.store import SQLiteTaskStore

from awaiting import raises, within

pytestmark = pytest.mark.tier1


def running_engine(tc, taskid):
    return tc._live[taskid].task._engineid


async def lose_engines_under(tc, gate, taskid, count):
    """Unregister, ``count`` times, the engine the task runs on; return their ids."""
    lost = []
    for k in range(count):
        await gate.wait_arrivals(k + 1)
        engine_id = running_engine(tc, taskid)
        lost.append(engine_id)
        tc.controller.unregister_engine(engine_id)
    return lost


@pytest_twisted.ensureDeferred
async def test_default_is_three_reschedules_then_a_named_error(make_tc, gates):
    tc = make_tc(5)
    assert tc.max_engine_losses == 3
    gate = gates.new()
    # retries and a recovery task are for failures of the task's own code
    tid = await tc.run(StringTask(gate.code, retries=5, recovery_task=StringTask("a = 1")))
    lost = await lose_engines_under(tc, gate, tid, 3)
    await gate.wait_arrivals(4)   # rescheduled a third time, on a fourth engine
    assert await within(tc.get_task_result(tid)) is None
    assert tc._live[tid].task.retries == 5
    lost.append(running_engine(tc, tid))
    tc.controller.unregister_engine(lost[-1])
    err = await raises(TaskKilledEngines, tc.get_task_result(tid, block=True))
    assert isinstance(err, EngineError)
    text = str(err)
    assert f"task {tid} " in text and "4 times" in text
    assert f"engines {', '.join(map(str, lost))}" in text
    assert "mec.execute" in text and "--task-max-engine-losses" in text
    assert len(set(lost)) == 4
    status = await within(tc.queue_status())
    assert status == {"pending": 0, "scheduled": 0, "succeeded": 0, "failed": 1}
    # the engine left is not taken for the task: it still runs other work
    ok = await tc.run(StringTask("b = 2", pull="b"))
    gate.open()
    assert (await within(tc.get_task_result(ok, block=True)))["b"] == 2


@pytest_twisted.ensureDeferred
async def test_zero_losses_allowed_fails_at_the_first(make_tc, gates):
    tc = make_tc(2, max_engine_losses=0)
    gate = gates.new()
    tid = await tc.run(StringTask(gate.code))
    lost = await lose_engines_under(tc, gate, tid, 1)
    err = await raises(TaskKilledEngines, tc.get_task_result(tid, block=True))
    assert f"disconnected once (engine {lost[0]})" in str(err)
    assert "at most 0 times" in str(err)
    gate.open()


@pytest_twisted.ensureDeferred
async def test_losses_count_per_task(make_tc, make_engine, gates):
    # Two tasks on two engines; each loses one engine and goes on (limit 1).
    tc = make_tc(2, max_engine_losses=1)
    gate = gates.new()
    a = await tc.run(StringTask(gate.code + "\nx = 1", pull="x"))
    b = await tc.run(StringTask(gate.code + "\nx = 2", pull="x"))
    await gate.wait_arrivals(2)
    for engine_id in list(tc.controller.engines):
        tc.controller.unregister_engine(engine_id)
    for _ in range(2):
        tc.controller.register_engine(QueuedEngine(make_engine()))
    await gate.wait_arrivals(4)
    assert tc._live[a].losses == tc._live[b].losses == 1
    gate.open()
    assert (await within(tc.get_task_result(a, block=True)))["x"] == 1
    assert (await within(tc.get_task_result(b, block=True)))["x"] == 2


def test_the_limit_is_checked():
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="max_engine_losses"):
            TaskController(object(), max_engine_losses=bad)
    assert loss_count("0") == 0 and loss_count("7") == 7
    for bad in ("-1", "x", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="losses >= 0"):
            loss_count(bad)


def test_the_error_crosses_the_wire_as_itself():
    exc = TaskKilledEngines("task 3 was running on an engine that died 4 times")
    back = wire.exception_from_record(wire.record_from_exception(exc))
    assert type(back) is TaskKilledEngines and str(back) == str(exc)


# -- persisted with --db=sqlite -------------------------------------------------------

def map_spec():
    from ipkernel import serialize
    junk = serialize.Serialized([b"\x00opaque"], "pickle", {})
    return {"kind": "map", "retries": 0, "clear_before": False, "clear_after": False,
            "after": None, "recovery": None, "body": {"func": junk, "args": junk, "kwargs": junk}}


def lose_once(tc, taskid, engine_id):
    """What a loss of ``engine_id`` during the task does, without running it."""
    rec = tc._live[taskid]
    tc.scheduler.remove_task(rec.task)
    tc._start(rec.task)
    tc._task_done(rec.task, False, None, lost=True, worker=type("W", (), {"workerid": engine_id}))


@pytest_twisted.ensureDeferred
async def test_losses_survive_a_controller_restart(make_controller, tmp_path):
    path = tmp_path / "tasks.sqlite"
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path), max_engine_losses=3)
    tid = await tc.run(WireTask(map_spec()))
    lose_once(tc, tid, 4)
    lose_once(tc, tid, 7)
    tc.stop()

    # it was queued again (still 'running' in the store): the restart adds a loss
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path), max_engine_losses=3)
    try:
        assert tc._live[tid].lost_on == (4, 7, None)
        assert tc._live[tid].task.retries == 0
    finally:
        tc.stop()
    # the restart's loss was written at once: a second restart counts one more
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path), max_engine_losses=3)
    try:
        assert tc._live[tid].lost_on == (4, 7, None, None)
        lose_once(tc, tid, 9)
        err = await raises(TaskKilledEngines, tc.get_task_result(tid))
        assert "5 times (engines 4, 7, 9; 2 lost when the controller stopped)" in str(err)
    finally:
        tc.stop()
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path))
    try:
        with pytest.raises(wire.WireError) as info:
            await within(tc.get_task_result(tid))
        assert info.value.record.ename == "TaskKilledEngines"
    finally:
        tc.stop()


# -- batches ----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_tasks_of_a_lost_batch_run_alone_afterwards(make_tc, make_engine, gates,
                                                          monkeypatch):
    # One engine dying under a batch costs each of its tasks one loss; from
    # then on they run one at a time, so innocent tasks never share the
    # losses of a task that kills its engines.
    from ipkernel.task import MapTask
    from ipkernel.task.controller import WorkerFromQueuedEngine
    sent = []
    run_batch = WorkerFromQueuedEngine.run_batch

    def recording(self, tasks):
        sent.append([t.taskid for t in tasks])
        return run_batch(self, tasks)
    monkeypatch.setattr(WorkerFromQueuedEngine, "run_batch", recording)

    tc = make_tc(1, batch_time=60.0)
    first = await tc.run(MapTask(abs, (-1,)))
    await within(tc.get_task_result(first, block=True))
    tc._workers[0].mean_duration = 0.001   # its tasks are short: they go in batches
    hold = gates.new()
    held = await tc.run(StringTask(hold.code))
    await hold.wait_arrivals(1)
    inner = gates.new()
    await tc.run(MapTask(abs, (-2,)))   # takes the pipelined slot alone
    ids = [await tc.run(StringTask(f"{inner.code}\nx = 1", pull="x"))]
    ids += [await tc.run(StringTask(f"x = {k}", pull="x")) for k in (2, 3)]
    hold.open()
    await inner.wait_arrivals(1)
    assert any(set(ids) <= set(batch) for batch in sent), sent
    before = len(sent)
    tc.controller.unregister_engine(0)
    assert all(tc._live[i].losses == 1 for i in ids)
    tc.controller.register_engine(QueuedEngine(make_engine()))
    tc._workers[0].mean_duration = 0.001
    inner.open()
    results = [await within(tc.get_task_result(i, block=True)) for i in ids]
    assert [tr["x"] for tr in results] == [1, 2, 3]
    assert all(set(batch).isdisjoint(ids) for batch in sent[before:]), sent[before:]
    await within(tc.barrier([held]))


class LateNews(TaskController):
    """Hears of unregistered engines only when told (:meth:`deliver_news`), as
    over the network, where a run on a dead engine may fail before the
    disconnection is handled."""

    def __init__(self, *args, **kwargs):
        from twisted.internet import defer
        self.news = []
        self.run_ended = defer.Deferred()
        super().__init__(*args, **kwargs)

    def _engine_unregistered(self, engine_id):
        self.news.append(engine_id)

    def deliver_news(self):
        for engine_id in self.news:
            TaskController._engine_unregistered(self, engine_id)
        self.news = []

    def _task_done(self, task, success, result, lost, worker):
        super()._task_done(task, success, result, lost, worker)
        if not self.run_ended.called:
            self.run_ended.callback((task.taskid, lost, worker.workerid))


@pytest_twisted.ensureDeferred
async def test_a_lost_engine_is_counted_once_even_with_a_spare_slot(
        make_controller, make_engine, gates):
    tc = LateNews(make_controller(1), max_engine_losses=1)
    try:
        worker = tc._workers[0]
        worker.mean_duration = 0.001   # short tasks: a second, pipelined slot
        tc._offer(worker)
        assert worker.spare
        gate = gates.new()
        tid = await tc.run(StringTask(gate.code + "\nx = 1", pull="x"))
        await gate.wait_arrivals(1)
        dead = []

        def gone(task):   # what a run on a dead engine does: fail at once
            from twisted.internet import defer
            from twisted.python.failure import Failure
            dead.append(task.taskid)
            return defer.succeed((False, Failure(EngineError("the engine is gone"))))
        worker.run = gone
        tc.controller.unregister_engine(0)
        assert await within(tc.run_ended) == (tid, True, 0)
        assert dead == []
        tc.deliver_news()
        assert tc._live[tid].lost_on == (0,)
        tc.controller.register_engine(QueuedEngine(make_engine()))
        gate.open()
        # not sent to the dead engine's spare slot (which would lose it twice)
        assert (await within(tc.get_task_result(tid, block=True)))["x"] == 1
    finally:
        tc.stop()
