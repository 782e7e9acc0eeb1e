"""Per-thread capture of ``sys.stdout`` and ``sys.stderr``.

Swapping ``sys.stdout`` for the duration of a command is process-wide and so
unsafe when engines run user code in their own threads.  Instead a router is
installed once as ``sys.stdout``/``sys.stderr``: writes from a thread that is
capturing go to that thread's buffer, every other write goes to the stream
that was there before.  Only Python-level writes are seen; output written by
C code or subprocesses straight to the file descriptors is not captured.

:class:`publishing` also hands each write of a thread to a callback (the
engine's live output, :mod:`ipkernel.engine.outlet`), whether or not the
thread is capturing.
"""
import io
import sys
import threading


class _Router(io.TextIOBase):
    """A text stream that sends each thread's writes to its own buffer."""

    def __init__(self, fallback, name):
        super().__init__()
        self.fallback = fallback
        self.name = name
        self.buffers = {}
        self.tees = {}  # thread ident -> callback(stream name, text)

    def _target(self):
        return self.buffers.get(threading.get_ident(), self.fallback)

    def writable(self):
        return True

    def write(self, text):
        tee = self.tees.get(threading.get_ident())
        if tee is not None and text:
            tee(self.name, text)
        return self._target().write(text)

    def flush(self):
        target = self._target()
        if target is not None:
            target.flush()

    def isatty(self):
        return False

    @property
    def encoding(self):
        return "utf-8"


_lock = threading.Lock()


def _router(name):
    current = getattr(sys, name)
    if isinstance(current, _Router):
        return current
    with _lock:
        current = getattr(sys, name)
        if not isinstance(current, _Router):
            current = _Router(current, name)
            setattr(sys, name, current)
        return current


class capture:
    """Capture this thread's output: ``with capture() as (stdout_buffer,
    stderr_buffer):``.  (A class rather than a generator: it runs around
    every command.)"""

    __slots__ = ("_ident", "_routers")

    def __enter__(self):
        out, err = io.StringIO(), io.StringIO()
        self._routers = routers = (_router("stdout"), _router("stderr"))
        self._ident = ident = threading.get_ident()
        routers[0].buffers[ident] = out
        routers[1].buffers[ident] = err
        return out, err

    def __exit__(self, *exc_info):
        ident = self._ident
        for router in self._routers:
            router.buffers.pop(ident, None)
        return False


class publishing:
    """Hand every write of this thread to ``callback(stream_name, text)``
    (``'stdout'`` or ``'stderr'``) while the block runs, besides where the
    write goes anyway.  Nested blocks: the innermost callback is used."""

    __slots__ = ("_callback", "_ident", "_routers", "_before")

    def __init__(self, callback):
        self._callback = callback

    def __enter__(self):
        self._routers = routers = (_router("stdout"), _router("stderr"))
        self._ident = ident = threading.get_ident()
        self._before = [router.tees.get(ident) for router in routers]
        for router in routers:
            router.tees[ident] = self._callback
        return self

    def __exit__(self, *exc_info):
        ident = self._ident
        for router, before in zip(self._routers, self._before):
            if before is None:
                router.tees.pop(ident, None)
            else:
                router.tees[ident] = before
        return False
