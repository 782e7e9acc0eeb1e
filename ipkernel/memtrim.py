"""Give freed memory back to the operating system after a large release.

CPython keeps freed objects' memory in its own pools and glibc keeps freed
heap pages: after the controller forgets 50,000 results its resident size
would stay where it peaked.  :func:`release_memory` collects garbage and
asks glibc to return what it can (``malloc_trim``; nothing happens where
that does not exist).
"""
import ctypes
import ctypes.util
import gc

_libc = None


def _malloc_trim():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        except OSError:
            _libc = False
    trim = getattr(_libc, "malloc_trim", None) if _libc else None
    if trim is not None:
        trim(0)


def release_memory():
    """Collect garbage and return free heap memory to the system."""
    gc.collect()
    _malloc_trim()
