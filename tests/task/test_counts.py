"""TaskController.counts(), which the dashboard reads several times a second:
kept as running counts, always equal to what the live tasks say (tier 1)."""
import pytest
import pytest_twisted

from ipkernel.task import StringTask

from awaiting import within

pytestmark = pytest.mark.tier1


def walked(tc):
    """The counts as a walk over the live tasks gives them."""
    running = sum(1 for rec in tc._live.values() if rec.state == "running")
    return {"waiting": len(tc._live) - running, "running": running, **tc.finished_counts}


def checked(tc):
    counts = tc.counts()
    assert counts == walked(tc)
    return counts


@pytest_twisted.ensureDeferred
async def test_counts_follow_starts_losses_aborts_and_finishes(make_tc, gates):
    tc = make_tc(2)
    gate = gates.new()
    held = [await tc.run(StringTask(gate.code)) for _ in range(3)]
    after = await tc.run(StringTask("y = 1"))
    await gate.wait_arrivals(2)
    counts = checked(tc)
    assert counts["running"] == 2 and counts["waiting"] == 2

    # an engine lost under its task: the task waits again for an engine
    lost = next(e for e in tc.controller.engines
                if any(tc._live[t].task._engineid == e for t in held if t in tc._live
                       and tc._live[t].state == "running"))
    tc.controller.unregister_engine(lost)
    counts = checked(tc)
    assert counts["running"] == 1 and counts["waiting"] == 3

    # an aborted task that waited: finished (failed), not waiting any more
    waiting = next(t for t in held if tc._live[t].state != "running")
    await within(tc.abort(waiting))
    counts = checked(tc)
    assert counts["running"] == 1 and counts["failed"] == 1

    gate.open()
    await within(tc.barrier([t for t in held + [after] if t != waiting]))
    assert checked(tc) == {"waiting": 0, "running": 0, "succeeded": 3, "failed": 1}
