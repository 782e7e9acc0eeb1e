"""IPython 0.10's import surface (reference 7.1, 7.2, 15): ``ipkernel.client``'s
``get_*_client`` and task names, ``ipkernel.TaskRejectError``,
``asyncclient.get_client``, any picklable callable in MapTask and the task
maps, ``adapt_to_blocking_client`` and the async ``mapper``/``parallel``.

Tier 2: an in-process cluster on loopback (``make_fc_cluster``) with the
task farm's FURL on the controller Tub; blocking calls are made from worker
threads while the test's reactor turns (a Twisted program).
"""
import functools
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

import ipkernel
from ipkernel import asyncclient, client, fcutil
from ipkernel.clusterdir import MULTIENGINE_FURL, TASK_FURL, ClusterDir, ensure_private_dir
from ipkernel.client.fcmultiengine import FCFullSynchronousMultiEngineClient, MultiEngineMapper
from ipkernel.client.fctask import FCTaskClient
from ipkernel.error import ControllerError, InvalidEngineID
from ipkernel.interfaces.remote import RITaskController
from ipkernel.interfaces.task import ITaskController

from awaiting import raises, within
from callables import Scale, power

pytestmark = pytest.mark.tier2

#: Bound for the blocking calls and the worker threads.
WAIT = 20


CALLABLES = {"partial": (functools.partial(power, n=3), [0, 1, 8, 27]),
             "callable object": (Scale(2), [1, 3, 5, 7]),
             "bound method": (Scale(2).times, [0, 2, 4, 6])}


@pytest_twisted.async_yield_fixture
async def farm(make_fc_cluster):
    """``async make(n, lane=False) -> cluster`` with ``cluster.tc_furl`` and
    ``cluster.tc`` (an FCTaskClient on the client Tub)."""
    made, clients = [], []

    async def make(n=2, **kwargs):
        cluster = await make_fc_cluster(n, **kwargs)
        task_controller = ITaskController(cluster.controller)
        made.append(task_controller)
        cluster.tc_furl = fcutil.register(cluster.tub, RITaskController(task_controller))
        cluster.tc = await within(asyncclient.get_task_client(
            cluster.tc_furl, tub=cluster.client_tub, timeout=WAIT))
        clients.append(cluster.tc)
        return cluster

    yield make
    for tc in clients:
        tc.close()
    for task_controller in made:
        task_controller.stop()


def in_thread(func, *args, **kwargs):
    """Deferred: ``func(*args, **kwargs)`` in a worker thread (user code)."""
    return threads.deferToThread(func, *args, **kwargs).addTimeout(WAIT * 2, reactor)


# -- the names ------------------------------------------------------------------------

def test_the_0_10_names_of_ipkernel_client_and_asyncclient():
    from ipkernel import task

    for name in ("get_multiengine_client", "get_task_client", "MultiEngineClient", "TaskClient",
                 "MapTask", "StringTask", "TaskRejectError", "CompositeError"):
        assert name in client.__all__ and hasattr(client, name), name
    # classes here (0.10 had factories under these names); the get_* functions connect
    assert isinstance(client.MultiEngineClient, type) and isinstance(client.TaskClient, type)
    assert client.MapTask is task.MapTask and client.StringTask is task.StringTask
    assert ipkernel.TaskRejectError is client.TaskRejectError is ipkernel.error.TaskRejectError
    for name in ("get_multiengine_client", "get_task_client", "get_client", "MapTask",
                 "StringTask", "TaskRejectError", "CompositeError"):
        assert name in asyncclient.__all__ and hasattr(asyncclient, name), name
    assert asyncclient.MapTask is task.MapTask


def test_import_ipkernel_stays_cheap():
    code = ("import sys, ipkernel\n"
            "assert ipkernel.TaskRejectError.__name__ == 'TaskRejectError'\n"
            "loaded = [m for m in sys.modules if m.startswith('ipkernel.client')\n"
            "          or m == 'ipkernel.asyncclient']\n"
            "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


# -- get_multiengine_client / get_task_client ---------------------------------------------

@pytest_twisted.ensureDeferred
async def test_get_clients_use_the_default_furl_files(farm, tmp_path, monkeypatch):
    cluster = await farm(2)
    security = ensure_private_dir(tmp_path / "security")
    (security / MULTIENGINE_FURL).write_text(cluster.mec_furl + "\n")
    (security / TASK_FURL).write_text(cluster.tc_furl + "\n")
    monkeypatch.setenv("IPKERNEL_DIR", str(tmp_path))
    assert ClusterDir().furl_file(TASK_FURL) == security / TASK_FURL
    how = dict(tub=cluster.client_tub, call_in_reactor=reactor.callFromThread, timeout=WAIT)

    def user():
        out = {}
        with client.get_multiengine_client(**how) as mec:       # '' is the default
            out["mec"] = type(mec)
            out["ids"] = mec.get_ids()
            out["mec_furl"] = mec.furl
        with client.get_task_client("", **how) as tc:
            out["tc"] = type(tc)
            out["tc_furl"] = tc.furl
            tid = tc.run(client.StringTask("y = 6 * 7", pull="y"))
            out["y"] = tc.get_task_result(tid, block=True).ns.y
        with client.get_task_client(str(security / TASK_FURL), **how) as tc:
            out["map"] = tc.run(client.MapTask(pow, (2, 10)), block=True)
        return out

    out = await in_thread(user)
    assert out["mec"] is client.MultiEngineClient and out["tc"] is client.TaskClient
    assert out["ids"] == [0, 1] and out["y"] == 42 and out["map"] == 1024
    assert out["mec_furl"] == cluster.mec_furl and out["tc_furl"] == cluster.tc_furl


@pytest_twisted.ensureDeferred
async def test_task_reject_error_from_the_package(farm):
    cluster = await farm(2)
    await within(cluster.client.push({"my_id": 0}, targets=0))
    await within(cluster.client.push({"my_id": 1}, targets=1))
    code = ("import ipkernel\n"
            "if my_id == 0: raise ipkernel.TaskRejectError('not on engine 0')\n"
            "where = my_id")
    ids = [await within(cluster.tc.run(client.StringTask(code, pull="where")))
           for _ in range(4)]
    for tid in ids:
        assert (await within(cluster.tc.get_task_result(tid, block=True))).ns.where == 1


# -- any picklable callable -----------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(CALLABLES))
@pytest_twisted.ensureDeferred
async def test_task_maps_take_any_picklable_callable(farm, kind):
    cluster = await farm(2)
    func, expected = CALLABLES[kind]
    # the Deferred-based client
    assert await within(cluster.tc.map(func, range(4))) == expected
    assert await within(cluster.tc.parallel()(func)(range(4))) == expected
    tid = await within(cluster.tc.run(client.MapTask(func, (3,))))
    assert await within(cluster.tc.get_task_result(tid, block=True)) == expected[3]

    def user():
        with client.TaskClient(cluster.tc_furl, tub=cluster.client_tub,
                               call_in_reactor=reactor.callFromThread, timeout=WAIT) as tc:
            return (tc.map(func, range(4)), tc.parallel()(func)(range(4)),
                    tc.mapper(retries=1).map(func, range(4)),
                    tc.run(client.MapTask(func, (3,)), block=True))
    mapped, parallel, mapper, one = await in_thread(user)
    assert mapped == parallel == mapper == expected and one == expected[3]


@pytest_twisted.ensureDeferred
async def test_task_maps_refuse_sequences_of_different_lengths(farm):
    cluster = await farm(1)
    before = await within(cluster.tc.queue_status())
    for sequences in ((range(3), range(4)), (iter(range(3)), [2])):
        error = await raises(ValueError, cluster.tc.map(power, *sequences))
        assert "different lengths" in str(error), error

    def user():
        with client.TaskClient(cluster.tc_furl, tub=cluster.client_tub,
                               call_in_reactor=reactor.callFromThread, timeout=WAIT) as tc:
            with pytest.raises(ValueError, match="no task was submitted"):
                tc.map(power, [1, 2], [1])
            return tc.map(power, [1, 2], [3, 3])
    assert await in_thread(user) == [1, 8]
    after = await within(cluster.tc.queue_status())
    assert after["succeeded"] == before["succeeded"] + 2, (before, after)


@pytest.mark.parametrize("kind", sorted(CALLABLES))
@pytest_twisted.ensureDeferred
async def test_multiengine_maps_take_any_picklable_callable(farm, kind):
    cluster = await farm(2)
    func, expected = CALLABLES[kind]
    assert await within(cluster.client.map(func, range(4))) == expected
    assert await within(cluster.client.mapper().map(func, range(4))) == expected
    assert await within(cluster.client.parallel()(func)(range(4))) == expected


# -- the async multi-engine client's mapper and parallel ----------------------------------

@pytest_twisted.ensureDeferred
async def test_async_multiengine_mapper(farm):
    cluster = await farm(3)
    fc = cluster.client
    mapper = fc.mapper()
    assert isinstance(mapper, MultiEngineMapper)
    assert (mapper.dist, mapper.targets, mapper.block) == ("b", "all", True)
    assert await within(mapper.map(power, range(10))) == [x * x for x in range(10)]
    assert await within(mapper.map(power, range(4), [3] * 4)) == [0, 1, 8, 27]
    # round robin over two engines, not blocking: a deferred id to fetch
    deferred_id = await within(fc.mapper(dist="r", targets=[0, 2], block=False)
                               .map(power, range(7)))
    assert isinstance(deferred_id, str)
    assert await within(fc.get_pending_deferred(deferred_id, True)) == [x * x for x in range(7)]
    await raises(ValueError, mapper.map(power, [1, 2], [1]))
    with pytest.raises(ValueError):
        fc.mapper(dist="z")
    with pytest.raises(InvalidEngineID):
        fc.mapper(targets="some")
    with pytest.raises(TypeError):
        fc.mapper(block=None)


@pytest_twisted.ensureDeferred
async def test_async_multiengine_parallel(farm):
    cluster = await farm(2)
    fc = cluster.client

    @fc.parallel()
    def f(x):
        return 10.0 * x ** 4
    assert f.__name__ == "f" and f.mapper.targets == "all"
    assert await within(f(range(8))) == [10.0 * x ** 4 for x in range(8)]

    @fc.parallel(targets=1, block=False)
    def where(x):
        return (id, x)   # the engine's id: the function sees the engine namespace
    deferred_id = await within(where(range(3)))
    assert await within(fc.get_pending_deferred(deferred_id, True)) == [(1, 0), (1, 1), (1, 2)]

    await within(fc.execute("def cube(x):\n    return x ** 3"))
    assert await within(fc.parallel()("cube")([1, 2, 3])) == [1, 8, 27]   # a name on the engines
    with pytest.raises(TypeError):
        fc.parallel()(42)


# -- adapt_to_blocking_client in a Twisted program -----------------------------------------

@pytest.mark.parametrize("lane", [False, True], ids=["foolscap", "lane"])
@pytest_twisted.ensureDeferred
async def test_adapted_multiengine_client_in_a_twisted_program(farm, lane):
    cluster = await farm(2, lane=lane)
    fc = cluster.client
    mec = fc.adapt_to_blocking_client(timeout=WAIT)   # fine in the reactor thread
    assert isinstance(mec, client.MultiEngineClient) and mec.furl == cluster.mec_furl

    def from_the_reactor_thread():
        for call in (mec.get_ids, lambda: mec.execute("a = 1"), lambda: mec.map(power, [1])):
            with pytest.raises(client.ReactorThreadError):   # a blocking call would deadlock
                call()
    from_the_reactor_thread()
    kept = await within(fc.execute("b = 2", block=False))   # a pending id of the async client

    def user():
        pending = mec.execute("c = 3", block=False)
        return (mec.get_ids(), mec.map(power, range(4)), pending.get_result()[0]["id"],
                mec.pull("c", targets=1))
    ids, mapped, first, pulled = await in_thread(user)
    assert ids == [0, 1] and mapped == [0, 1, 4, 9] and first == 0 and pulled == [3]
    if lane:   # the worker thread's calls took the direct path, on a lane of their own
        assert mec._direct_calls().lane is not None
    from_the_reactor_thread()   # also once that lane is there
    await in_thread(mec.close)
    # the async client, its connection and its pending results are untouched
    assert len(await within(fc.get_pending_deferred(kept, True))) == 2
    assert await within(fc.pull("b", targets=0)) == [2]
    assert await within(fc.map(power, [5])) == [25]


@pytest_twisted.ensureDeferred
async def test_adapted_task_client_in_a_twisted_program(farm):
    cluster = await farm(2)
    tc = cluster.tc.adapt_to_blocking_client(timeout=WAIT)
    assert isinstance(tc, client.TaskClient) and tc.furl == cluster.tc_furl
    with pytest.raises(client.ReactorThreadError):
        tc.run(client.StringTask("pass"))

    def user():
        tid = tc.run(client.StringTask("z = 2 ** 5", pull="z"))
        return tc.get_task_result(tid, block=True).ns.z, tc.map(Scale(3), [1, 2])
    z, mapped = await in_thread(user)
    assert z == 32 and mapped == [4, 7]
    await in_thread(tc.close)
    assert await within(cluster.tc.map(power, [4])) == [16]


# -- asyncclient.get_client ------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_get_client_picks_the_client_kind_from_the_furl(farm, tmp_path):
    cluster = await farm(2)
    furl_file = tmp_path / TASK_FURL
    furl_file.write_text(cluster.tc_furl + "\n")
    mec = await within(asyncclient.get_client(cluster.mec_furl, tub=cluster.client_tub))
    tc = await within(asyncclient.get_client(str(furl_file), tub=cluster.client_tub))
    try:
        assert type(mec) is FCFullSynchronousMultiEngineClient and type(tc) is FCTaskClient
        assert await within(mec.get_ids()) == [0, 1]
        tid = await within(tc.run(asyncclient.StringTask("w = 7", pull="w")))
        assert (await within(tc.get_task_result(tid, block=True))).ns.w == 7
    finally:
        mec.close()
        tc.close()
    error = await raises(ControllerError, asyncclient.get_client(cluster.engine_furl,
                                                                 tub=cluster.client_tub))
    assert "ipcontroller-mec.furl or ipcontroller-tc.furl" in str(error)
    for nothing in ("", None):
        await raises(ValueError, asyncclient.get_client(nothing))
