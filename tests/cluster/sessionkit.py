"""What the session scripts of tests/cluster share (they run as programs,
so their failures are AssertionErrors with a message, not pytest's)."""
import time


def check(condition, what):
    """Fail the session with ``what`` unless ``condition``."""
    if not condition:
        raise AssertionError(what)


def wait_registered(mec, engine_set, n, timeout):
    """Wait until ``n`` engines registered (return their sorted ids); fail at
    once if ``engine_set``'s launcher ended first, and after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        ids = mec.get_ids()
        if len(ids) >= n:
            return sorted(ids)
        ended = engine_set.poll()
        check(ended is None, f"the engines of {engine_set.name} ended before {n} "
                             f"registered: {ended}")
        check(time.monotonic() < deadline,
              f"only {ids} registered after {timeout:g} s: {engine_set.describe()}")
        time.sleep(0.1)
