"""The in-process task farm: ITaskController adapted from a ControllerService (tier 1)."""
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from ipkernel.engine import QueuedEngine
from ipkernel.error import EngineError, ResultEvicted, TaskAborted, TaskTimeout
from ipkernel.interfaces.task import ITaskController
from ipkernel.task import MapTask, StringTask, TaskResult

from awaiting import raises, within


async def result(tc, taskid):
    return await within(tc.get_task_result(taskid, block=True))


def double(x=10):
    return 2 * x


def divide_by_zero():
    return 1 / 0


# --- the 0.10 acceptance list -------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_adapter_is_one_per_controller_and_uses_existing_engines(make_controller):
    controller = make_controller(2)
    tc = ITaskController(controller)
    assert ITaskController(controller) is tc
    assert verifyObject(ITaskController, tc)
    assert sorted(tc._workers) == [0, 1]
    tid = await tc.run(StringTask("x = id", pull="x"))
    assert (await result(tc, tid))["x"] in (0, 1)


@pytest_twisted.ensureDeferred
async def test_task_ids_count_from_zero(make_tc):
    tc = make_tc(1)
    ids = [await tc.run(StringTask("a = 1")) for _ in range(4)]
    assert ids == [0, 1, 2, 3]
    await within(tc.barrier(ids))


@pytest_twisted.ensureDeferred
async def test_abort_errors(make_tc):
    tc = make_tc(1)
    await raises(IndexError, tc.abort(0))
    await raises(TypeError, tc.abort("asdfadsf"))
    tid = await tc.run(StringTask("a = 1"))
    await result(tc, tid)
    err = await raises(IndexError, tc.abort(tid))
    assert "completed" in str(err)


@pytest_twisted.ensureDeferred
async def test_abort_queued_and_running(make_tc, gates):
    tc = make_tc(1)
    gate = gates.new()
    running = await tc.run(StringTask(gate.code))
    await gate.wait_arrivals(1)
    queued = await tc.run(StringTask("b = 2", pull="b"))
    assert await within(tc.queue_status(verbose=True)) == {
        "pending": [running], "scheduled": [queued], "succeeded": [], "failed": []}
    await within(tc.abort(queued))
    await within(tc.abort(running))
    await raises(TaskAborted, tc.get_task_result(queued))
    await raises(TaskAborted, tc.get_task_result(running))
    err = await raises(IndexError, tc.abort(running))
    assert "aborted" in str(err)
    gate.open()
    # the engine is handed back once the aborted code ends; later tasks run
    tid = await tc.run(StringTask("c = 3", pull="c"))
    assert (await result(tc, tid))["c"] == 3
    assert await within(tc.queue_status()) == {
        "pending": 0, "scheduled": 0, "succeeded": 1, "failed": 2}


@pytest_twisted.ensureDeferred
async def test_clear_before_and_after(make_tc):
    tc = make_tc(1)
    await result(tc, await tc.run(StringTask("a = 5")))
    tr = await result(tc, await tc.run(StringTask("b = 1", pull="a", clear_before=True)))
    assert isinstance(tr.failure.value, NameError)
    tr = await result(tc, await tc.run(StringTask("c = 3", pull="c", clear_after=True)))
    assert tr["c"] == 3
    tr = await result(tc, await tc.run(StringTask("", pull="c")))
    assert isinstance(tr.failure.value, NameError)


@pytest_twisted.ensureDeferred
async def test_retries_continue_from_the_engine_state(make_tc):
    tc = make_tc(1)
    await result(tc, await tc.run(StringTask("i = 0")))
    code = "i += 1\nassert i == 16"
    tr = await result(tc, await tc.run(StringTask(code, pull="i", retries=10)))
    assert isinstance(tr.failure.value, AssertionError)
    tr = await result(tc, await tc.run(StringTask(code, pull="i", retries=10)))
    assert tr.failure is None and tr.ns.i == 16


@pytest_twisted.ensureDeferred
async def test_recovery_task_runs_under_the_same_id(make_tc):
    tc = make_tc(1)
    recovery = StringTask("i = 16", pull="i")
    tid = await tc.run(StringTask("1/0", pull="i", retries=2, recovery_task=recovery))
    tr = await result(tc, tid)
    assert tr.ns.i == 16 and tr.taskid == tid


@pytest_twisted.ensureDeferred
async def test_push_and_pull(make_tc):
    tc = make_tc(1)
    tr = await result(tc, await tc.run(StringTask("", push={"a": 1, "b": [2]}, pull=["a", "b"])))
    assert tr.ns.a == 1 and tr["b"] == [2] and tr.ns["b"] == [2]
    assert tr.keys == ["a", "b"]


@pytest_twisted.ensureDeferred
async def test_string_task_results_and_failures(make_tc):
    tc = make_tc(1)
    tid = await tc.run(StringTask("a = 5", pull="a"))
    tr = await result(tc, tid)
    assert isinstance(tr, TaskResult)
    assert tr.ns.a == 5 and tr["a"] == 5 and tr.failure is None
    assert tr.raise_exception() is None
    assert tr.engineid == 0 and tr.taskid == tid and tr.duration >= 0
    assert tr.submitted and tr.completed and repr(tr).startswith(f"TaskResult[ID:{tid}]")
    assert f"(engine {tr.engineid}, " in repr(tr)
    assert repr(tr.ns) == "NS{'a': 5}"
    tr = await result(tc, await tc.run(StringTask("7=5", pull="a")))
    with pytest.raises(SyntaxError):
        tr.ns
    with pytest.raises(SyntaxError):
        tr.raise_exception()
    tr = await result(tc, await tc.run(StringTask("", pull="undefined_name")))
    with pytest.raises(NameError):
        tr["undefined_name"]
    assert repr(tr).startswith(f"TaskResult[ID:{tr.taskid}]: failed: NameError: name "
                               f"'undefined_name' is not defined (engine 0, ")
    big = TaskResult({"x": "y" * 1000}, 3)
    assert repr(big).endswith("... (engine 3)") and len(repr(big)) < 260


@pytest_twisted.ensureDeferred
async def test_string_task_constructor_type_errors():
    with pytest.raises(TypeError):
        StringTask(1)
    with pytest.raises(TypeError):
        StringTask("a", pull=1)
    with pytest.raises(TypeError):
        StringTask("a", push=[1])
    with pytest.raises(TypeError):
        StringTask("a", retries=-1)


@pytest_twisted.ensureDeferred
async def test_map_task_args_kwargs_and_closures(make_tc):
    tc = make_tc(1)
    assert await result(tc, await tc.run(MapTask(double, (10,)))) == 20
    assert await result(tc, await tc.run(MapTask(double))) == 20
    assert await result(tc, await tc.run(MapTask(double, kwargs={"x": 20}))) == 40
    k = 7
    assert await result(tc, await tc.run(MapTask(lambda y: k * y + id, [2]))) == 14


@pytest_twisted.ensureDeferred
async def test_map_task_failure_reraises(make_tc):
    tc = make_tc(1)
    tid = await tc.run(MapTask(divide_by_zero))
    await raises(ZeroDivisionError, tc.get_task_result(tid, block=True))
    await raises(ZeroDivisionError, tc.get_task_result(tid))


def test_map_task_constructor_type_errors():
    with pytest.raises(TypeError):
        MapTask(10)
    with pytest.raises(TypeError):
        MapTask(double, args=10)
    with pytest.raises(TypeError):
        MapTask(double, kwargs=[1])


@pytest_twisted.ensureDeferred
async def test_tasks_leave_no_helper_names(make_tc):
    tc = make_tc(1)
    await result(tc, await tc.run(MapTask(double, (1,))))
    await result(tc, await tc.run(StringTask("z = 1", push={"w": 2}, pull="z")))
    keys = await within(tc.controller.engines[0].keys())
    assert not [k for k in keys if k.startswith("_ipython")]
    assert sorted(k for k in keys if k not in ("id", "mpi")) == ["w", "z"]


@pytest_twisted.ensureDeferred
async def test_clear_then_get_result_fails(make_tc):
    tc = make_tc(1)
    ids = [await tc.run(StringTask("a = 1")) for _ in range(3)]
    await within(tc.barrier(ids))
    assert await within(tc.clear(0)) == 1
    await raises(IndexError, tc.get_task_result(0))
    err = await raises(KeyError, tc.clear([0, 1]))
    assert "[0]" in str(err)
    await raises(IndexError, tc.get_task_result(1))
    assert await within(tc.clear()) == 1
    await raises(IndexError, tc.get_task_result(2))


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("depth", [2, 4])
async def test_remote_traceback_frames(make_tc, depth):
    tc = make_tc(1)
    chain = ["def f0():\n    raise IOError('deep')"]
    chain += [f"def f{i}():\n    f{i - 1}()" for i in range(1, depth)]
    code = "\n".join(chain) + f"\nf{depth - 1}()"
    tr = await result(tc, await tc.run(StringTask(code)))
    with pytest.raises(IOError):
        tr.raise_exception()
    text = tr.failure.value._ipkernel_traceback_text
    # the module-level frame plus one frame per function of the chain
    assert text.count('File "<task-input-') == depth + 1
    assert "    raise IOError('deep')" in text   # the source line, from the engine's linecache
    assert "ipkernel" not in text


# --- beyond 0.10 --------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_queue_status_counts_every_kind_of_task(make_tc):
    tc = make_tc(1)
    ids = [await tc.run(MapTask(double)), await tc.run(MapTask(divide_by_zero)),
           await tc.run(StringTask("a = 1")), await tc.run(StringTask("1/0"))]
    await within(tc.barrier(ids))
    assert await within(tc.queue_status(verbose=True)) == {
        "pending": [], "scheduled": [], "succeeded": [0, 2], "failed": [1, 3]}


@pytest_twisted.ensureDeferred
async def test_results_cap_evicts_with_a_clear_error(make_tc):
    tc = make_tc(1, max_results=2)
    ids = [await tc.run(MapTask(double, (i,))) for i in range(3)]
    await within(tc.barrier(ids))
    err = await raises(ResultEvicted, tc.get_task_result(0))
    assert "clear" in str(err)
    assert await within(tc.get_task_result(2)) == 4


@pytest_twisted.ensureDeferred
async def test_get_task_result_not_blocking_and_unknown(make_tc, gates):
    tc = make_tc(1)
    gate = gates.new()
    tid = await tc.run(StringTask(gate.code))
    assert await within(tc.get_task_result(tid)) is None
    await raises(IndexError, tc.get_task_result(99))
    await raises(TypeError, tc.get_task_result("0"))
    await raises(TypeError, tc.run("1 + 1"))
    gate.open()
    await result(tc, tid)


@pytest_twisted.ensureDeferred
async def test_task_reject_error_routes_to_another_engine(make_tc):
    tc = make_tc(3)
    code = ("from ipkernel.error import TaskRejectError\n"
            "if id != 2:\n    raise TaskRejectError('not here')\nx = id")
    tr = await result(tc, await tc.run(StringTask(code, pull="x")))
    assert tr.ns.x == 2 and tr.engineid == 2


@pytest_twisted.ensureDeferred
async def test_depend_is_evaluated_on_the_engine(make_tc):
    tc = make_tc(3)
    tc.controller.engines[1].properties["gpu"] = True
    calls_here = []

    def wants_gpu(properties):
        calls_here.append(1)  # runs on the engine: a copy of this list is appended to
        return properties.get("gpu", False)

    tid = await tc.run(MapTask(lambda: id, depend=wants_gpu))
    assert await result(tc, tid) == 1
    assert calls_here == []


@pytest_twisted.ensureDeferred
async def test_unsatisfiable_task_times_out_unless_an_engine_comes(make_tc, make_engine):
    clock = Clock()
    tc = make_tc(1, timeout=5, clock=clock)
    controller = tc.controller
    late = await tc.run(MapTask(lambda: "gpu", depend=lambda p: p.get("gpu")))
    never = await tc.run(MapTask(lambda: "tpu", depend=lambda p: p.get("tpu")))
    # the engine runs commands in order: after these two, both depend checks ran
    await within(controller.engines[0].execute("1"))
    await within(controller.engines[0].execute("1"))
    assert len(clock.getDelayedCalls()) == 2
    clock.advance(4)
    engine = make_engine()
    engine.properties["gpu"] = True
    new_id = controller.register_engine(QueuedEngine(engine))["id"]
    assert await result(tc, late) == "gpu"
    for _ in range(3):  # until the new engine has rejected the other task too
        await within(controller.engines[new_id].execute("1"))
        if clock.getDelayedCalls():
            break
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(5)
    err = await raises(TaskTimeout, tc.get_task_result(never))
    assert str(never) in str(err)
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_after_all(make_tc, gates):
    tc = make_tc(2)
    gate = gates.new()
    first = await tc.run(StringTask(gate.code + "\na = 1"))
    await gate.wait_arrivals(1)
    second = await tc.run(StringTask("b = 2"))
    await result(tc, second)
    dependent = await tc.run(StringTask("c = 3", pull="c", after=[first, second]))
    status = await within(tc.queue_status(verbose=True))
    assert dependent in status["scheduled"]
    gate.open()
    assert (await result(tc, dependent))["c"] == 3
    await raises(IndexError, tc.run(StringTask("d = 4", after=[99])))


@pytest_twisted.ensureDeferred
async def test_after_any(make_tc, gates):
    tc = make_tc(2)
    gate = gates.new()
    slow = await tc.run(StringTask(gate.code))
    await gate.wait_arrivals(1)
    fast = await tc.run(StringTask("b = 2"))
    dependent = await tc.run(StringTask("c = 3", pull="c", after=("any", [slow, fast])))
    assert (await result(tc, dependent))["c"] == 3
    assert await within(tc.get_task_result(slow)) is None  # still running
    gate.open()
    await result(tc, slow)


@pytest_twisted.ensureDeferred
async def test_engine_unregistered_mid_task_completes_elsewhere_once(make_tc, gates):
    tc = make_tc(2)
    controller = tc.controller
    lost_engine = controller.engines[0]
    gate = gates.new()
    tid = await tc.run(StringTask(f"if id == 0:\n    {gate.code}\nx = id", pull="x"))
    await gate.wait_arrivals(1)
    deliveries = []
    tc.get_task_result(tid, block=True).addCallback(deliveries.append)
    controller.unregister_engine(0)
    tr = await result(tc, tid)
    assert tr["x"] == 1 and tr.engineid == 1
    gate.open()
    await within(lost_engine.engine.execute("1"))  # the abandoned code has ended
    assert len(deliveries) == 1
    assert await within(tc.queue_status()) == {
        "pending": 0, "scheduled": 0, "succeeded": 1, "failed": 0}
    assert sorted(tc._workers) == [1]


@pytest_twisted.ensureDeferred
async def test_engine_losses_are_bounded(make_tc, make_engine, gates):
    tc = make_tc(1, max_engine_losses=1)
    controller = tc.controller
    gate = gates.new()
    tid = await tc.run(StringTask(gate.code))
    await gate.wait_arrivals(1)
    controller.unregister_engine(0)
    controller.register_engine(QueuedEngine(make_engine()))
    await gate.wait_arrivals(2)
    controller.unregister_engine(0)
    await raises(EngineError, tc.get_task_result(tid, block=True))
    gate.open()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("scheduler, order", [("fifo", [1, 2, 3]), ("lifo", [3, 2, 1])])
async def test_fifo_and_lifo_order(make_tc, gates, scheduler, order):
    tc = make_tc(1, scheduler=scheduler)
    gate = gates.new()
    first = await tc.run(StringTask("order = []\n" + gate.code))
    await gate.wait_arrivals(1)
    ids = [await tc.run(StringTask(f"order.append({i})")) for i in (1, 2, 3)]
    gate.open()
    await within(tc.barrier([first] + ids))
    tr = await result(tc, await tc.run(StringTask("", pull="order")))
    assert tr["order"] == order


@pytest_twisted.ensureDeferred
async def test_many_small_tasks_keep_every_engine_busy(make_tc, gates):
    tc = make_tc(4)
    gate = gates.new()
    held = [await tc.run(StringTask(f"{gate.code}\nx = id", pull="x")) for _ in range(8)]
    # An engine runs one task at a time, so four tasks at the gate together
    # are on four different engines.
    await gate.wait_arrivals(4)
    ids = [await tc.run(MapTask(lambda i: i * i, (i,))) for i in range(40)]
    gate.open()
    await within(tc.barrier(held + ids))
    first_four = {(await within(tc.get_task_result(i)))["x"] for i in held[:4]}
    assert first_four == {0, 1, 2, 3}
    assert [await within(tc.get_task_result(i)) for i in ids] == [i * i for i in range(40)]


@pytest_twisted.ensureDeferred
async def test_spin_and_a_task_object_runs_once(make_tc):
    tc = make_tc(1)
    assert await within(tc.spin()) is False
    task = StringTask("a = 1")
    await tc.run(task)
    await raises(ValueError, tc.run(task))


@pytest_twisted.ensureDeferred
async def test_tasks_keep_flowing_while_engines_come_and_go(make_tc, make_engine, gates):
    tc = make_tc(3)
    controller = tc.controller
    gate = gates.new()
    held = await tc.run(StringTask(f"if id == 0:\n    {gate.code}\nx = id", pull="x"))
    await gate.wait_arrivals(1)
    ids = [await tc.run(MapTask(lambda i: (i, id), (i,))) for i in range(30)]
    controller.unregister_engine(0)
    controller.register_engine(QueuedEngine(make_engine()), id=7)
    await within(tc.barrier([held] + ids))
    gate.open()
    assert [(await within(tc.get_task_result(i)))[0] for i in ids] == list(range(30))
    assert (await within(tc.get_task_result(held)))["x"] != 0
    status = await within(tc.queue_status())
    assert status == {"pending": 0, "scheduled": 0, "succeeded": 31, "failed": 0}


@pytest_twisted.ensureDeferred
async def test_a_returning_engine_id_is_not_held_to_old_rejections(make_tc, make_engine):
    clock = Clock()
    tc = make_tc(1, timeout=5, clock=clock)
    controller = tc.controller
    tid = await tc.run(MapTask(lambda: id, depend=lambda p: p.get("ok")))
    await within(controller.engines[0].execute("1"))
    assert len(clock.getDelayedCalls()) == 1
    controller.unregister_engine(0)
    engine = make_engine()
    engine.properties["ok"] = True
    controller.register_engine(QueuedEngine(engine), id=0)
    assert await result(tc, tid) == 0
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_abort_a_task_waiting_for_another(make_tc, gates):
    tc = make_tc(1)
    gate = gates.new()
    first = await tc.run(StringTask(gate.code))
    await gate.wait_arrivals(1)
    waiting = await tc.run(StringTask("a = 1", after=[first]))
    await within(tc.abort(waiting))
    await raises(TaskAborted, tc.get_task_result(waiting))
    await raises(IndexError, tc.barrier([first, 42]))
    gate.open()
    await within(tc.barrier([first, waiting]))
    assert (await within(tc.queue_status()))["failed"] == 1


@pytest_twisted.ensureDeferred
async def test_barrier_waits_for_every_live_task_once(make_tc, gates):
    tc = make_tc(1)
    gate = gates.new()
    done = await tc.run(MapTask(double))
    await result(tc, done)
    held = await tc.run(StringTask(gate.code))
    await gate.wait_arrivals(1)
    failing = await tc.run(MapTask(divide_by_zero))
    d = tc.barrier([done, held, held, failing])
    assert not d.called
    waiters = tc._live[held].waiters + tc._live[failing].waiters
    assert len(waiters) == 3 and len(set(map(id, waiters))) == 1  # one shared waiter
    gate.open()
    assert await within(d) is None
    await raises(ZeroDivisionError, tc.get_task_result(failing))
    assert await within(tc.barrier([done, held])) is None  # nothing left to wait for


@pytest_twisted.ensureDeferred
async def test_a_cancelled_barrier_leaves_its_tasks_alone(make_tc, gates):
    tc = make_tc(1)
    gate = gates.new()
    held = await tc.run(StringTask(gate.code))
    await gate.wait_arrivals(1)
    d = tc.barrier([held])
    d.cancel()
    d.addErrback(lambda f: f.trap(defer.CancelledError))
    gate.open()
    assert (await result(tc, held)).failure is None
    assert await within(tc.barrier(held)) is None


@pytest_twisted.ensureDeferred
async def test_multiengine_and_task_farm_share_a_controller(make_tc):
    from ipkernel.interfaces.multiengine import IMultiEngine
    tc = make_tc(2)
    me = IMultiEngine(tc.controller)
    ids = [await tc.run(MapTask(double, (i,))) for i in range(10)]
    await within(me.execute("shared = id * 10", targets="all"))
    await within(tc.barrier(ids))
    assert [await within(tc.get_task_result(i)) for i in ids] == [2 * i for i in range(10)]
    tr = await result(tc, await tc.run(StringTask("", pull="shared")))
    assert tr["shared"] == tr.engineid * 10


@pytest_twisted.ensureDeferred
async def test_failure_penalty_rests_an_engine_after_a_failed_task(make_tc):
    clock = Clock()
    tc = make_tc(1, failure_penalty=5, clock=clock)
    failed = await tc.run(MapTask(divide_by_zero))
    await raises(ZeroDivisionError, tc.get_task_result(failed, block=True))
    later = await tc.run(MapTask(double, (4,)))
    assert await within(tc.get_task_result(later)) is None  # the engine is resting
    assert tc._live[later].state == "queued"
    clock.advance(5)
    assert await result(tc, later) == 8
    ok = await tc.run(MapTask(double, (5,)))
    assert await result(tc, ok) == 10  # no penalty after a success
    assert not clock.getDelayedCalls()


@pytest_twisted.ensureDeferred
async def test_failure_penalty_timer_is_cancelled_by_stop(make_tc):
    clock = Clock()
    tc = make_tc(1, failure_penalty=5, clock=clock)
    await raises(ZeroDivisionError, tc.get_task_result(await tc.run(MapTask(divide_by_zero)),
                                                       block=True))
    assert len(clock.getDelayedCalls()) == 1
    tc.stop()
    assert all(not c.active() for c in clock.getDelayedCalls())


@pytest_twisted.ensureDeferred
async def test_a_large_clear_gives_memory_back(make_tc, monkeypatch):
    from ipkernel.task import controller as task_controller
    calls = []
    monkeypatch.setattr(task_controller, "release_memory", lambda: calls.append(1))
    monkeypatch.setattr(task_controller, "RELEASE_AFTER", 3)
    tc = make_tc(1)
    ids = await tc.run_many([MapTask(double, (i,)) for i in range(5)])
    await within(tc.barrier(ids))
    assert await tc.clear(ids[:2]) == 2 and calls == []
    assert await tc.clear() == 3 and calls == [1]


@pytest_twisted.ensureDeferred
async def test_finished_bulk_submission_leaves_no_grown_tables(make_tc):
    import sys
    tc = make_tc(2)
    ids = await tc.run_many([MapTask(double, (i,)) for i in range(300)])
    assert sys.getsizeof(tc._live) > sys.getsizeof({})
    await within(tc.barrier(ids))
    assert tc._live == {} and sys.getsizeof(tc._live) == sys.getsizeof({})


def test_release_memory_finds_malloc_trim_on_glibc():
    import platform
    from ipkernel import memtrim
    memtrim.release_memory()
    if platform.libc_ver()[0] == "glibc":
        assert memtrim._malloc_trim is not None
    else:  # elsewhere only a garbage collection happens, and no error
        assert memtrim._malloc_trim is None
