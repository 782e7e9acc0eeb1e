"""Give freed memory back to the operating system after a large release.

CPython keeps freed objects' memory in its own pools and glibc keeps freed
heap pages: after the controller forgets 50,000 results its resident size
would stay where it peaked.  :func:`release_memory` collects garbage and
asks glibc to return what it can (``malloc_trim``; nothing happens where
that does not exist).

``malloc_trim`` is looked up when this module is imported (at controller
start), not at the first release: the lookup makes a few lasting objects,
and made right after a large release they would land in the emptied
arenas and keep them from being given back.
"""
import ctypes
import gc
import threading


def _find_malloc_trim():
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, libc's among them
    except (OSError, TypeError):
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


#: glibc's ``malloc_trim``, or None where there is none (musl, macOS, Windows).
_malloc_trim = _find_malloc_trim()


def release_memory():
    """Collect garbage and return free heap memory to the system."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


#: Bytes freed since the last release before :func:`freed` releases memory.
RELEASE_AFTER = 32 << 20

_freed_lock = threading.Lock()
_freed_since = 0


def freed(nbytes):
    """Note that ``nbytes`` of kept data were just dropped; once
    :data:`RELEASE_AFTER` bytes have been dropped since the last release,
    give free heap memory back to the system.  Any thread.

    Only the heap is trimmed (no garbage collection): what callers drop is
    freed by reference counting, and a full collection for every few tens
    of MB dropped would cost a busy controller too much."""
    global _freed_since
    if nbytes <= 0:
        return
    with _freed_lock:
        _freed_since += nbytes
        due = _freed_since >= RELEASE_AFTER
        if due:
            _freed_since = 0
    if due and _malloc_trim is not None:
        _malloc_trim(0)
