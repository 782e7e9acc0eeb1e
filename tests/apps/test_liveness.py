"""Tier 3: dead, frozen and returning engines; controller restarts."""
import time
from pathlib import Path

import pytest
import pytest_twisted

from ipkernel.error import CompositeError, ControllerError, EngineError

from procstat import status_field

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


# -- code that holds the GIL: the engine's pulse process answers for it (issue 13) ----------

#: Finds a regex size whose match takes at least 0.4 s here (each further 'a'
#: doubles the time), so the test need not guess this machine's speed.
CALIBRATE_REGEX = """
import re, time
n = 18
while True:
    t0 = time.perf_counter(); re.match('(a*)*b', 'a' * n); took = time.perf_counter() - t0
    if took >= 0.4: break
    n += 1
"""
#: One call of C code that holds the GIL for 16x the calibrated time (6 s or more).
GIL_HOLDING_REGEX = ("t0 = time.perf_counter(); re.match('(a*)*b', 'a' * (n + 4)); "
                     "took = time.perf_counter() - t0; answer = 42")
#: period + timeout + the pulse's wait with FAST_HEARTBEAT: beyond it, a silent engine goes.
FAST_BOUND = 0.5 + 2 + 1


def pulse_pids(engine_pid):
    """The pids of the pulse processes whose parent is ``engine_pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == engine_pid and b"pulse_child" in cmdline:
            found.append(int(entry.name))
    return found




@pytest_twisted.ensureDeferred
async def test_engine_in_c_code_holding_the_gil_is_kept_and_answers(cluster):
    mec = await cluster.start(n_engines=1, controller_args=cluster.FAST_HEARTBEAT)
    [pid] = (await cluster.engine_pids(mec)).values()
    [pulse] = pulse_pids(pid)
    rss = status_field(pulse, "VmRSS")
    print(f"pulse process {pulse}: VmRSS {rss} kB")
    assert rss < 16 * 1024, f"the pulse process uses {rss} kB"

    await mec.execute(CALIBRATE_REGEX, targets=0)
    busy = await mec.execute(GIL_HOLDING_REGEX, targets=0, block=False)
    await cluster.within(mec.get_pending_deferred(busy, block=True), 90, "the regex")
    took, answer = (await mec.pull(["took", "answer"], targets=0))[0]
    assert answer == 42
    assert took > FAST_BOUND + 1, f"the regex took only {took:.1f} s: not a real test"
    assert await mec.get_ids() == [0]
    assert await cluster.engine_pids(mec) == {0: pid}  # the same process, never dropped
    output = cluster.controller.output
    assert "did not answer a ping" not in output
    assert output.count("is busy in code that holds the GIL") == 1  # logged once


@pytest_twisted.ensureDeferred
async def test_without_its_pulse_an_engine_in_such_code_is_dropped(cluster):
    # What the pulse fixes: the same computation with --no-pulse loses the engine.
    mec = await cluster.start(n_engines=1, controller_args=cluster.FAST_HEARTBEAT,
                              engine_args=["--no-pulse"])
    [pid] = (await cluster.engine_pids(mec)).values()
    assert pulse_pids(pid) == []
    await mec.execute(CALIBRATE_REGEX, targets=0)
    busy = await mec.execute(GIL_HOLDING_REGEX, targets=0, block=False)
    await expect_engine_error(cluster, mec, busy, 0)
    assert "it has no pulse to ask" in cluster.controller.output


@pytest_twisted.ensureDeferred
async def test_engine_stopped_in_such_code_is_dropped_in_time(cluster):
    mec = await cluster.start(n_engines=1, controller_args=cluster.FAST_HEARTBEAT)
    [pid] = (await cluster.engine_pids(mec)).values()
    engine = cluster.process_with_pid(pid)
    await mec.execute(CALIBRATE_REGEX, targets=0)
    busy = await mec.execute(GIL_HOLDING_REGEX + "\ntime.sleep(60)", targets=0, block=False)
    await cluster.poll(lambda: "holds the GIL" in cluster.controller.output,
                       "the controller to see the engine busy", timeout=30)

    engine.signal("STOP")  # frozen in the middle of the C code
    started = time.monotonic()
    await expect_engine_error(cluster, mec, busy, 0)
    assert time.monotonic() - started < FAST_BOUND + 2.5
    assert "its pulse says it is stopped" in cluster.controller.output
    assert await mec.get_ids() == []
    engine.signal("CONT")


@pytest_twisted.ensureDeferred
async def test_kill_9_in_such_code_drops_the_engine_and_ends_its_pulse(cluster):
    mec = await cluster.start(n_engines=1, controller_args=cluster.FAST_HEARTBEAT)
    [pid] = (await cluster.engine_pids(mec)).values()
    [pulse] = pulse_pids(pid)
    engine = cluster.process_with_pid(pid)
    await mec.execute(CALIBRATE_REGEX, targets=0)
    busy = await mec.execute(GIL_HOLDING_REGEX, targets=0, block=False)
    await cluster.poll(lambda: "holds the GIL" in cluster.controller.output,
                       "the controller to see the engine busy", timeout=30)

    started = time.monotonic()
    engine.signal("KILL")
    await engine.wait()
    await expect_engine_error(cluster, mec, busy, 0)
    assert time.monotonic() - started < FAST_BOUND + 2.5
    await cluster.poll(lambda: not Path(f"/proc/{pulse}").exists()
                       or "Z" in Path(f"/proc/{pulse}/stat").read_text().rsplit(")", 1)[1][:3],
                       "the pulse process to exit with its engine", timeout=10)
