"""Issue 13: the multi-engine's kill goes around the engine's queue.

Runs in-process (tier 1) and over real Tubs and lanes (tier 2), through the
``me`` fixture of this folder's conftest.
"""
import pytest
import pytest_twisted

from awaiting import composite, within
from ipkernel.error import EngineError, QueueCleared


@pytest_twisted.ensureDeferred
async def test_kill_of_a_busy_engine_is_answered_at_once_and_fails_its_commands(me, gates):
    gate = gates.new()
    busy = me.execute(f"{gate.notify_code}\nwhile True: pass", targets=1)
    await gate.wait_arrivals(1)
    waiting = me.execute("never = 1", targets=1)
    assert await within(me.kill(targets=1)) == [None]

    (running,) = (await composite(busy)).exceptions
    assert isinstance(running, EngineError)
    assert "engine 1 was killed by a client while running it" in str(running)
    (queued,) = (await composite(waiting)).exceptions
    assert isinstance(queued, QueueCleared) and "before running it" in str(queued)
    assert await within(me.get_ids()) == [0, 2, 3]
    assert await within(me.pull("id", targets=[0, 2])) == [0, 2]


@pytest_twisted.ensureDeferred
async def test_kill_of_an_idle_engine_unregisters_it(me):
    assert await within(me.kill(targets=[0, 3])) == [None, None]
    assert await within(me.get_ids()) == [1, 2]
