"""The controller reading a client's bulk data straight from its memory.

On one host a client's blob would otherwise cross a loopback TCP socket
(about 16 ms of the client's CPU and 10 ms of the controller's per 100 MB
here) only to be read again by the controller and passed on.  Linux lets a
process read another one's memory with ``process_vm_readv`` (the "cross
memory attach" MPI libraries use on one node), one copy and no socket, when
it may ptrace it: same user, and under Yama's ``ptrace_scope`` 1 only if the
client named it with ``prctl(PR_SET_PTRACER)``.

So on a plain (loopback) data connection the controller offers it in its
welcome: its pid and a fresh random *proof*.  A client that takes the offer
keeps the proof in its memory and, for a blob of :data:`MEMORY_MIN` bytes or
more, sends only where the blob lies (its pid, the address of the proof,
``[address, length]`` of each buffer), then waits, touching nothing, until
the controller answers TAKEN.  The controller first reads the proof from
that pid at that address: only the process that holds this connection's
proof passes, so no client can make the controller read another process.
If anything fails before the first byte was passed on (no permission,
another PID namespace, a wrong proof) the answer says so and the client
sends the bytes on the socket instead, as it does from then on.
"""
import collections
import ctypes
import errno
import hmac
import os
import sys

__all__ = ["MEMORY_MIN", "MemorySource", "PROOF_SIZE", "available", "addresses",
           "allow_reader", "fresh_proof"]

#: A blob at least this big goes by a memory read when it may.
MEMORY_MIN = 2 << 20
#: Bytes of the proof.
PROOF_SIZE = 32
#: Buffers one blob may name at most.
MAX_BUFFERS = 4096

_PR_SET_PTRACER = 0x59616D61
_YAMA = "/proc/sys/kernel/yama/ptrace_scope"


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _PyBuffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p),
                ("len", ctypes.c_ssize_t), ("itemsize", ctypes.c_ssize_t),
                ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p),
                ("strides", ctypes.c_void_p), ("suboffsets", ctypes.c_void_p),
                ("internal", ctypes.c_void_p)]


_Calls = collections.namedtuple("_Calls", "readv prctl get_buffer release_buffer")


def _load():
    """The C functions used here, or None where they are not to be had."""
    if not sys.platform.startswith("linux") or sys.implementation.name != "cpython":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        readv = libc.process_vm_readv
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    readv.restype = ctypes.c_ssize_t
    readv.argtypes = [ctypes.c_int, ctypes.POINTER(_IOVec), ctypes.c_ulong,
                      ctypes.POINTER(_IOVec), ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    get_buffer = ctypes.pythonapi.PyObject_GetBuffer
    get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
    get_buffer.restype = ctypes.c_int
    release = ctypes.pythonapi.PyBuffer_Release
    release.argtypes = [ctypes.POINTER(_PyBuffer)]
    release.restype = None
    return _Calls(readv, prctl, get_buffer, release)


_calls = _load()


def available():
    """True where this process can read another's memory (Linux, CPython)."""
    return _calls is not None


def fresh_proof():
    return os.urandom(PROOF_SIZE)


def _ptrace_scope():
    try:
        with open(_YAMA) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0   # no Yama: only the usual same-user rule


def allow_reader(pid):
    """Let process ``pid`` (the controller) read this one's memory; False
    when that cannot be (Yama forbids it, or no such call here)."""
    if _calls is None:
        return False
    scope = _ptrace_scope()
    if scope == 0:
        return True
    if scope > 1:
        return False
    return _calls.prctl(_PR_SET_PTRACER, pid, 0, 0, 0) == 0


def addresses(views):
    """``[[address, length], ...]`` of contiguous byte views (which must stay
    alive, unchanged, while the controller reads them)."""
    out = []
    for view in views:
        info = _PyBuffer()
        if _calls.get_buffer(view, ctypes.byref(info), 0) != 0:  # (raises BufferError itself)
            raise BufferError("a buffer does not give its address")
        try:
            out.append([info.buf or 0, info.len])
        finally:
            _calls.release_buffer(ctypes.byref(info))
    return out


class MemorySource:
    """A blob to read from client ``pid``'s memory: ``buffers``
    (``[[address, length], ...]``) after the proof at ``proof_at`` was checked
    against ``proof``.  ValueError for a malformed request, OSError (with its
    errno) when the memory cannot be read."""

    def __init__(self, request, proof, length):
        if not isinstance(request, dict):
            raise ValueError("a memory request is not an object")
        pid, proof_at, buffers = request.get("pid"), request.get("proof"), request.get("at")
        if not (_is_count(pid) and pid > 0 and _is_count(proof_at)
                and isinstance(buffers, list) and len(buffers) <= MAX_BUFFERS
                and all(isinstance(b, list) and len(b) == 2 and all(map(_is_count, b))
                        for b in buffers)):
            raise ValueError("a memory request names no valid pid, proof or buffers")
        if sum(n for _, n in buffers) != length:
            raise ValueError(f"a memory request's buffers do not add up to {length} bytes")
        if _calls is None:
            raise OSError(errno.ENOSYS, "this controller cannot read other processes' memory")
        self.pid = pid
        self._buffers = [(a, n) for a, n in buffers if n]
        self._index = 0    # the buffer being read
        self._within = 0   # bytes of it read
        found = bytearray(PROOF_SIZE)
        self._read_at(found, [(proof_at, PROOF_SIZE)])
        if not hmac.compare_digest(bytes(found), proof):
            raise OSError(errno.EPERM, f"process {pid} does not hold this connection's proof")

    def read_into(self, view):
        """Fill ``view`` (writable bytes) with the blob's next bytes."""
        wanted, parts = len(view), []
        while wanted:
            address, n = self._buffers[self._index]
            k = min(n - self._within, wanted)
            parts.append((address + self._within, k))
            wanted -= k
            self._within += k
            if self._within == n:
                self._index += 1
                self._within = 0
        self._read_at(view, parts)

    def _read_at(self, view, parts):
        target = (ctypes.c_char * len(view)).from_buffer(view)
        base = ctypes.addressof(target)
        try:
            done = 0
            while parts:
                batch = parts[:1024]   # (IOV_MAX)
                want = sum(n for _, n in batch)
                local = _IOVec(base + done, want)
                remote = (_IOVec * len(batch))(*[_IOVec(a, n) for a, n in batch])
                got = _calls.readv(self.pid, ctypes.byref(local), 1, remote, len(batch), 0)
                if got < 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"reading process {self.pid}'s memory: "
                                        f"{os.strerror(code)}")
                if got < want:   # a partial read stops at the first unreadable page
                    raise OSError(errno.EFAULT, f"process {self.pid}'s buffer "
                                                f"ends early (after {done + got} bytes)")
                done += want
                parts = parts[1024:]
        finally:
            del target   # (it holds an export of the view)


def _is_count(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0
