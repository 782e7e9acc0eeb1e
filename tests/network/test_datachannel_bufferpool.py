"""Tier 1: the pool of big receive buffers (ipkernel.datachannel.bufferpool)."""
import gc
import os
import time

import pytest

from ipkernel.datachannel.bufferpool import BufferPool

pytestmark = pytest.mark.tier1


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def pool(**kwargs):
    """A pool of bytearrays; ``made`` counts those it made (and keeps no reference)."""
    def make(n):
        p.made += 1
        return bytearray(n)

    kwargs.setdefault("looks", False)
    p = BufferPool(make, **kwargs)
    p.made = 0
    return p


def test_a_buffer_nothing_refers_to_is_given_out_again_for_the_same_size():
    p = pool()
    first = p.take(1000)
    first[:4] = b"abcd"
    first_id = id(first)
    del first
    again = p.take(1000)
    assert id(again) == first_id and again[:4] == b"abcd"   # the same memory, not a new one
    assert p.made == 1
    other = p.take(2000)   # another size never takes it
    assert len(other) == 2000 and p.made == 2


@pytest.mark.parametrize("hold", ["itself", "a memoryview", "a slice of a view", "a numpy array"])
def test_a_buffer_still_referred_to_is_never_given_out(hold):
    p = pool()
    buf = p.take(4096)
    if hold == "itself":
        keep = buf
    elif hold == "a memoryview":
        keep = memoryview(buf)
    elif hold == "a slice of a view":
        keep = memoryview(buf)[10:20]
    else:
        np = pytest.importorskip("numpy")
        keep = np.frombuffer(buf, dtype=np.uint8)
    buf_id = id(buf)
    del buf
    second = p.take(4096)
    assert id(second) != buf_id and p.made == 2
    assert p.unused_bytes == 0
    del keep
    gc.collect()
    assert p.unused_bytes == 4096
    third = p.take(4096)
    assert id(third) == buf_id and p.made == 2


def test_an_unused_buffer_is_let_go_after_two_looks_idle_seconds_apart():
    clock = Clock()
    p = pool(clock=clock, idle_seconds=5)
    held = p.take(100)
    p.take(100)           # unused at once
    assert p.remembered == 2
    p.look()
    clock.now += 4.9
    p.look()
    assert p.remembered == 2     # unused for less than idle_seconds: kept
    clock.now += 0.1
    p.look()
    assert p.remembered == 1     # the unused one went; the held one stays
    clock.now += 100
    p.look()
    assert p.remembered == 1 and p.take(100) is not held


def test_a_buffer_used_again_between_looks_starts_its_idle_time_again():
    clock = Clock()
    p = pool(clock=clock, idle_seconds=5)
    p.take(100)
    p.look()                      # found unused
    clock.now += 4
    p.take(100)                   # reused and let go again before the next look
    clock.now += 4
    p.look()                      # unused again: its idle time starts now
    assert p.remembered == 1
    clock.now += 4
    p.look()
    assert p.remembered == 1
    clock.now += 1
    p.look()
    assert p.remembered == 0


def test_unused_buffers_beyond_the_limit_are_let_go_at_once_oldest_first():
    p = pool(idle_limit=250)
    a, b, c = p.take(100), p.take(100), p.take(100)
    ids = [id(a), id(b), id(c)]
    del a, b, c
    assert p.unused_bytes == 300     # nothing taken since: the limit is kept at the next take
    d = p.take(50)
    assert p.remembered == 3 and p.unused_bytes == 200   # the oldest 100 went
    assert id(p.take(100)) == ids[1] and d is not None and p.made == 4


def test_the_looking_thread_lets_go_of_everything_and_ends():
    p = pool(looks=True, idle_seconds=0.05)
    p.take(100)
    assert p.remembered == 1 and p._thread is not None
    deadline = time.monotonic() + 10
    while (p.remembered or p._thread is not None) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.remembered == 0 and p._thread is None
    p.take(100)                      # a new buffer starts it again
    assert p._thread is not None
    p.clear()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this system")
def test_a_forked_child_uses_the_pool_on_its_own():
    p = pool(looks=True, idle_seconds=60)
    kept = p.take(100)
    pid = os.fork()
    if pid == 0:   # the child: the lock is fresh, a looking thread runs again
        try:
            ok = (p._thread is not None and p._thread.is_alive() and p.take(200) is not None and p.remembered == 2
                  and p.take(100) is not kept)
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    p.clear()
