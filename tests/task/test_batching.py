"""Tier 1: small tasks travel to engines in pipelined batches (issue 5, throughput)."""
import pytest
import pytest_twisted

from ipkernel.engine import QueuedEngine
from ipkernel.error import EngineError, TaskRejectError
from ipkernel.task import MapTask, StringTask
from ipkernel.task.controller import WorkerFromQueuedEngine

from awaiting import raises, within

pytestmark = pytest.mark.tier1


@pytest.fixture
def batches(monkeypatch):
    """The task ids of every batch a worker sent, in order: ``[(engine, [ids])]``."""
    sent = []
    run_batch = WorkerFromQueuedEngine.run_batch

    def recording(self, tasks):
        sent.append((self.workerid, [t.taskid for t in tasks]))
        return run_batch(self, tasks)

    monkeypatch.setattr(WorkerFromQueuedEngine, "run_batch", recording)
    return sent


async def learn_durations(tc):
    """Run one task on every engine so each worker knows its tasks are short."""
    n = len(tc.controller.engines)
    held_gate = [await tc.run(MapTask(lambda: id)) for _ in range(n)]
    await within(tc.barrier(held_gate))
    for worker in tc._workers.values():
        worker.mean_duration = 0.001  # whatever the first run cost, call it short


async def hold_engines(tc, gates):
    """Occupy every engine with a task waiting at a gate; return (gate, ids)."""
    gate = gates.new()
    n = len(tc.controller.engines)
    ids = [await tc.run(StringTask(gate.code)) for _ in range(n)]
    await gate.wait_arrivals(n)
    return gate, ids


def square(i):
    return i * i


async def run_queued_squares(tc, gates, n):
    """Queue ``n`` short tasks while every engine is held, then let them run;
    return their ids once all have finished."""
    await learn_durations(tc)
    gate, held = await hold_engines(tc, gates)
    ids = [await tc.run(MapTask(square, (i,))) for i in range(n)]
    gate.open()
    await within(tc.barrier(held + ids))
    return ids


@pytest_twisted.ensureDeferred
async def test_queued_short_tasks_go_in_batches_and_each_runs_once(make_tc, gates, batches):
    tc = make_tc(2, batch_time=60.0, max_batch=16)
    ids = await run_queued_squares(tc, gates, 100)
    assert [await within(tc.get_task_result(i)) for i in ids] == [i * i for i in range(100)]
    batched = [tid for _, tids in batches for tid in tids]
    assert len(batched) == len(set(batched)) and set(batched) <= set(ids)
    assert len(batched) >= 90  # the last few may go alone: their share is one task
    assert all(len(tids) <= 16 for _, tids in batches)
    assert len(batches) < 100 // 4
    assert {engine for engine, _ in batches} == {0, 1}  # both engines shared the queue


@pytest_twisted.ensureDeferred
async def test_a_batch_is_never_more_than_a_workers_share_of_the_queue(make_tc, gates, batches):
    tc = make_tc(4, batch_time=60.0, max_batch=1000)
    ids = await run_queued_squares(tc, gates, 40)
    assert max(len(tids) for _, tids in batches) <= 40 // 4 + 1
    # so the 40 took several batches, though max_batch would allow one (which
    # engines took them depends on which finished its held task first)
    batched = [tid for _, tids in batches for tid in tids]
    assert len(batches) >= 4 and len(batched) == len(set(batched)) and set(batched) <= set(ids)


@pytest_twisted.ensureDeferred
async def test_long_or_unknown_tasks_go_one_at_a_time(make_tc, gates, batches):
    tc = make_tc(2, batch_time=60.0)
    gate, held = await hold_engines(tc, gates)  # durations not known yet
    ids = [await tc.run(MapTask(square, (i,))) for i in range(6)]
    for worker in tc._workers.values():
        worker.mean_duration = 120.0  # as if its tasks took longer than batch_time
    gate.open()
    await within(tc.barrier(held + ids))
    assert [await within(tc.get_task_result(i)) for i in ids] == [i * i for i in range(6)]
    # the gate tasks' long runs kept every worker out of batching
    assert batches == []


@pytest_twisted.ensureDeferred
async def test_tasks_with_depend_or_engine_resets_are_not_batched(make_tc, gates, batches):
    tc = make_tc(1, batch_time=60.0)
    await learn_durations(tc)
    gate, held = await hold_engines(tc, gates)
    ids = [await tc.run(MapTask(square, (1,), depend=lambda p: True)),
           await tc.run(StringTask("y = 1", clear_before=True)),
           await tc.run(MapTask(square, (2,))),
           await tc.run(MapTask(square, (3,))),
           await tc.run(StringTask("y = 2", clear_after=True))]
    gate.open()
    await within(tc.barrier(held + ids))
    assert [tids for _, tids in batches] == [ids[2:4]]


@pytest_twisted.ensureDeferred
async def test_failures_in_a_batch_are_per_task(make_tc, gates, batches):
    tc = make_tc(2, batch_time=60.0)
    await learn_durations(tc)
    gate, held = await hold_engines(tc, gates)
    reject_on_0 = ("from ipkernel.error import TaskRejectError\n"
                   "if id == 0:\n    raise TaskRejectError('not on 0')\nx = id")
    fails_once = "n = globals().get('n', 0) + 1\nif n == 1:\n    raise ValueError('first run')"

    ids = []
    for i in range(10):
        ids.append(await tc.run(MapTask(square, (i,))))
        ids.append(await tc.run(StringTask(reject_on_0, pull="x")))
        ids.append(await tc.run(MapTask(lambda: 1 / 0)))
    retried = await tc.run(StringTask(fails_once, retries=2, pull="n"))  # one failure per engine
    gate.open()
    await within(tc.barrier(held + ids + [retried]))
    assert any(len(tids) > 1 for _, tids in batches)
    for i in range(10):
        assert await within(tc.get_task_result(ids[3 * i])) == i * i
        assert (await within(tc.get_task_result(ids[3 * i + 1])))["x"] == 1
        await raises(ZeroDivisionError, tc.get_task_result(ids[3 * i + 2]))
    assert (await within(tc.get_task_result(retried)))["n"] >= 1


@pytest_twisted.ensureDeferred
async def test_batched_string_task_times_come_from_the_engine(make_tc, gates):
    tc = make_tc(1, batch_time=60.0)
    await learn_durations(tc)
    gate, held = await hold_engines(tc, gates)
    ids = [await tc.run(StringTask("import time\nt = time.time()", pull="t")) for _ in range(3)]
    gate.open()
    await within(tc.barrier(held + ids))
    for tid in ids:
        tr = await within(tc.get_task_result(tid))
        assert tr.taskid == tid and tr.engineid == 0
        assert tr.duration >= 0 and tr.submitted and tr.completed


@pytest_twisted.ensureDeferred
async def test_a_batch_on_a_lost_engine_completes_elsewhere_once(make_tc, make_engine, gates,
                                                                 batches):
    tc = make_tc(1, batch_time=60.0)
    await learn_durations(tc)
    inner, ids = await batch_stuck_at_a_gate(tc, gates, batches)
    deliveries = []
    for tid in ids:
        tc.get_task_result(tid, block=True).addCallback(deliveries.append)
    tc.controller.unregister_engine(0)
    tc.controller.register_engine(QueuedEngine(make_engine()))
    inner.open()
    await within(tc.barrier(ids))
    assert len(deliveries) == len(ids)
    assert [tr["x"] for tr in deliveries] == [0] * len(ids)


async def batch_stuck_at_a_gate(tc, gates, batches, n=3):
    """Hold engine 0, queue a batch whose first task waits at a second gate
    and get the batch sent; return (batch gate, batch ids)."""
    hold, _ = await hold_engines(tc, gates)
    inner = gates.new()
    await tc.run(MapTask(square, (0,)))  # takes the pipelined slot alone
    ids = [await tc.run(StringTask(f"{inner.code}\nx = id", pull="x"))]
    ids += [await tc.run(StringTask("x = id", pull="x")) for _ in range(n - 1)]
    hold.open()
    await inner.wait_arrivals(1)
    assert [tids for _, tids in batches if ids[0] in tids] == [ids]
    return inner, ids


@pytest_twisted.ensureDeferred
async def test_a_batch_lost_with_its_engine_fails_each_task_past_the_loss_bound(
        make_tc, gates, batches):
    tc = make_tc(1, batch_time=60.0, max_engine_losses=0)
    await learn_durations(tc)
    inner, ids = await batch_stuck_at_a_gate(tc, gates, batches)
    tc.controller.unregister_engine(0)
    inner.open()
    for tid in ids:
        await raises(EngineError, tc.get_task_result(tid, block=True))


@pytest_twisted.ensureDeferred
async def test_an_interrupt_in_a_batch_fails_that_task_and_runs_the_rest(make_tc, gates, batches):
    tc = make_tc(1, batch_time=60.0)
    await learn_durations(tc)
    gate, held = await hold_engines(tc, gates)
    spin = gates.new()
    ids = [await tc.run(MapTask(square, (1,))),
           await tc.run(StringTask(f"{spin.notify_code}\nwhile True: pass")),
           await tc.run(MapTask(square, (3,)))]
    gate.open()
    await spin.wait_arrivals(1)
    assert await within(tc.controller.engines[0].interrupt()) is True
    await within(tc.barrier(ids))
    assert await within(tc.get_task_result(ids[0])) == 1
    tr = await within(tc.get_task_result(ids[1]))
    with pytest.raises(KeyboardInterrupt):
        tr.raise_exception()
    assert await within(tc.get_task_result(ids[2])) == 9
    assert [tids for _, tids in batches if ids[1] in tids] == [ids[1:]]


def test_reject_error_is_importable_for_task_code():
    assert issubclass(TaskRejectError, Exception)
