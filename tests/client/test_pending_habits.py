"""Tier 2: the AsyncResult habits of PendingResult (issue 16): ready, done,
wait, get (TimeoutError, resumable), successful, elapsed, metadata,
add_done_callback, stdout/stderr, over a real in-process cluster."""
import threading

import pytest
import pytest_twisted

from ipkernel.error import CompositeError

pytestmark = pytest.mark.tier2


@pytest_twisted.ensureDeferred
async def test_a_running_call_is_not_ready_then_is(blocking, gates):
    await blocking.start(2)
    gate = gates.new()
    mec = await blocking.run(blocking.client)
    pending = await blocking.run(mec.execute, gate.code, block=False)
    await gate.wait_arrivals(2)

    def still_running():
        assert not pending.ready() and not pending.done
        assert pending.wait(0.2) is False           # bounded: not finished
        with pytest.raises(TimeoutError):
            pending.get(timeout=0.2)
        with pytest.raises(ValueError, match="not finished"):
            pending.successful()
        return pending.elapsed
    elapsed_running = await blocking.run(still_running)
    assert elapsed_running > 0
    gate.open()

    def finished():
        results = pending.get(timeout=10)           # resumed after the timeout
        assert pending.ready() and pending.done and pending.successful()
        assert pending.wait(10) is True
        first = pending.elapsed
        assert pending.elapsed == first              # stopped once finished
        return results
    results = await blocking.run(finished)
    assert [r["id"] for r in results] == [0, 1]


@pytest_twisted.ensureDeferred
async def test_a_failed_call_is_ready_and_not_successful_and_wait_does_not_raise(blocking):
    await blocking.start(2)
    mec = await blocking.run(blocking.client)

    def user():
        pending = mec.execute("1/0", block=False)
        assert pending.wait(10) is True
        assert pending.ready() and not pending.successful()
        with pytest.raises(CompositeError):
            pending.get(timeout=10)
        return True
    assert await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_done_callbacks_run_once_finished_in_a_thread_of_their_own(blocking, gates):
    await blocking.start(2)
    gate = gates.new()
    mec = await blocking.run(blocking.client)
    pending = await blocking.run(mec.execute, gate.code, block=False)
    called = []
    arrived = [threading.Event(), threading.Event()]

    def callback(p):
        called.append((p, threading.current_thread().name, p.ready()))
        arrived[len(called) - 1].set()

    await blocking.run(pending.add_done_callback, callback)
    await gate.wait_arrivals(2)
    assert called == []
    gate.open()
    assert await blocking.run(arrived[0].wait, 10)
    await blocking.run(pending.add_done_callback, callback)   # after: called at once
    assert await blocking.run(arrived[1].wait, 10)
    assert [c[0] for c in called] == [pending, pending] and all(c[2] for c in called)
    assert all(name.startswith("ipkernel-callbacks") for _, name, _ in called)


@pytest_twisted.ensureDeferred
async def test_output_and_metadata_per_target_engine(blocking):
    await blocking.start(3)
    mec = await blocking.run(blocking.client)

    def user():
        mec.stream = False
        pending = mec.execute("print('on', id)", targets=[2, 0], block=False)
        pending.wait(10)
        applied = mec.apply(print, ("applied",), targets=1, block=False)
        applied.wait(10)
        return pending, applied
    pending, applied = await blocking.run(user)
    assert pending.engine_ids() == [2, 0]
    assert pending.stdout == ["on 2\n", "on 0\n"] and pending.stderr == ["", ""]
    meta = pending.metadata
    assert [m["engine_id"] for m in meta] == [2, 0]
    assert all(m["completed"] >= m["submitted"] for m in meta)
    assert meta[0]["stdout"] == "on 2\n"
    assert applied.stdout == ["applied\n"]
