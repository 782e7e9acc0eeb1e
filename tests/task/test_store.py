"""Task stores: opaque encoding, the SQLite file, a TaskController restarted on it (tier 1)."""
import pickle

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.python.failure import Failure

from ipkernel import serialize, wire
from ipkernel.error import ResultEvicted
from ipkernel.task import TaskController
from ipkernel.task.fc import WireResult, WireTask
from ipkernel.task.store import (MemoryTaskStore, SQLiteTaskStore, decode, encode,
                                 open_store)

WAIT = 10
# Frames that are not even valid pickles: storing them proves nothing is opened.
JUNK = serialize.Serialized([b"\x00not a pickle\xff", b"second frame"], "pickle", {"n": 1})


@pytest.fixture
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the task store unpickled something")
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)


def spec(after=None):
    return {"kind": "map", "retries": 2, "clear_before": False, "clear_after": True,
            "after": after, "recovery": None,
            "body": {"func": JUNK, "args": JUNK, "kwargs": JUNK}}


def same_serialized(a, b):
    return (a.frames == b.frames and a.type_descriptor == b.type_descriptor
            and a.metadata == b.metadata)


def test_encode_round_trips_opaque_data(no_unpickling):
    record = wire.ErrorRecord("ZeroDivisionError", "boom", "builtins", "tb",
                              {"engine_id": 3}, exception=JUNK,
                              errors=[wire.ErrorRecord("KeyError", "k")])
    value = {"s": JUNK, "e": record, "t": (1, "two", None), "b": b"\x00\x01", 7: [1.5, True]}
    back = decode(encode(value))
    assert isinstance(encode(value), bytes)
    assert same_serialized(back["s"], JUNK)
    assert back["e"].state()["evalue"] == "boom"
    assert same_serialized(back["e"].exception, JUNK)
    assert back["e"].errors[0].ename == "KeyError"
    assert back["t"] == (1, "two", None) and back["b"] == b"\x00\x01" and back[7] == [1.5, True]
    with pytest.raises(TypeError):
        encode(object())


def test_sqlite_store_remembers_across_reopen(tmp_path, no_unpickling):
    path = tmp_path / "db" / "tasks.sqlite"
    store = SQLiteTaskStore(path)
    store.add(0, spec())
    store.add(1, spec())
    store.add(2, None)  # an in-process task: only its id is remembered
    store.set_state(1, "running")
    store.finish(0, {"k": "map", "value": JUNK})
    store.close()

    store = SQLiteTaskStore(path)
    state = store.load()
    assert state.next_id == 3
    assert [(i, s) for i, s, _ in state.unfinished] == [(1, "running")]
    assert same_serialized(state.unfinished[0][2]["body"]["func"], JUNK)
    assert [i for i, _ in state.finished] == [0]
    assert same_serialized(state.finished[0][1]["value"], JUNK)
    store.delete([0])
    store.close()

    store = SQLiteTaskStore(path)
    state = store.load()
    assert state.next_id == 3 and state.finished == []
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_bulk_tasks_share_their_template_but_store_their_own_args(no_unpickling):
    from ipkernel import framing
    from ipkernel.task import persist
    from ipkernel.task.fc import tasks_from_wire
    template = dict(spec(), body={"func": JUNK, "kwargs": JUNK})
    args = [serialize.Serialized([b"args %d" % i]) for i in range(2)] + [JUNK]
    tasks = tasks_from_wire([template], framing.pack_ints([0, 0, 0]), framing.pack(args))
    assert tasks[0]._body is tasks[2]._body is template["body"]
    assert "args" not in template["body"]
    # small plain args are kept as bytes alone; others as they came
    assert [type(t._args) for t in tasks] == [bytes, bytes, serialize.Serialized]
    for task, arg in zip(tasks, args):
        assert same_serialized(task.call()[1], arg) and task.call()[0] is JUNK
        plain = decode(encode(persist.task_to_plain(task)))
        assert same_serialized(plain["body"]["args"], arg)
        again = persist.task_from_plain(plain)
        assert same_serialized(again.call()[1], arg)


def test_open_store(tmp_path):
    assert type(open_store("memory")) is MemoryTaskStore
    store = open_store("sqlite", tmp_path)
    assert store.path == str(tmp_path / "db" / "tasks.sqlite")
    store.close()
    with pytest.raises(ValueError):
        open_store("mongo", tmp_path)


@pytest_twisted.ensureDeferred
async def test_controller_restart_on_sqlite(make_controller, tmp_path, no_unpickling):
    path = tmp_path / "tasks.sqlite"
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path))  # no engines: all wait
    ids = [await tc.run(WireTask(spec())) for _ in range(4)]
    assert ids == [0, 1, 2, 3]
    await tc.abort(2)
    # task 3 "finished" with an opaque string result, 1 was running at the stop
    tc.store.finish(3, {"k": "string", "payload": JUNK, "failure": None, "engineid": 0,
                        "taskid": 3, "submitted": "s", "completed": "c", "duration": 1.0})
    tc.store.set_state(1, "running")
    tc.stop()

    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path))
    try:
        assert await tc.run(WireTask(spec())) == 4  # ids continue
        assert await tc.get_task_result(0) is None  # queued again
        assert tc._live[1].losses == 1 and tc._live[0].losses == 0
        assert tc._live[1].task.retries == 2
        status = await tc.queue_status()
        assert status == {"pending": 0, "scheduled": 3, "succeeded": 1, "failed": 1}
        res = await tc.get_task_result(3)
        assert isinstance(res, WireResult) and same_serialized(res.payload, JUNK)
        with pytest.raises(wire.WireError) as info:
            await tc.get_task_result(2).addTimeout(WAIT, reactor)
        assert info.value.record.ename == "TaskAborted"
        assert await tc.clear([3]) == 1
    finally:
        tc.stop()

    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path))
    try:
        assert sorted(tc._results) == [2]
        assert sorted(tc._live) == [0, 1, 4]
        assert await tc.clear() == 1
        assert await tc.run(WireTask(spec())) == 5
    finally:
        tc.stop()
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path))
    assert len(tc._results) == 0 and tc._next_id == 6
    tc.stop()


@pytest_twisted.ensureDeferred
async def test_engine_loss_is_remembered_but_a_retry_is_not(make_controller, tmp_path):
    path = tmp_path / "tasks.sqlite"
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path))
    lost, retried = await tc.run(WireTask(spec())), await tc.run(WireTask(spec()))
    for taskid in (lost, retried):  # as _start would have done
        tc.scheduler.remove_task(tc._live[taskid].task)
        tc._live[taskid].state = "running"
        tc.store.set_state(taskid, "running")
    tc._queue(lost, lost=True)
    tc._queue(retried)
    tc.stop()
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path))
    try:
        assert tc._live[lost].losses == 1 and tc._live[retried].losses == 0
        assert (await tc.queue_status()) == {"pending": 0, "scheduled": 2, "succeeded": 0,
                                             "failed": 0}
    finally:
        tc.stop()


def failing_spec(retries=0, recovery=None):
    """A wire task whose function fails on the engine (an int is not callable)."""
    return {"kind": "map", "retries": retries, "clear_before": False, "clear_after": False,
            "after": None, "recovery": recovery,
            "body": {"func": serialize.serialize(7), "args": serialize.serialize(()),
                     "kwargs": serialize.serialize({})}}


@pytest_twisted.ensureDeferred
async def test_an_evicted_result_stays_evicted_after_a_restart(make_controller, tmp_path):
    path = tmp_path / "tasks.sqlite"
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path), max_results=2)
    ids = await tc.run_many([WireTask(spec()) for _ in range(3)])
    for taskid in ids:  # finished with opaque values, as engines over the wire give
        tc.scheduler.remove_task(tc._live[taskid].task)
        tc._finish(taskid, True, JUNK)
    tc.stop()
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path), max_results=2)
    try:
        with pytest.raises(ResultEvicted):
            await tc.get_task_result(ids[0]).addTimeout(WAIT, reactor)
        assert sorted(tc._results) == ids[1:]
        await tc.clear()
    finally:
        tc.stop()
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path))
    try:
        with pytest.raises(IndexError) as info:
            await tc.get_task_result(ids[0]).addTimeout(WAIT, reactor)
        assert not isinstance(info.value, ResultEvicted)  # cleared now, not evicted
    finally:
        tc.stop()


class _NoWorker:
    workerid = None


@pytest_twisted.ensureDeferred
async def test_retries_used_and_the_switch_to_recovery_survive_a_restart(
        make_controller, tmp_path):
    path = tmp_path / "tasks.sqlite"
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path))  # no engines
    retried = await tc.run(WireTask(failing_spec(retries=3)))
    recovering = await tc.run(WireTask(failing_spec(retries=0, recovery=failing_spec(5))))
    for taskid in (retried, recovering):  # fail each once, as a finished run would
        rec = tc._live[taskid]
        tc.scheduler.remove_task(rec.task)
        rec.state = "running"
        tc._task_done(rec.task, False, Failure(ValueError("boom")), lost=False,
                      worker=_NoWorker())
    tc.stop()
    tc = TaskController(make_controller(0), store=SQLiteTaskStore(path))
    try:
        assert tc._live[retried].task.retries == 2
        assert tc._live[recovering].task.retries == 5  # it is the recovery task now
        assert tc._live[recovering].task.recovery_task is None
    finally:
        tc.stop()
