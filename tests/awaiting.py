"""Helpers for awaiting Deferreds (and polling for events) in tests, always
bounded in time.

Importable from any test module (``tests/`` is on ``pythonpath``).
"""
import time

import pytest
from twisted.internet import defer, reactor

from ipkernel.error import CompositeError

#: Seconds a test waits for something that should happen soon.
WAIT = 10


def within(d, seconds=WAIT):
    """``d`` with a timeout: awaiting it fails the test instead of hanging."""
    assert isinstance(d, defer.Deferred), f"expected a Deferred, got {d!r}"
    return d.addTimeout(seconds, reactor)


async def raises(exc_type, d, seconds=WAIT):
    """Await ``d`` (bounded), expecting it to fail with ``exc_type``; return the exception."""
    with pytest.raises(exc_type) as info:
        await within(d, seconds)
    return info.value


async def composite(d, seconds=WAIT):
    """Await ``d`` (bounded), expecting a CompositeError; return it."""
    return await raises(CompositeError, d, seconds)


def wait_for(check, what, timeout, interval=0.05):
    """Poll ``check()`` (outside a reactor) until it returns something true;
    return it.  Fails the test, naming ``what``, after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
