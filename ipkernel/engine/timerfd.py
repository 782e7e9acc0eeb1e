"""A one-shot Linux timerfd: arm and disarm cost one system call and wake nobody.

Python 3.11 has no ``os.timerfd_create``, so the two calls go through
ctypes.  :func:`make_timer` returns None where they are missing (not
Linux), and callers then do without.
"""
import ctypes
import ctypes.util
import os

_CLOCK_MONOTONIC = 1
_TFD_CLOEXEC = 0o2000000
_TFD_NONBLOCK = 0o4000


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes = (ctypes.c_int, ctypes.c_int)
    create.restype = ctypes.c_int
    # No argtypes for settime: every argument is passed as a ready ctypes
    # object (an int, a pointer made once), so nothing is converted per call.
    settime.restype = ctypes.c_int
    return create, settime


class OneShotTimer:
    """A timer whose file descriptor :attr:`fd` becomes readable when it expires.

    :meth:`arm` (re)starts it, :meth:`disarm` stops it and forgets an expiry
    not yet drained, :meth:`drain` forgets an expiry.  The descriptor does
    not block: poll it.
    """

    def __init__(self, create, settime):
        self._settime = settime
        self.fd = create(_CLOCK_MONOTONIC, _TFD_CLOEXEC | _TFD_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._fd_arg = ctypes.c_int(self.fd)
        self._flags_arg = ctypes.c_int(0)
        # The engine arms the same delay before every job and disarms after
        # it: those two specs are made once (a ctypes call costs more than
        # the system call behind it).
        self._armed_for = None
        self._armed_spec = _ITimerSpec()
        self._armed_pointer = ctypes.byref(self._armed_spec)
        self._disarm_pointer = ctypes.byref(_ITimerSpec())

    def arm(self, seconds):
        """Expire ``seconds`` from now (at least one nanosecond)."""
        if seconds != self._armed_for:
            whole = int(seconds)
            value = self._armed_spec.it_value
            value.tv_sec = whole
            nanoseconds = int((seconds - whole) * 1e9)
            value.tv_nsec = nanoseconds if whole else max(1, nanoseconds)  # 0 would disarm
            self._armed_for = seconds
        self._settime(self._fd_arg, self._flags_arg, self._armed_pointer, None)

    def disarm(self):
        """Stop the timer; an expiry not yet waited for is forgotten."""
        self._settime(self._fd_arg, self._flags_arg, self._disarm_pointer, None)

    def drain(self):
        """Forget an expiry (no-op if there is none)."""
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass

    def close(self):
        """Release the file descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def make_timer():
    """A :class:`OneShotTimer`, or None where timerfd is not available."""
    calls = _libc()
    if calls is None:
        return None
    try:
        return OneShotTimer(*calls)
    except OSError:
        return None
