"""The two-phase multi-engine view (ISynchronousMultiEngine and
IFullSynchronousMultiEngine).

Tests taking ``sme`` / ``make_sme`` run twice: on the in-process view
(``local``, tier 1) and through real Foolscap Tubs on loopback, as a client
of a controller whose engines each have their own Tub (``foolscap``, tier 2).
Tests that look at controller internals stay local.
"""
import string

import numpy
import pytest
import pytest_twisted
from twisted.internet import defer
from zope.interface.verify import verifyObject

from ipkernel.error import (Aborted, AbortedPendingDeferredError, CompositeError,
                            InvalidDeferredID, ResultNotCompleted)
from ipkernel.interfaces.multiengine import (IFullMultiEngine, IFullSynchronousMultiEngine,
                                             IMultiEngine, ISynchronousEngineMultiplexer,
                                             ISynchronousMultiEngine)
from ipkernel.serialize import Serialized, serialize, unserialize

from awaiting import within


def error_types(err):
    return [type(e) for e in err.exceptions]


def sync_view(controller):
    return ISynchronousMultiEngine(IMultiEngine(controller))


def full_sync_view(controller):
    return IFullSynchronousMultiEngine(IFullMultiEngine(controller))


def assert_deferred_id(value):
    assert isinstance(value, str)
    assert len(value) == 40
    assert set(value) <= set(string.hexdigits)


async def submit(d):
    """Await the Deferred of a ``block=False`` call; return its deferred id."""
    deferred_id = await within(d)
    assert_deferred_id(deferred_id)
    return deferred_id


async def fetch(sme, deferred_id, block=True):
    return await within(sme.get_pending_deferred(deferred_id, block))


async def both_ways(sme, name, *args, **kwargs):
    """Call ``name`` blocking, then non-blocking (fetched through its id);
    return both outcomes."""
    blocking = await within(getattr(sme, name)(*args, block=True, **kwargs))
    deferred_id = await submit(getattr(sme, name)(*args, block=False, **kwargs))
    return blocking, await fetch(sme, deferred_id)


def triple(x):
    return 3 * x


def engine_tag():
    return ("tag", id)


# --- interface ----------------------------------------------------------------------------

def test_provides_synchronous_interfaces(make_controller):
    controller = make_controller(1)
    sme = sync_view(controller)
    assert verifyObject(ISynchronousEngineMultiplexer, sme)
    assert verifyObject(ISynchronousMultiEngine, sme)
    full = full_sync_view(controller)
    assert verifyObject(IFullSynchronousMultiEngine, full)


# --- execute -------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_execute_blocking_and_not(sme):
    one = await within(sme.execute("a = 1", targets=0, block=True))
    assert len(one) == 1 and one[0]["id"] == 0
    four = await within(sme.execute("a = 2"))
    assert len(four) == 4 and [r["id"] for r in four] == [0, 1, 2, 3]
    deferred_id = await submit(sme.execute("a = 3", block=False))
    results = await fetch(sme, deferred_id)
    assert len(results) == 4
    assert [r["number"] for r in results] == [3, 2, 2, 2]
    assert [r["input"]["raw"] for r in results] == ["a = 3"] * 4


@pytest_twisted.ensureDeferred
async def test_deferred_ids_are_distinct(sme):
    ids = [await submit(sme.pull("id", block=False)) for _ in range(5)]
    assert len(set(ids)) == 5
    for deferred_id in ids:
        assert await fetch(sme, deferred_id) == [0, 1, 2, 3]


# --- push / pull and functions ---------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_push_pull_nested_data(sme):
    nested = {"list": [1, (2, 3), None], "dict": {"x": None, "y": [1.5, "s"]}, "bytes": b"\x00\x01"}
    assert await within(sme.push({"nested": nested})) == [None] * 4
    assert await within(sme.pull("nested")) == [nested] * 4

    other = [{"k": i} for i in range(3)]
    pushed_id = await submit(sme.push({"other": other, "n": None}, targets=[1, 2], block=False))
    assert await fetch(sme, pushed_id) == [None, None]
    blocking, fetched = await both_ways(sme, "pull", ("other", "n", "nested"), targets=[2, 1])
    assert blocking == fetched == [[other, None, nested]] * 2


@pytest_twisted.ensureDeferred
async def test_push_function_pull_function(sme):
    assert await within(sme.push_function({"testf": triple})) == [None] * 4
    push_id = await submit(sme.push_function({"g": engine_tag}, block=False))
    assert await fetch(sme, push_id) == [None] * 4
    await within(sme.execute("result = (testf(id), g())"))
    assert await within(sme.pull("result")) == [(3 * i, ("tag", i)) for i in range(4)]

    blocking, fetched = await both_ways(sme, "pull_function", ("testf", "g"), targets=1)
    for pulled in (blocking, fetched):
        assert len(pulled) == 1 and len(pulled[0]) == 2
        testf, g = pulled[0]
        assert testf(7) == 21 and callable(g)
    blocking, fetched = await both_ways(sme, "pull_function", "testf")
    assert [f(1) for f in blocking] == [f(1) for f in fetched] == [3] * 4


@pytest_twisted.ensureDeferred
async def test_apply_blocking_and_not(sme):
    blocking, fetched = await both_ways(sme, "apply", lambda k: k * id, (5,), targets=[3, 0])  # noqa: F821
    assert blocking == fetched == [15, 0]


# --- get_result --------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_get_result_latest_and_numbered(sme):
    first = await within(sme.execute("a = id"))
    second = await within(sme.execute("a * 2"))
    assert await within(sme.get_result()) == second
    assert await within(sme.get_result(1)) == first
    deferred_id = await submit(sme.get_result(2, block=False))
    assert await fetch(sme, deferred_id) == second
    latest_id = await submit(sme.get_result(block=False))
    assert await fetch(sme, latest_id) == second


@pytest_twisted.ensureDeferred
async def test_get_result_honours_targets(sme):
    await within(sme.execute("x = id"))
    await within(sme.execute("y = 1", targets=1))
    one = await within(sme.get_result(targets=1))
    assert len(one) == 1
    assert (one[0]["id"], one[0]["number"], one[0]["input"]["raw"]) == (1, 2, "y = 1")
    picked = await within(sme.get_result(1, targets=[3, 0]))
    assert [r["id"] for r in picked] == [3, 0]
    deferred_id = await submit(sme.get_result(targets=2, block=False))
    fetched = await fetch(sme, deferred_id)
    assert len(fetched) == 1 and fetched[0]["id"] == 2 and fetched[0]["number"] == 1


# --- reset / keys / serialized -------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_reset_and_keys(sme):
    await within(sme.push({"a": 1, "b": 2}))
    blocking, fetched = await both_ways(sme, "keys")
    assert len(blocking) == len(fetched) == 4
    for names in blocking + fetched:
        assert {"a", "b", "id"} <= set(names)
    assert await within(sme.reset(targets=[0, 1])) == [None, None]
    reset_id = await submit(sme.reset(targets=[2, 3], block=False))
    assert await fetch(sme, reset_id) == [None, None]
    keys_id = await submit(sme.keys(block=False))
    for names in await fetch(sme, keys_id):
        assert "a" not in names and "b" not in names and "id" in names


@pytest_twisted.ensureDeferred
async def test_serialized_blocking_and_not(sme):
    array = numpy.linspace(0.0, 1.0, 5)
    assert await within(sme.push_serialized({"a": serialize(12)})) == [None] * 4
    push_id = await submit(sme.push_serialized({"arr": serialize(array)}, block=False))
    assert await fetch(sme, push_id) == [None] * 4
    blocking, fetched = await both_ways(sme, "pull", ("a", "arr"), targets=0)
    for pulled in (blocking, fetched):
        assert pulled[0][0] == 12 and numpy.array_equal(pulled[0][1], array)
    blocking, fetched = await both_ways(sme, "pull_serialized", "a")
    for pulled in (blocking, fetched):
        assert len(pulled) == 4
        assert all(isinstance(s, Serialized) for s in pulled)
        assert [unserialize(s) for s in pulled] == [12] * 4

    await within(sme.reset())
    with pytest.raises(CompositeError) as info:
        await within(sme.pull_serialized("a"))
    assert error_types(info.value) == [NameError] * 4
    failed_id = await submit(sme.pull_serialized("a", targets=1, block=False))
    with pytest.raises(CompositeError) as info:
        await fetch(sme, failed_id)
    assert error_types(info.value) == [NameError]


# --- queues, ids, properties ----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_clear_queue_and_queue_status(sme):
    blocking, fetched = await both_ways(sme, "clear_queue")
    assert blocking == fetched == [None] * 4
    blocking, fetched = await both_ways(sme, "queue_status", targets=0)
    for status in (blocking, fetched):
        assert isinstance(status[0], tuple)
        assert status[0] == (0, {"queue": [], "pending": "None"})
    everything = await within(sme.queue_status())
    assert [entry[0] for entry in everything] == [0, 1, 2, 3]


@pytest_twisted.ensureDeferred
async def test_get_ids_is_never_two_phase(sme):
    assert await within(sme.get_ids()) == [0, 1, 2, 3]


@pytest_twisted.ensureDeferred
async def test_properties_blocking_and_not(sme):
    assert await within(sme.set_properties({"a": 1, "b": "two"})) == [None] * 4
    set_id = await submit(sme.set_properties({"c": [3]}, targets=[1], block=False))
    assert await fetch(sme, set_id) == [None]
    blocking, fetched = await both_ways(sme, "get_properties", targets=[0, 1])
    assert blocking == fetched == [{"a": 1, "b": "two"}, {"a": 1, "b": "two", "c": [3]}]
    blocking, fetched = await both_ways(sme, "has_properties", ("a", "c"))
    assert blocking == fetched == [[True, False], [True, True], [True, False], [True, False]]
    del_id = await submit(sme.del_properties(("a",), block=False))
    assert await fetch(sme, del_id) == [None] * 4
    assert await within(sme.get_properties(("b",))) == [{"b": "two"}] * 4
    clear_id = await submit(sme.clear_properties(block=False))
    assert await fetch(sme, clear_id) == [None] * 4
    assert await within(sme.get_properties()) == [{}] * 4


# --- coordinator and extras, non-blocking ------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_scatter_gather_non_blocking(sme):
    scatter_id = await submit(sme.scatter("a", list(range(16)), block=False))
    assert await fetch(sme, scatter_id) == [None] * 4
    gather_id = await submit(sme.gather("a", block=False))
    assert await fetch(sme, gather_id) == list(range(16))
    assert await within(sme.gather("a", block=True)) == list(range(16))

    numpy_id = await submit(sme.scatter("arr", numpy.arange(16), dist="r", block=False))
    await fetch(sme, numpy_id)
    gathered_id = await submit(sme.gather("arr", dist="r", block=False))
    gathered = await fetch(sme, gathered_id)
    assert isinstance(gathered, numpy.ndarray)
    assert numpy.array_equal(gathered, numpy.arange(16))


@pytest_twisted.ensureDeferred
async def test_map_non_blocking(sme):
    map_id = await submit(sme.map(lambda x: x ** 2, range(16), block=False))
    assert await fetch(sme, map_id) == [x ** 2 for x in range(16)]
    raw_id = await submit(sme.raw_map(lambda x, y: x - y, [range(6), range(6, 12)],
                                      dist="r", block=False))
    assert await fetch(sme, raw_id) == [-6] * 6
    assert await within(sme.map(triple, [1, 2, 3], targets=[0, 2])) == [3, 6, 9]
    failing_id = await submit(sme.map(lambda x: 1 / 0, range(4), block=False))
    with pytest.raises(CompositeError) as info:
        await fetch(sme, failing_id)
    assert set(error_types(info.value)) == {ZeroDivisionError}


@pytest_twisted.ensureDeferred
async def test_zip_pull_and_run_non_blocking(sme, script):
    run_id = await submit(sme.run(script("a = 10\nb = 30 + id\n"), block=False))
    await fetch(sme, run_id)
    assert await within(sme.pull(("a", "b"))) == [[10, 30], [10, 31], [10, 32], [10, 33]]
    zip_id = await submit(sme.zip_pull(("a", "b"), block=False))
    assert list(await fetch(sme, zip_id)) == [(10, 10, 10, 10), (30, 31, 32, 33)]
    assert list(await within(sme.zip_pull(("b",), targets=[3, 0]))) == [(33, 30)]
    assert await within(sme.zip_pull("b", targets=1)) == 31


# --- pending results ----------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_none_result_is_deliverable(controller4):
    sme = sync_view(controller4)
    done_id = sme.save_pending_deferred(defer.succeed(None))
    assert await fetch(sme, done_id, block=False) is None

    later = defer.Deferred()
    later_id = sme.save_pending_deferred(later)
    with pytest.raises(ResultNotCompleted):
        await fetch(sme, later_id, block=False)
    waiter = sme.get_pending_deferred(later_id, True)
    later.callback(None)
    assert await within(waiter) is None
    with pytest.raises(InvalidDeferredID):
        await fetch(sme, later_id)


@pytest_twisted.ensureDeferred
async def test_kill_with_controller_non_blocking_gives_none(make_sme):
    hook_calls = []
    sme = await make_sme(2, shutdown_hook=lambda *a, **kw: hook_calls.append(a))
    kill_id = await submit(sme.kill(controller=True, block=False))
    assert await fetch(sme, kill_id) is None
    assert len(hook_calls) == 1


@pytest_twisted.ensureDeferred
async def test_clear_pending_deferreds(controller4, gates):
    sme = sync_view(controller4)
    gate = gates.new()
    finished = [await submit(sme.pull("id", targets=i % 4, block=False)) for i in range(8)]
    # make sure those have really finished (FIFO per engine)
    assert await within(sme.pull("id")) == [0, 1, 2, 3]
    unfinished = [await submit(sme.execute(gate.code, targets=i, block=False)) for i in (0, 1)]
    await gate.wait_arrivals(2)
    waiter = sme.get_pending_deferred(unfinished[0], True)

    assert await within(sme.clear_pending_deferreds()) is None
    with pytest.raises(AbortedPendingDeferredError):
        await within(waiter)
    for deferred_id in finished + unfinished:
        assert not sme.quick_has_id(deferred_id)
        with pytest.raises(InvalidDeferredID):
            await fetch(sme, deferred_id)
        with pytest.raises(InvalidDeferredID):
            await fetch(sme, deferred_id, block=False)
    gate.open()
    # the engines are fine and new ids work
    new_id = await submit(sme.pull("id", block=False))
    assert await fetch(sme, new_id) == [0, 1, 2, 3]


@pytest_twisted.ensureDeferred
async def test_second_blocking_get_fails(sme, gates):
    gate = gates.new()
    deferred_id = await submit(sme.execute(gate.code, targets=2, block=False))
    first = sme.get_pending_deferred(deferred_id, True)
    with pytest.raises(InvalidDeferredID):
        await fetch(sme, deferred_id)
    assert not first.called
    gate.open()
    result = await within(first)
    assert len(result) == 1 and result[0]["id"] == 2


@pytest_twisted.ensureDeferred
async def test_non_blocking_get_of_unfinished_call(sme, gates):
    gate = gates.new()
    deferred_id = await submit(sme.execute(gate.code, block=False))
    await gate.wait_arrivals(4)
    with pytest.raises(ResultNotCompleted):
        await fetch(sme, deferred_id, block=False)
    # a failed non-blocking fetch does not consume the result
    gate.open()
    results = await fetch(sme, deferred_id)
    assert [r["id"] for r in results] == [0, 1, 2, 3]


@pytest_twisted.ensureDeferred
async def test_fetching_twice_fails(sme):
    deferred_id = await submit(sme.pull("id", block=False))
    assert await fetch(sme, deferred_id) == [0, 1, 2, 3]
    with pytest.raises(InvalidDeferredID):
        await fetch(sme, deferred_id)
    with pytest.raises(InvalidDeferredID):
        await fetch(sme, deferred_id, block=False)


@pytest_twisted.ensureDeferred
async def test_unknown_deferred_id(sme):
    with pytest.raises(InvalidDeferredID):
        await fetch(sme, "0" * 40)


@pytest_twisted.ensureDeferred
async def test_errors_through_pending_ids(sme):
    deferred_id = await submit(sme.execute("1 / 0", block=False))
    with pytest.raises(CompositeError) as info:
        await fetch(sme, deferred_id)
    assert error_types(info.value) == [ZeroDivisionError] * 4
    assert str(info.value).splitlines()[1] == "[0:execute]: ZeroDivisionError: division by zero"
    with pytest.raises(CompositeError) as info:
        await within(sme.execute("undefined_name", targets=[1, 3]))
    assert error_types(info.value) == [NameError, NameError]
    # a failed result is delivered once, too
    with pytest.raises(InvalidDeferredID):
        await fetch(sme, deferred_id)


# --- abort ------------------------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_abort_a_waiting_call(sme, gates):
    gate = gates.new()
    running_id = await submit(sme.execute(gate.code, targets=0, block=False))
    waiting_id = await submit(sme.execute("a = 5", targets=0, block=False))
    await gate.wait_arrivals(1)

    assert await within(sme.abort(waiting_id)) is True
    with pytest.raises(Aborted):
        await fetch(sme, waiting_id)

    gate.open()
    running = await fetch(sme, running_id)
    assert len(running) == 1 and running[0]["number"] == 1
    # the aborted command never ran
    with pytest.raises(CompositeError) as info:
        await within(sme.pull("a", targets=0))
    assert error_types(info.value) == [NameError]
    latest = await within(sme.get_result(targets=0))
    assert latest[0]["number"] == 1


@pytest_twisted.ensureDeferred
async def test_abort_wakes_a_blocked_fetch(sme, gates):
    gate = gates.new()
    running_id = await submit(sme.execute(gate.code, targets=1, block=False))
    waiting_id = await submit(sme.push({"b": 1}, targets=1, block=False))
    waiter = sme.get_pending_deferred(waiting_id, True)
    await gate.wait_arrivals(1)
    assert await within(sme.abort(waiting_id)) is True
    with pytest.raises(Aborted):
        await within(waiter)
    gate.open()
    await fetch(sme, running_id)
    with pytest.raises(CompositeError):
        await within(sme.pull("b", targets=1))


@pytest_twisted.ensureDeferred
async def test_abort_a_finished_call(sme):
    deferred_id = await submit(sme.execute("done = id", targets=3, block=False))
    # FIFO per engine: once this returns, the call above has finished
    assert await within(sme.pull("done", targets=3)) == [3]
    assert await within(sme.abort(deferred_id)) is False
    result = await fetch(sme, deferred_id)
    assert len(result) == 1 and result[0]["id"] == 3


@pytest_twisted.ensureDeferred
async def test_abort_unknown_id(sme):
    with pytest.raises(InvalidDeferredID):
        await within(sme.abort("f" * 40))
    fetched_id = await submit(sme.pull("id", block=False))
    await fetch(sme, fetched_id)
    with pytest.raises(InvalidDeferredID):
        await within(sme.abort(fetched_id))


# --- the block argument ------------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_block_must_be_a_keyword(sme):
    with pytest.raises(TypeError):
        await within(sme.execute("a = 1", "all", False))
    with pytest.raises(TypeError):
        await within(sme.pull("id", 0, True))
    with pytest.raises(TypeError):
        await within(sme.execute("a = 1", block="yes"))
    with pytest.raises(TypeError):
        await within(sme.push({"a": 1}, targets=0, block=None))
    # none of those reached an engine
    with pytest.raises(CompositeError) as info:
        await within(sme.pull("a"))
    assert error_types(info.value) == [NameError] * 4
