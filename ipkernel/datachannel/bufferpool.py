"""Big receive buffers, given out again once nothing refers to them.

A fresh anonymous mapping costs the zeroing of its pages as the data lands:
about a third of an engine's CPU for a 100 MB push between hosts here.  A
program that moves values of one size over and over (a solver pushing its
arrays every step, a loop pulling a result of fixed shape) would pay it
every time.  So :class:`BufferPool` remembers the mappings it made; one that
nothing else refers to any more (no array, view or value built on it:
CPython's reference count says so) is given out again for the next body of
the same size, its pages already in place.  Its old bytes are all
overwritten before anyone sees the new value: a body is handed on only once
it is whole.

Memory is not hoarded: a mapping found unused at two looks
:data:`IDLE_SECONDS` apart is let go (unmapped), and unused mappings beyond
:data:`IDLE_LIMIT` bytes are let go at once.  The looks are made by a
daemon thread that runs only while the pool remembers anything.
"""
import os
import sys
import threading
import time
import weakref

__all__ = ["BufferPool", "IDLE_LIMIT", "IDLE_SECONDS"]

#: Bytes of unused mappings kept for reuse at most.
IDLE_LIMIT = 512 << 20
#: A mapping unused for about this long (seconds) is let go.
IDLE_SECONDS = 5.0

# References to a remembered buffer that are the pool's own: the entry's
# attribute and the argument of sys.getrefcount.
_OWN_REFERENCES = 2


class _Entry:
    __slots__ = ("buf", "size", "unused_since")

    def __init__(self, buf, size):
        self.buf = buf
        self.size = size
        self.unused_since = None   # when a look first found it unused


class BufferPool:
    """Buffers of ``make(n)`` for bodies of ``n`` bytes, reused when unused.

    ``take(n)`` returns a writable buffer of exactly ``n`` bytes whose
    contents are undefined.  Thread-safe.  Where reference counts cannot
    tell (not CPython), every ``take`` makes a new buffer and nothing is
    remembered.
    """

    def __init__(self, make, idle_limit=IDLE_LIMIT, idle_seconds=IDLE_SECONDS,
                 clock=time.monotonic, looks=True):
        self._make = make
        self.idle_limit = idle_limit
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._looks = looks    # False: no thread; look() is called by the owner (tests)
        self._counts = sys.implementation.name == "cpython"
        self._lock = threading.Lock()
        self._entries = {}     # size -> [_Entry], oldest first
        self._thread = None
        if hasattr(os, "register_at_fork"):
            # A forked child has none of the parent's threads, and maybe a lock
            # some other thread held: start again with what was remembered.
            # (Through a weak reference: the hook must not keep the pool alive.)
            me = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: me() is not None and me()._after_fork())

    def take(self, n):
        """A buffer of ``n`` bytes: an unused remembered one, else a new one."""
        if not self._counts:
            return self._make(n)
        with self._lock:
            for entry in self._entries.get(n, ()):
                if self._unused(entry):
                    entry.unused_since = None
                    return entry.buf
        buf = self._make(n)
        with self._lock:
            self._entries.setdefault(n, []).append(_Entry(buf, n))
            self._keep_within_limit()
            self._start_looking()
        return buf

    def look(self):
        """Let go of what was unused at the previous look and still is."""
        with self._lock:
            now = self._clock()
            for size, entries in list(self._entries.items()):
                kept = []
                for entry in entries:
                    if self._unused(entry):   # (take() restarts the idle time of one it reuses)
                        if entry.unused_since is None:
                            entry.unused_since = now
                        elif now - entry.unused_since >= self.idle_seconds:
                            continue
                    kept.append(entry)
                if kept:
                    self._entries[size] = kept
                else:
                    del self._entries[size]
            return bool(self._entries)

    @property
    def unused_bytes(self):
        """Bytes of remembered buffers nothing else refers to now."""
        with self._lock:
            return sum(e.size for entries in self._entries.values()
                       for e in entries if self._unused(e))

    @property
    def remembered(self):
        """How many buffers the pool remembers (in use or not)."""
        with self._lock:
            return sum(len(entries) for entries in self._entries.values())

    def clear(self):
        """Forget every buffer (those still in use live on with their users)."""
        with self._lock:
            self._entries.clear()

    @staticmethod
    def _unused(entry):
        return sys.getrefcount(entry.buf) <= _OWN_REFERENCES

    def _keep_within_limit(self):
        unused = [e for entries in self._entries.values() for e in entries if self._unused(e)]
        total = sum(e.size for e in unused)
        for entry in unused:  # oldest sizes first, oldest of a size first
            if total <= self.idle_limit:
                break
            self._entries[entry.size].remove(entry)
            if not self._entries[entry.size]:
                del self._entries[entry.size]
            total -= entry.size

    def _start_looking(self):
        if not self._looks or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._keep_looking, daemon=True,
                                        name="ipkernel-buffer-pool")
        self._thread.start()

    def _keep_looking(self):
        while True:
            time.sleep(self.idle_seconds / 2)
            if not self.look():
                with self._lock:
                    if not self._entries:   # (take() may have added one meanwhile)
                        self._thread = None
                        return

    def _after_fork(self):
        self._lock = threading.Lock()
        self._thread = None
        if self._entries:
            self._start_looking()
