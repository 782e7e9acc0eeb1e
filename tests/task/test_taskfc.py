"""The task farm over Foolscap: FCTaskControllerFromTaskController and FCTaskClient (tier 2)."""
import pytest
import pytest_twisted
from twisted.internet import reactor

from ipkernel import asyncclient, fcutil
from ipkernel.client.fctask import FCTaskClient, ParallelFunction, TaskMapper
from ipkernel.error import ControllerError, TaskAborted
from ipkernel.interfaces.remote import RITaskController
from ipkernel.interfaces.task import ITaskController
from ipkernel.task import MapTask, StringTask, TaskResult
from ipkernel.task.fc import FCTaskControllerFromTaskController, WireTask

from awaiting import raises, within

pytestmark = pytest.mark.tier2

WAIT = 20


@pytest_twisted.async_yield_fixture
async def make_tc_cluster(make_fc_cluster):
    """``async make(n) -> (cluster, FCTaskClient)``; the task FURL is on the controller Tub."""
    made = []

    async def make(n=2, **kwargs):
        cluster = await make_fc_cluster(n, **kwargs)
        tc = ITaskController(cluster.controller)
        made.append(tc)
        cluster.tc_furl = fcutil.register(cluster.tub, RITaskController(tc))
        client = await asyncclient.get_task_client(cluster.tc_furl, tub=cluster.client_tub,
                                                   timeout=WAIT)
        return cluster, client

    yield make
    for tc in made:
        tc.stop()


def double(x):
    return 2 * x


def divide(x):
    return 1 / 0


@pytest_twisted.ensureDeferred
async def test_adapter_and_client_interfaces(make_tc_cluster):
    cluster, tc = await make_tc_cluster(1)
    assert isinstance(tc, FCTaskClient)
    assert isinstance(RITaskController(ITaskController(cluster.controller)),
                      FCTaskControllerFromTaskController)
    for name in ("run", "get_task_result", "abort", "barrier", "spin", "queue_status", "clear",
                 "map", "mapper", "parallel", "adapt_to_blocking_client"):
        assert callable(getattr(tc, name))


@pytest_twisted.ensureDeferred
async def test_multiengine_furl_is_refused(make_tc_cluster):
    cluster, _ = await make_tc_cluster(1)
    with pytest.raises(ControllerError, match="not a task controller"):
        await asyncclient.get_task_client(cluster.mec_furl, tub=cluster.client_tub, timeout=WAIT)


@pytest_twisted.ensureDeferred
async def test_task_ids_and_string_results(make_tc_cluster):
    _, tc = await make_tc_cluster(2)
    ids = [await within(tc.run(StringTask("a = 5", pull="a"))) for _ in range(4)]
    assert ids == [0, 1, 2, 3]
    tr = await within(tc.get_task_result(0, block=True))
    assert isinstance(tr, TaskResult)
    assert tr.ns.a == 5 and tr["a"] == 5 and tr.failure is None and tr.raise_exception() is None
    assert tr.taskid == 0 and tr.engineid in (0, 1) and tr.duration >= 0


@pytest_twisted.ensureDeferred
async def test_push_pull_and_string_failures(make_tc_cluster):
    _, tc = await make_tc_cluster(1)
    tid = await within(tc.run(StringTask("c = b + [a]", push={"a": 1, "b": [2]}, pull=["a", "b"])))
    tr = await within(tc.get_task_result(tid, block=True))
    assert tr.ns.a == 1 and tr["b"] == [2]
    tid = await within(tc.run(StringTask("7=5", pull="x")))
    tr = await within(tc.get_task_result(tid, block=True))
    assert tr.failure is not None
    with pytest.raises(SyntaxError):
        tr.ns
    tid = await within(tc.run(StringTask("pass", pull="undefined_name")))
    tr = await within(tc.get_task_result(tid, block=True))
    with pytest.raises(NameError):
        tr.raise_exception()


@pytest_twisted.ensureDeferred
async def test_retries_and_recovery_through_the_wire(make_tc_cluster):
    _, tc = await make_tc_cluster(1)
    await within(tc.run(StringTask("i = 0")))
    tid = await within(tc.run(StringTask("i += 1; assert i == 16", pull="i", retries=10)))
    tr = await within(tc.get_task_result(tid, block=True))
    with pytest.raises(AssertionError):
        tr.raise_exception()
    tid = await within(tc.run(StringTask("i += 1; assert i == 16", pull="i", retries=10)))
    assert (await within(tc.get_task_result(tid, block=True))).ns.i == 16
    recovery = StringTask("i = 16", pull="i")
    tid = await within(tc.run(StringTask("assert False", retries=2, recovery_task=recovery)))
    assert (await within(tc.get_task_result(tid, block=True))).ns.i == 16


@pytest_twisted.ensureDeferred
async def test_map_tasks(make_tc_cluster):
    _, tc = await make_tc_cluster(2)
    tid = await within(tc.run(MapTask(double, (10,))))
    assert await within(tc.get_task_result(tid, block=True)) == 20
    tid = await within(tc.run(MapTask(double, kwargs={"x": 10})))
    assert await within(tc.get_task_result(tid, block=True)) == 20
    tid = await within(tc.run(MapTask(divide, (1,))))
    await raises(ZeroDivisionError, tc.get_task_result(tid, block=True))
    status = await within(tc.queue_status())
    assert status == {"pending": 0, "scheduled": 0, "succeeded": 2, "failed": 1}
    verbose = await within(tc.queue_status(verbose=True))
    assert verbose["failed"] == [tid]


@pytest_twisted.ensureDeferred
async def test_depend_rejects_through_the_wire(make_tc_cluster):
    cluster, tc = await make_tc_cluster(2)
    await within(cluster.client.set_properties({"color": "red"}, targets=1))
    ids = [await within(tc.run(StringTask("x = 1", pull="x",
                                          depend=lambda p: p.get("color") == "red")))
           for _ in range(4)]
    for tid in ids:
        assert (await within(tc.get_task_result(tid, block=True))).engineid == 1


@pytest_twisted.ensureDeferred
async def test_abort_clear_barrier_spin(make_tc_cluster):
    cluster, tc = await make_tc_cluster(1)
    await raises(IndexError, tc.abort(0))
    await raises(TypeError, tc.abort("asdfadsf"))
    blocker = await within(tc.run(StringTask("import time; time.sleep(1.5)")))
    waiting = await within(tc.run(MapTask(double, (1,))))
    assert await within(tc.get_task_result(waiting)) is None
    await within(tc.abort(waiting))
    await raises(TaskAborted, tc.get_task_result(waiting, block=True))
    await within(tc.barrier([blocker, waiting]))
    await raises(IndexError, tc.abort(blocker))
    await within(tc.spin())
    assert await within(tc.clear()) == 2
    await raises(IndexError, tc.get_task_result(0))


@pytest_twisted.ensureDeferred
async def test_clear_some_ids_over_the_wire(make_tc_cluster):
    _, tc = await make_tc_cluster(1)
    ids = [await within(tc.run(MapTask(double, (i,)))) for i in range(3)]
    await within(tc.barrier(ids))
    assert await within(tc.clear([ids[0], ids[2]])) == 2
    await raises(IndexError, tc.get_task_result(ids[0]))
    assert await within(tc.get_task_result(ids[1])) == 2
    await raises(KeyError, tc.clear([ids[0]]))
    assert await within(tc.clear(ids[1])) == 1


@pytest_twisted.ensureDeferred
async def test_mapper_defaults_and_map(make_tc_cluster):
    _, tc = await make_tc_cluster(2)
    m = tc.mapper()
    assert isinstance(m, TaskMapper) and m.task_controller is tc
    assert (m.clear_before, m.clear_after, m.retries, m.recovery_task, m.depend, m.block) == \
        (False, False, 0, None, None, True)
    data = list(range(10))
    assert await within(m.map(double, data)) == [2 * x for x in data]
    assert await within(tc.map(double, data)) == [2 * x for x in data]
    ids = await within(tc.mapper(block=False).map(double, data))
    assert ids == list(range(20, 30))
    await raises(ZeroDivisionError, tc.map(divide, data))


@pytest_twisted.ensureDeferred
async def test_parallel(make_tc_cluster):
    _, tc = await make_tc_cluster(2)
    pf = tc.parallel()(double)
    assert isinstance(pf, ParallelFunction)
    assert await within(pf(range(6))) == [0, 2, 4, 6, 8, 10]
    ids = await within(tc.parallel(block=False)(double)(range(3)))
    assert len(ids) == 3
    await raises(ZeroDivisionError, tc.parallel()(divide)(range(3)))


@pytest_twisted.ensureDeferred
async def test_multiengine_and_task_interfaces_share_the_controller(make_tc_cluster):
    cluster, tc = await make_tc_cluster(2)
    await within(cluster.client.execute("shared = 41", targets="all"))
    results = await within(tc.map(lambda x: globals()["shared"] + x, [1, 1, 1, 1]))
    assert results == [42, 42, 42, 42]


def test_controller_never_unpickles_a_task():
    spec = {"kind": "map", "retries": 0, "clear_before": False, "clear_after": False,
            "after": None, "recovery": None, "body": {"func": object(), "args": 1, "kwargs": 2}}
    with pytest.raises(TypeError, match="Serialized"):
        WireTask(spec)


@pytest_twisted.ensureDeferred
async def test_adapt_to_blocking_client(make_tc_cluster):
    from twisted.internet import threads

    from ipkernel.client import ReactorThreadError, TaskClient

    cluster, tc = await make_tc_cluster(1)
    blocking = tc.adapt_to_blocking_client(timeout=WAIT)   # made in the reactor thread
    assert isinstance(blocking, TaskClient) and blocking.furl == cluster.tc_furl
    with pytest.raises(ReactorThreadError):
        blocking.run(MapTask(double, (1,)))
    assert await threads.deferToThread(blocking.map, double, [1, 2]) == [2, 4]
    await threads.deferToThread(blocking.close)
    assert await within(tc.map(double, [3])) == [6]   # the async client stays open


@pytest_twisted.ensureDeferred
async def test_blocking_task_client_from_a_worker_thread(make_tc_cluster):
    from twisted.internet import threads

    from ipkernel.client import TaskClient

    cluster, _ = await make_tc_cluster(2)

    def user():
        with TaskClient(cluster.tc_furl, tub=cluster.client_tub,
                        call_in_reactor=reactor.callFromThread, timeout=WAIT) as tc:
            tid = tc.run(StringTask("y = 6 * 7", pull="y"))
            out = {"string": tc.get_task_result(tid, block=True).ns.y}
            out["block"] = tc.run(MapTask(double, (4,)), block=True)
            out["map"] = tc.map(double, range(5))
            out["ids"] = tc.mapper(block=False).map(double, range(2))
            out["parallel"] = tc.parallel()(double)([1, 2])
            tc.barrier(out["ids"])
            out["status"] = tc.queue_status()
            try:
                tc.map(divide, [1])
            except ZeroDivisionError:
                out["raised"] = True
            out["cleared"] = tc.clear()
        return out

    out = await threads.deferToThread(user).addTimeout(WAIT * 2, reactor)
    assert out["string"] == 42 and out["block"] == 8
    assert out["map"] == [0, 2, 4, 6, 8] and out["parallel"] == [2, 4]
    assert len(out["ids"]) == 2 and out["raised"]
    assert out["status"]["succeeded"] == 11 and out["cleared"] == 12


@pytest_twisted.ensureDeferred
async def test_task_reject_error_raised_by_the_task_is_routed_to_another_engine(make_tc_cluster):
    cluster, tc = await make_tc_cluster(2)
    await within(cluster.client.execute("import os", targets="all"))
    await within(cluster.client.push({"my_id": 0}, targets=0))
    await within(cluster.client.push({"my_id": 1}, targets=1))
    code = ("from ipkernel.error import TaskRejectError\n"
            "if my_id == 0: raise TaskRejectError('not here')\n"
            "where = my_id")
    ids = [await within(tc.run(StringTask(code, pull="where"))) for _ in range(4)]
    for tid in ids:
        assert (await within(tc.get_task_result(tid, block=True))).ns.where == 1


@pytest_twisted.ensureDeferred
async def test_after_dependencies_over_the_wire(make_tc_cluster):
    _, tc = await make_tc_cluster(2)
    first = await within(tc.run(StringTask("import time; time.sleep(0.3); v = 1", pull="v")))
    second = await within(tc.run(MapTask(double, (2,), after=[first])))
    assert await within(tc.get_task_result(second, block=True)) == 4
    status = await within(tc.queue_status(verbose=True))
    assert first in status["succeeded"]
    await raises(IndexError, tc.run(MapTask(double, (1,), after=[99])))


@pytest_twisted.ensureDeferred
async def test_clear_before_and_after_over_the_wire(make_tc_cluster):
    cluster, tc = await make_tc_cluster(1)
    await within(cluster.client.execute("before = 1", targets=0))
    tid = await within(tc.run(StringTask("mine = 2", pull="before", clear_before=True,
                                         clear_after=True)))
    tr = await within(tc.get_task_result(tid, block=True))
    with pytest.raises(NameError):
        tr.raise_exception()
    await within(tc.barrier(tid))
    keys = await within(cluster.client.keys(targets=0))
    assert "mine" not in keys[0]


@pytest_twisted.ensureDeferred
async def test_blocking_task_client_reconnects_after_a_lost_connection(make_tc_cluster):
    from twisted.internet import defer, threads

    from ipkernel.client import TaskClient

    cluster, _ = await make_tc_cluster(1)
    tc = await threads.deferToThread(
        TaskClient, cluster.tc_furl, tub=cluster.client_tub,
        call_in_reactor=reactor.callFromThread, timeout=WAIT).addTimeout(WAIT, reactor)
    try:
        first = await threads.deferToThread(tc.run, MapTask(double, (1,)), True)
        assert first == 2
        old = tc._holder[0]
        lost = defer.Deferred()
        old.remote_reference.notifyOnDisconnect(lambda: lost.called or lost.callback(None))
        old.remote_reference.tracker.broker.transport.loseConnection()
        await within(lost)

        again = await threads.deferToThread(tc.run, MapTask(double, (5,)), True)
        assert again == 10
        assert tc._holder[0] is not old and tc._holder[0].remote_reference.isConnected()
    finally:
        await threads.deferToThread(tc.close)


# --- bulk submission and results (issue 5: throughput) ------------------------------

@pytest_twisted.ensureDeferred
async def test_run_many_mixed_tasks_and_get_task_results(make_tc_cluster):
    _, tc = await make_tc_cluster(2)
    tasks = [MapTask(double, (i,)) for i in range(5)]
    tasks += [StringTask("y = x * 3", push={"x": 7}, pull="y"), MapTask(divide, (1,)),
              MapTask(double, kwargs={"x": 50})]
    ids = await within(tc.run_many(tasks))
    assert ids == list(range(ids[0], ids[0] + len(tasks)))
    pairs = await within(tc.get_task_results(ids, block=True))
    assert pairs[:5] == [(True, 2 * i) for i in range(5)]
    assert pairs[5][0] is True and pairs[5][1]["y"] == 21
    assert pairs[6][0] is False and isinstance(pairs[6][1], ZeroDivisionError)
    assert pairs[7] == (True, 100)


@pytest_twisted.ensureDeferred
async def test_run_many_is_all_or_nothing(make_tc_cluster):
    _, tc = await make_tc_cluster(1)
    before = await within(tc.queue_status())
    err = await raises(IndexError, tc.run_many([MapTask(double, (1,)),
                                                MapTask(double, (2,), after=[10 ** 6])]))
    assert "task 1 of the list" in str(err)
    err = await raises(TypeError, tc.run_many([MapTask(double, (1,)), "not a task"]))
    assert "task 1 of the list" in str(err)
    assert await within(tc.queue_status()) == before


@pytest_twisted.ensureDeferred
async def test_run_many_after_may_name_earlier_tasks_of_the_list(make_tc_cluster):
    _, tc = await make_tc_cluster(1)
    first = await within(tc.run(StringTask("order = ['first']")))
    # the second task of the list waits for the first one of it (id first + 1)
    ids = await within(tc.run_many([StringTask("order.append('second')", after=[first]),
                                    StringTask("", pull="order", after=[first + 1])]))
    tr = await within(tc.get_task_result(ids[1], block=True))
    assert tr["order"] == ["first", "second"]


@pytest_twisted.ensureDeferred
async def test_get_task_results_without_block_and_errors(make_tc_cluster, gates):
    _, tc = await make_tc_cluster(1)
    gate = gates.new()
    ids = await within(tc.run_many([StringTask(gate.code), MapTask(double, (4,))]))
    pairs = await within(tc.get_task_results(ids))
    assert pairs == [(True, None), (True, None)]
    gate.open()
    await within(tc.barrier(ids))
    assert (await within(tc.get_task_results(ids)))[1] == (True, 8)
    pairs = await within(tc.get_task_results([ids[1], 10 ** 6]))
    assert pairs[0] == (True, 8)
    assert pairs[1][0] is False and isinstance(pairs[1][1], IndexError)
    await raises(TypeError, tc.get_task_results(["zero"]))


@pytest_twisted.ensureDeferred
async def test_map_of_many_items_in_chunks(make_tc_cluster, monkeypatch):
    from ipkernel.client import fctask
    monkeypatch.setattr(fctask, "CHUNK", 7)
    _, tc = await make_tc_cluster(2)
    seen = []
    result = await within(tc.mapper().map(double, range(50), progress=seen.append))
    assert result == [2 * i for i in range(50)]
    assert sum(seen) == 50 and len(seen) == 8
    ids = await within(tc.mapper(block=False).map(double, range(10)))
    assert len(ids) == 10
    assert [v for _, v in await within(tc.get_task_results(ids, block=True))] == [
        2 * i for i in range(10)]


@pytest_twisted.ensureDeferred
async def test_map_raises_the_first_failure_in_order(make_tc_cluster):
    _, tc = await make_tc_cluster(2)

    def picky(x):
        if x in (3, 7):
            raise ValueError(f"no {x}")
        return x
    with pytest.raises(ValueError, match="no 3"):
        await within(tc.map(picky, range(10)))


def test_bad_bulk_submissions_are_refused_by_the_controller():
    from ipkernel import framing
    from ipkernel.client.fctask import specs_to_wire, task_spec
    from ipkernel.task.fc import tasks_from_wire
    templates, refs, args = specs_to_wire([task_spec(MapTask(double, (1,)))] * 3)
    assert len(templates) == 1 and len(tasks_from_wire(templates, refs, args)) == 3
    with pytest.raises(IndexError, match="template"):
        tasks_from_wire(templates, framing.pack_ints([0, 0, 5]), args)
    with pytest.raises(ValueError, match="3 tasks' args but 2"):
        tasks_from_wire(templates, framing.pack_ints([0, 0]), args)
    with pytest.raises(framing.FramingError):
        tasks_from_wire(templates, refs, b"garbage")
    bad = [dict(templates[0], kind="shell")]
    with pytest.raises(ValueError, match="task template 0"):
        tasks_from_wire(bad, refs, args)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("depth", [2, 4])
async def test_remote_traceback_frames_over_the_wire(make_tc_cluster, depth):
    from ipkernel.error import TRACEBACK_ATTR
    _, tc = await make_tc_cluster(1)
    chain = ["def f0():\n    raise IOError('deep')"]
    chain += [f"def f{i}():\n    f{i - 1}()" for i in range(1, depth)]
    code = "\n".join(chain) + f"\nf{depth - 1}()"
    tr = await within(tc.get_task_result(await within(tc.run(StringTask(code))), block=True))
    with pytest.raises(IOError):
        tr.raise_exception()
    text = getattr(tr.failure.value, TRACEBACK_ATTR)
    # the module-level frame plus one frame per function of the chain, nothing of ipkernel
    assert text.count('File "<task-input-') == depth + 1
    assert "    raise IOError('deep')" in text   # the source line, from the engine's linecache
    assert "ipkernel" not in text

    tid = await within(tc.run(MapTask(LEVELS[depth - 1])))
    exc = await raises(KeyError, tc.get_task_result(tid, block=True))
    text = getattr(exc, TRACEBACK_ATTR)
    assert text.count(", in level") == depth
    assert "ipkernel" not in text


def level0():
    raise KeyError("bottom")


def level1():
    level0()


def level2():
    level1()


def level3():
    level2()


LEVELS = [level0, level1, level2, level3]


def ones(n):
    import numpy
    return numpy.ones(n)


@pytest_twisted.ensureDeferred
async def test_large_results_sent_on_the_data_channel_reach_the_task_client(make_tc_cluster):
    numpy = pytest.importorskip("numpy")
    from ipkernel.datachannel import refs

    cluster, tc = await make_tc_cluster(2, data_channel=True)
    n = refs.THRESHOLD // 8 * 3  # a result the engines send on the data channel
    ids = [await within(tc.run(MapTask(ones, (n,)))) for _ in range(3)]
    ids.append(await within(tc.run(StringTask(f"import numpy; b = numpy.ones({n})",
                                              pull="b"))))
    results = [await within(tc.get_task_result(i, block=True), WAIT) for i in ids]
    for value in results[:3]:
        assert numpy.array_equal(value, numpy.ones(n))
    assert numpy.array_equal(results[3].ns.b, numpy.ones(n))
    # fetched again: the controller keeps the whole result, not a reference
    again = await within(tc.get_task_result(ids[0], block=True))
    assert numpy.array_equal(again, numpy.ones(n))
    assert cluster.data_server.kept_bytes == 0


@pytest_twisted.ensureDeferred
async def test_run_and_map_written_wrongly_fail_saying_how_to_write_them(make_tc_cluster):
    _, tc = await make_tc_cluster(1)
    err = await raises(TypeError, tc.run("a = 1"))
    assert "run takes a task" in str(err) and "run(StringTask('a = 1'))" in str(err)
    err = await raises(TypeError, tc.run(abs))
    assert "run(MapTask(func, args))" in str(err)
    err = await raises(TypeError, tc.map(abs, 5))
    assert "map: sequence 1 (int) cannot be iterated" in str(err)
    assert await within(tc.map(abs, iter([-3]))) == [3]
