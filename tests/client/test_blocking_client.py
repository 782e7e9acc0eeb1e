"""Tier 2: the blocking client against an in-process cluster over real Tubs:
every method, timeouts, Ctrl-C, a vanished controller, the reactor-thread guard."""
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import defer

from ipkernel import serialize
from ipkernel.client import (CallTimeout, MultiEngineClient, PendingResult, ReactorThreadError,
                             ResultList)
from ipkernel.client import reactor as client_reactor
from ipkernel.error import (Aborted, ControllerError, InvalidDeferredID, InvalidEngineID,
                            KernelError, NotAPendingResult)

pytestmark = pytest.mark.tier2


@pytest_twisted.ensureDeferred
async def test_every_method(blocking, tmp_path):
    await blocking.start(2)
    script = tmp_path / "script.py"
    script.write_text("from_script = id + 40\nprint('ran', id)\n")

    def user():
        mec = blocking.client()
        assert mec.run(str(script))[1]["stdout"] == "ran 1\n"
        assert mec.pull("from_script") == [40, 41]
        assert mec.apply(lambda a, b=0: a + b + from_script, (1,), {"b": 2}) == [43, 44]  # noqa
        assert mec.complete("from_s") == [["from_script"], ["from_script"]]
        assert mec.interrupt() == [False, False]

        last = mec.get_result()
        assert isinstance(last, ResultList)
        assert [r["input"]["raw"] for r in last] == [script.read_text()] * 2
        assert mec.get_result(1, targets=0)[0]["stdout"] == "ran 0\n"

        def double(x):
            return 2 * x
        mec.push_function({"double": double})
        assert [f(21) for f in mec.pull_function("double")] == [42, 42]
        mec.push_serialized({"s": serialize.serialize([1, 2])})
        pulled = mec.pull_serialized("s")
        assert [serialize.unserialize(p) for p in pulled] == [[1, 2], [1, 2]]

        assert mec.set_properties({"colour": "red"}, targets=1) == [None]
        assert mec.get_properties() == [{}, {"colour": "red"}]
        assert mec.has_properties(["colour"]) == [[False], [True]]
        mec.del_properties(["colour"], targets=1)
        mec.set_properties({"size": 3})
        mec.clear_properties(targets=0)
        assert mec.get_properties() == [{}, {"size": 3}]
        assert mec.get_properties("size", targets=1) == [{"size": 3}]

        assert mec.clear_queue() == [None, None]
        assert [engine for engine, _ in mec.queue_status()] == [0, 1]
        assert mec.raw_map(lambda a, b: a * b, [range(4), range(4)]) == [0, 1, 4, 9]
        assert mec.mapper(dist="r", targets=[1]).map(abs, [-1, -2]) == [1, 2]

        assert "from_script" in mec.keys()[0]
        assert mec.reset(targets=0) == [None]
        assert "from_script" not in mec.keys(targets=0)[0]

        stats = mec.benchmark(push_size=100)
        assert set(stats) >= {"single_engine_latency", "all_engine_latency"}
        assert all(v > 0 for v in stats.values())

        assert mec.kill(targets=1) == [None]
    await blocking.run(user)
    assert [s.killed for s in blocking.cluster.services] == [False, True]


@pytest_twisted.ensureDeferred
async def test_abort_and_flush(blocking, gates):
    await blocking.start(1)
    gate = gates.new()

    def user():
        mec = blocking.client()
        busy = mec.execute(gate.code, block=False)
        queued = mec.execute("never = 1", block=False)
        assert mec.abort(queued) is True
        with pytest.raises(Aborted):
            queued.get_result()
        with pytest.raises(TypeError):
            mec.abort(42)
        left = mec.execute("later = 1", block=False)
        mec.flush()
        gate.open()
        with pytest.raises(InvalidDeferredID):
            left.get_result()
        with pytest.raises(InvalidDeferredID):
            busy.get_result()
        assert mec.clear_pending_results == mec.flush
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_argument_errors_are_clear(blocking):
    await blocking.start(2)

    def user():
        mec = blocking.client()
        with pytest.raises(TypeError, match="block must be True or False"):
            mec.execute("a = 1", block="yes")
        with pytest.raises(TypeError, match="block must be True or False"):
            mec.block = 1
        with pytest.raises(InvalidEngineID):
            mec.execute("a = 1", targets="some")
        with pytest.raises(ValueError):
            mec.targets = ["x"]
        with pytest.raises(InvalidEngineID):
            mec.execute("a = 1", targets=7)   # not registered: the controller says so
        with pytest.raises(ValueError, match="timeout"):
            mec.execute("a = 1", timeout=-1)
        with pytest.raises(NotAPendingResult):
            mec.barrier(["abc"])
        with pytest.raises(TypeError):
            mec[0] = 1
        with pytest.raises(TypeError):
            mec[1.5]   # (mec[0] is a view of engine 0)
        with pytest.raises(ValueError, match="different lengths"):
            mec.map(lambda a, b: a, [1, 2], [1])
        with pytest.raises(TypeError, match=r"map: sequence 2 \(int\) cannot be iterated.*"
                                            r"write \[x\]"):
            mec.map(lambda a, b: a, [1, 2], 5)
        assert mec.map(abs, (x for x in (-1, -2))) == [1, 2]   # an iterator is fine
        with pytest.raises(TypeError) as info:
            mec.apply(abs, -1)          # ipyparallel's view.apply(f, *args)
        assert "args must be a tuple" in str(info.value)
        assert "apply(func, (x,))" in str(info.value)
        assert mec.apply(abs, (-1,)) == [1, 1]
        with pytest.raises(ValueError, match="distribution"):
            mec.mapper(dist="x")
        with pytest.raises(TypeError):
            iter(mec)
        assert mec.block is True and mec.targets == "all"   # unchanged by the refusals
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_blocking_call_from_the_reactor_thread_is_refused(blocking):
    await blocking.start(1)
    mec = await blocking.run(blocking.client)
    # this test body runs in the reactor thread
    with pytest.raises(ReactorThreadError, match="asyncclient"):
        mec.get_ids()
    with pytest.raises(ReactorThreadError, match="reactor"):
        client_reactor.blocking_call(lambda: 1)
    with pytest.raises(ReactorThreadError):
        MultiEngineClient(blocking.cluster.mec_furl, tub=blocking.cluster.client_tub)
    assert client_reactor.reactor_thread() is None   # nothing was started
    assert await blocking.run(mec.get_ids) == [0]    # the client still works elsewhere


@pytest_twisted.ensureDeferred
async def test_timeout_names_the_call_and_the_client_goes_on(blocking, gates):
    await blocking.start(2)
    gate = gates.new()

    def user():
        mec = blocking.client()
        started = time.monotonic()
        with pytest.raises(CallTimeout, match=r"MultiEngineClient\.execute .*0\.2 s") as info:
            mec.execute(gate.code, timeout=0.2)
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, KernelError)
        assert time.monotonic() - started < 5

        mec.timeout = 0.2   # the client's default applies to every call
        pr = mec.execute("after = 1", block=False)
        with pytest.raises(CallTimeout, match="still on its way"):
            pr.get_result()
        assert not pr.done
        gate.open()
        mec.timeout = 10
        assert [r["input"]["raw"] for r in pr.get_result()] == ["after = 1"] * 2  # resumed
        assert mec.get_ids() == [0, 1]
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_ctrl_c_returns_control_at_once(blocking, gates, raise_in_thread):
    from twisted.internet import reactor

    await blocking.start(2)
    gate = gates.new()
    seen = {}
    fetching = defer.Deferred()

    def user():
        mec = blocking.client()
        seen["thread"] = threading.get_ident()
        try:
            mec.execute(gate.code, timeout=None)
        except KeyboardInterrupt:
            seen["interrupted"] = True
        seen["gate_open"] = gate._opened.is_set()
        seen["ids"] = mec.get_ids()     # the client is usable straight away
        pr = mec.execute("b = 2", block=False)   # queued behind the gate
        try:
            reactor.callFromThread(fetching.callback, None)
            pr.get_result(timeout=None)
        except KeyboardInterrupt:
            seen["interrupted_fetch"] = True
        seen["gate_open_2"] = gate._opened.is_set()
        return pr

    done = blocking.run(user)
    await gate.wait_arrivals(2)
    raise_in_thread(seen["thread"], KeyboardInterrupt)
    await fetching
    raise_in_thread(seen["thread"], KeyboardInterrupt)
    pr = await done
    assert seen["interrupted"] and seen["interrupted_fetch"]
    assert seen["gate_open"] is False and seen["gate_open_2"] is False
    assert seen["ids"] == [0, 1]
    assert not await blocking.run(lambda: pr.done)   # still running (asked of the controller)
    gate.open()
    # the interrupted fetch of a PendingResult can be resumed
    results = await blocking.run(pr.get_result)
    assert [r["input"]["raw"] for r in results] == ["b = 2", "b = 2"]


@pytest_twisted.ensureDeferred
async def test_controller_gone_gives_controller_error(blocking, gates):
    cluster = await blocking.start(2)
    gate = gates.new()

    def before():
        mec = blocking.client()
        return mec, mec.execute(gate.code, block=False)
    mec, pr = await blocking.run(before)
    await gate.wait_arrivals(2)
    await cluster.tub.stopService()   # the controller vanishes
    gate.open()

    def after():
        started = time.monotonic()
        with pytest.raises(ControllerError, match="controller"):
            mec.execute("a = 1")
        with pytest.raises(ControllerError):
            mec.get_ids()
        with pytest.raises(ControllerError):
            pr.get_result()
        with pytest.raises(ControllerError):   # kept
            pr.r
        assert time.monotonic() - started < 5   # promptly, not after the timeout
        mec.close()                              # does not fail either
        with pytest.raises(KernelError, match="closed"):
            mec.get_ids()
    await blocking.run(after)


@pytest_twisted.ensureDeferred
async def test_close_and_context_manager(blocking):
    await blocking.start(1)

    def user():
        with blocking.client() as mec:
            pr = mec.execute("a = 1", block=False)
            assert "targets='all'" in repr(mec)
        assert "closed" in repr(mec)
        with pytest.raises(KernelError, match="closed"):
            mec.execute("a = 2")
        with pytest.raises(KernelError, match="closed"):
            pr.get_result()
        mec.close()   # idempotent
        other = blocking.client()
        assert other.pull("a") == [1]
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_connection_errors_are_controller_errors(blocking, tmp_path):
    await blocking.start(0)
    missing = tmp_path / "nowhere" / "ipcontroller-mec.furl"

    def user():
        with pytest.raises(ControllerError, match="nowhere"):
            MultiEngineClient(str(missing), tub=blocking.cluster.client_tub,
                              call_in_reactor=blocking.cluster_call)
        with pytest.raises(ControllerError, match="ipcontroller-mec.furl"):
            MultiEngineClient(cluster_dir=str(tmp_path), tub=blocking.cluster.client_tub,
                              call_in_reactor=blocking.cluster_call)
        with pytest.raises(TypeError, match="not both"):
            MultiEngineClient("pb://x", cluster_dir=str(tmp_path))
        mec = blocking.client()
        assert mec.get_ids() == [] and len(mec) == 0 and bool(mec)
    from twisted.internet import reactor
    blocking.cluster_call = reactor.callFromThread
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_many_threads_share_one_client(blocking):
    await blocking.start(2)
    mec = await blocking.run(blocking.client)

    def worker(k):
        return [mec.apply(lambda v: v * 2, (k * 10 + i,), targets=k % 2)[0] for i in range(5)]
    results = await defer.gatherResults([blocking.run(worker, k) for k in range(4)])
    assert results == [[2 * (k * 10 + i) for i in range(5)] for k in range(4)]
    assert isinstance(await blocking.run(mec.execute, "a = 1", block=False), PendingResult)
