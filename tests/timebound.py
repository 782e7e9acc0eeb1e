"""A time bound on a test's Deferred, below pytest-timeout's alarm.

pytest-timeout's SIGALRM goes off inside the reactor's loop when a
pytest-twisted test awaits a Deferred that never fires: the reactor logs
the exception and waits on, and the test hangs past its timeout.
``tests/conftest.py`` wraps each test function with :func:`bounded`, so its
Deferred is cancelled at :data:`BOUND_SHARE` of the test's timeout and the
test fails at once with a TimeoutError saying so.
"""
import functools
import inspect
import time

from twisted.internet import defer, reactor

#: Share of a test's timeout after which its Deferred is cancelled (the rest
#: is for its teardown, before pytest-timeout's alarm).
BOUND_SHARE = 0.9


def timeout_of(item):
    """The test's pytest-timeout limit in seconds (0: none)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout")
    else:
        value = item.config.getini("timeout")
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def bounded(func, deadline, limit):
    """``func`` whose Deferred (or coroutine) is cancelled at ``deadline``
    (monotonic) with a TimeoutError naming ``limit``."""
    @functools.wraps(func)
    def call(*args, **kwargs):
        result = func(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = defer.ensureDeferred(result)
        if not isinstance(result, defer.Deferred):
            return result
        seconds = max(deadline - time.monotonic(), 0.5)

        def timed_out(outcome, _timeout):
            raise defer.TimeoutError(
                f"the test did not finish within {BOUND_SHARE:.0%} of its {limit:g} s "
                f"timeout: it awaits something that never came (bound each await with "
                f"addTimeout or awaiting.within to name what)")
        return result.addTimeout(seconds, reactor, onTimeoutCancel=timed_out)
    return call
