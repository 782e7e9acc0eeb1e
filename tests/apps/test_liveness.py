"""Tier 3: dead, frozen and returning engines; controller restarts."""
import time
from pathlib import Path

import pytest
import pytest_twisted

from ipkernel.error import CompositeError, ControllerError, EngineError

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]

# period 0.5 s + timeout 2 s, with room for a slow machine
HEARTBEAT_WINDOW = 6.0


def engine_errors(exc):
    """The EngineErrors in ``exc`` (itself, or inside a CompositeError)."""
    found = exc.exceptions if isinstance(exc, CompositeError) else [exc]
    return [e for e in found if isinstance(e, EngineError)]


async def expect_engine_error(cluster, mec, deferred_id, engine_id):
    with pytest.raises((CompositeError, EngineError)) as info:
        await cluster.within(mec.get_pending_deferred(deferred_id, block=True),
                             2 * HEARTBEAT_WINDOW, f"the commands of engine {engine_id} to fail")
    errors = engine_errors(info.value)
    assert errors, f"expected an EngineError, got {info.value!r}"
    assert f"engine {engine_id}" in str(errors[0])


@pytest_twisted.ensureDeferred
async def test_kill_9_of_an_engine_fails_its_pending_commands(cluster):
    mec = await cluster.start(controller_args=cluster.FAST_HEARTBEAT)
    pids = await cluster.engine_pids(mec)
    victim = cluster.process_with_pid(pids[1])

    running = await mec.execute("import time; time.sleep(30)", targets=1, block=False)
    waiting = await mec.execute("y = 1", targets=1, block=False)
    status = await mec.queue_status(targets=1)
    assert "sleep" in status[0][1]["pending"] and len(status[0][1]["queue"]) == 1

    started = time.monotonic()
    victim.signal("KILL")
    await victim.wait()
    await expect_engine_error(cluster, mec, running, 1)
    await expect_engine_error(cluster, mec, waiting, 1)
    await cluster.wait_for_ids(mec, [0], timeout=HEARTBEAT_WINDOW)
    assert time.monotonic() - started < HEARTBEAT_WINDOW

    assert await mec.pull("_pid", targets=0) == [pids[0]]  # the other engine is unharmed


@pytest_twisted.ensureDeferred
async def test_frozen_engine_is_dropped_by_the_heartbeat_and_comes_back(cluster):
    mec = await cluster.start(controller_args=cluster.FAST_HEARTBEAT)
    pids = await cluster.engine_pids(mec)
    await mec.execute("kept = id * 7")
    frozen = cluster.process_with_pid(pids[1])

    frozen.signal("STOP")  # its connection stays open: only the heartbeat can tell
    started = time.monotonic()
    waiting = await mec.execute("z = 1", targets=1, block=False)
    await expect_engine_error(cluster, mec, waiting, 1)
    assert time.monotonic() - started < HEARTBEAT_WINDOW
    assert await mec.get_ids() == [0]
    assert "did not answer a ping" in cluster.controller.output

    frozen.signal("CONT")  # it notices the dropped connection, reconnects, gets id 1 back
    await cluster.wait_for_ids(mec, [0, 1])
    assert await mec.pull("kept") == [0, 7]
    assert await mec.pull("_pid", targets=1) == [pids[1]]


@pytest_twisted.ensureDeferred
async def test_busy_engine_is_not_declared_dead(cluster):
    mec = await cluster.start(n_engines=1, controller_args=cluster.FAST_HEARTBEAT)
    busy = await mec.execute("import time\nt0 = time.time()\nwhile time.time() - t0 < 5: pass",
                             targets=0, block=False)
    # five heartbeat timeouts of pure-Python busy loop in the engine's main thread
    result = await cluster.within(mec.get_pending_deferred(busy, block=True), 30, "the loop")
    assert result[0]["id"] == 0
    assert await mec.get_ids() == [0]
    assert "did not answer a ping" not in cluster.controller.output


@pytest_twisted.ensureDeferred
async def test_controller_restart_with_reuse_keeps_furls_engines_and_ids(cluster):
    mec = await cluster.start()
    pids = await cluster.engine_pids(mec)
    await mec.execute("kept = id + 100")
    furls = {f: Path(f).read_text() for f in (cluster.mec_furl_file, cluster.engine_furl_file)}

    old_controller = cluster.controller
    old_controller.signal("TERM")
    assert await old_controller.wait() == 0
    with pytest.raises(ControllerError):
        await mec.get_ids()  # the old client's connection is gone

    cluster.start_controller("-r")
    fresh = await cluster.connect()  # reads the FURL file again
    assert {f: Path(f).read_text() for f in furls} == furls
    assert fresh.furl == furls[cluster.mec_furl_file].strip()
    await cluster.wait_for_ids(fresh, [0, 1])
    assert await fresh.pull("kept") == [100, 101]
    assert await cluster.engine_pids(fresh) == pids
    assert all(not e.ended for e in cluster.engines)
