"""BlobStore: blobs received on the data channel, waited for by id."""
import threading
import time

from twisted.internet import defer

from ipkernel.error import KernelError


#: Refusals remembered for blobs nobody waits for yet.
MAX_FAILED = 1000


class BlobMissing(KernelError):
    """A blob did not arrive in time, or the controller does not have it."""


class BlobStore:
    """Blobs by id (16 bytes), filled by data-channel threads and read in
    the reactor thread.

    ``ttl``: seconds an unclaimed blob is kept; ``max_bytes``: total kept
    (the oldest are dropped first).  Both bound the memory held by blobs
    whose command never came (a failed call, a lost client).
    """

    def __init__(self, reactor=None, ttl=600.0, max_bytes=8 << 30):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._blobs = {}    # id -> (buffer, arrival time), insertion ordered
        self._bytes = 0
        self._waiters = {}  # id -> [Deferred]  (reactor thread only)
        self._failed = {}   # id -> message, for ids the controller refused

    # -- any thread ------------------------------------------------------------------

    def put(self, blob_id, buffer):
        """Keep ``buffer`` under ``blob_id`` and wake its waiters."""
        self._keep(blob_id, buffer)
        self.reactor.callFromThread(self._wake, blob_id)

    def _keep(self, blob_id, buffer):
        with self._lock:
            old = self._blobs.pop(blob_id, None)
            if old is not None:
                self._bytes -= len(old[0])
            self._blobs[blob_id] = (buffer, time.monotonic())
            self._bytes += len(buffer)
            self._expire_locked()

    def fail(self, blob_id, message):
        """The blob will not come: fail its waiters with BlobMissing(``message``)."""
        self._refuse(blob_id, message)
        self.reactor.callFromThread(self._wake, blob_id)

    def _refuse(self, blob_id, message):
        with self._lock:
            self._failed[blob_id] = message
            while len(self._failed) > MAX_FAILED:  # nobody may ever ask for them
                del self._failed[next(iter(self._failed))]

    def take(self, blob_id):
        """Remove and return the blob, or None."""
        with self._lock:
            entry = self._blobs.pop(blob_id, None)
            if entry is None:
                return None
            self._bytes -= len(entry[0])
            return entry[0]

    def _expire_locked(self):
        now = time.monotonic()
        for blob_id in list(self._blobs):
            buffer, arrived = self._blobs[blob_id]
            if now - arrived <= self.ttl and self._bytes <= self.max_bytes:
                break
            del self._blobs[blob_id]
            self._bytes -= len(buffer)

    @property
    def nbytes(self):
        """Bytes held now."""
        return self._bytes

    def __len__(self):
        return len(self._blobs)

    # -- reactor thread ----------------------------------------------------------------

    def put_here(self, blob_id, buffer):
        """:meth:`put` from the reactor thread (its waiters get it at once)."""
        self._keep(blob_id, buffer)
        self._wake(blob_id)

    def fail_here(self, blob_id, message):
        """:meth:`fail` from the reactor thread."""
        self._refuse(blob_id, message)
        self._wake(blob_id)

    def wait(self, blob_id, timeout):
        """A Deferred firing with the blob (removed from the store) once it has
        arrived; fails with BlobMissing after ``timeout`` seconds."""
        buffer = self.take(blob_id)
        if buffer is not None:
            return defer.succeed(buffer)
        message = self._pop_failure(blob_id)
        if message is not None:
            return defer.fail(BlobMissing(message))
        d = defer.Deferred()
        self._waiters.setdefault(blob_id, []).append(d)

        def timed_out(failure, _):
            failure.trap(defer.CancelledError)
            waiters = self._waiters.get(blob_id, [])
            if d in waiters:
                waiters.remove(d)
            raise BlobMissing(f"bulk data {blob_id.hex()} did not arrive within {timeout:g} s "
                              f"(is the data channel to the controller up?)")
        return d.addTimeout(timeout, self.reactor, onTimeoutCancel=timed_out)

    def _pop_failure(self, blob_id):
        with self._lock:
            return self._failed.pop(blob_id, None)

    def _wake(self, blob_id):
        waiters = [d for d in self._waiters.pop(blob_id, []) if not d.called]
        if not waiters:
            return
        buffer = self.take(blob_id)
        message = self._pop_failure(blob_id) if buffer is None else None
        for k, d in enumerate(waiters):
            if buffer is not None and k == 0:
                d.callback(buffer)
            elif buffer is not None:
                d.errback(BlobMissing(f"bulk data {blob_id.hex()} was claimed twice"))
            else:
                d.errback(BlobMissing(message or f"bulk data {blob_id.hex()} was dropped"))

    def fail_all(self, message):
        """Fail every waiter (the data channel closed)."""
        waiting, self._waiters = self._waiters, {}
        for ds in waiting.values():
            for d in ds:
                if not d.called:
                    d.errback(BlobMissing(message))


class Pieces:
    """The blobs a connection receives in pieces (PART messages), until each
    is whole or aborted.  Used by one reading thread (no lock)."""

    def __init__(self, new_buffer):
        self._new_buffer = new_buffer
        self._open = {}  # blob id -> [buffer, bytes received]

    def view(self, blob_id, at, size, n):
        """Where the ``n`` bytes of a PART at offset ``at`` of a blob of
        ``size`` bytes go (a memoryview); ValueError if they do not follow
        what came before."""
        entry = self._open.get(blob_id)
        if entry is None:
            if at != 0:
                raise ValueError(f"a piece of bulk data {blob_id.hex()} at {at} came first")
            entry = self._open[blob_id] = [self._new_buffer(size), 0]
        if at != entry[1] or len(entry[0]) != size or at + n > size:
            raise ValueError(f"a piece of bulk data {blob_id.hex()} is out of step")
        return memoryview(entry[0])[at:at + n]

    def received(self, blob_id, n):
        """``n`` more bytes came; the whole buffer once the blob is complete, else None."""
        entry = self._open[blob_id]
        entry[1] += n
        if entry[1] < len(entry[0]):
            return None
        del self._open[blob_id]
        return entry[0]

    def abort(self, blob_id):
        """Drop what came of ``blob_id``."""
        self._open.pop(blob_id, None)

    def clear(self):
        self._open.clear()

    @property
    def nbytes(self):
        """Bytes held by incomplete blobs."""
        return sum(len(buf) for buf, _ in self._open.values())

    def __len__(self):
        return len(self._open)
