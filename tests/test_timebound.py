"""The tests' own time bound (tests/timebound.py): a test awaiting a Deferred
that never fires fails soon, naming its timeout, instead of hanging past
pytest-timeout's alarm (which the reactor's loop swallows)."""
import time

import pytest
import pytest_twisted
from twisted.internet import defer

import timebound

pytestmark = pytest.mark.tier1


@pytest_twisted.ensureDeferred
async def test_a_never_firing_await_is_cut_at_the_deadline():
    cleaned = []

    async def hangs():
        try:
            await defer.Deferred()
        finally:
            cleaned.append(True)   # the coroutine is unwound, its finally runs
    started = time.monotonic()
    with pytest.raises(defer.TimeoutError, match="within 90% of its 7 s timeout"):
        await timebound.bounded(hangs, time.monotonic() + 0.3, 7)()
    assert 0.25 < time.monotonic() - started < 5
    assert cleaned == [True]


@pytest_twisted.ensureDeferred
async def test_a_test_that_finishes_is_left_alone():
    async def quick():
        return 42
    assert await timebound.bounded(quick, time.monotonic() + 5, 7)() == 42
    assert timebound.bounded(lambda: "plain", time.monotonic() + 5, 7)() == "plain"


@pytest.mark.timeout(123)
def test_the_limit_is_the_tests_own_or_the_default(request):
    assert timebound.timeout_of(request.node) == 123
    assert timebound.timeout_of(request.node.parent) == float(
        request.config.getini("timeout"))
