"""The results engines send to the controller on the data channel.

An engine answers a command with references to its large result and sends
the blobs to the controller.  The controller routes each blob to the client
it answers with the references (:meth:`ResultBlobs.route`): it goes on as
it arrives, moved across in the kernel, without a FETCH round trip.  A blob
nobody was routed to is kept (a result fetched later) until its client's
FETCH or route, or for ``ttl`` seconds, and the blobs kept together hold
at most ``max_bytes``: see :class:`ResultBlobs`.
"""
import threading
import time
from collections import OrderedDict

from ipkernel import memtrim, sizes
from ipkernel.datachannel import frames, splice
from ipkernel.traffic import DATA_CHANNEL

#: Seconds a Foolscap fetch (take_kept) waits for a blob still on its way.
FETCH_WAIT = 60.0
#: Fetched blob ids remembered, so fetching one again fails at once.
REMEMBER_FETCHED = 10_000
#: Seconds an engine's result blob waits in its socket for its route.
ROUTE_WAIT = 0.02
#: Lost blob ids remembered (a FETCH of one gets its reason at once).
MAX_LOST = 1000


class _Kept:
    """A blob kept for a FETCH: its buffer and how much of it has arrived."""

    __slots__ = ("buf", "received", "failed", "since", "fetcher", "dropped")

    def __init__(self, length, since):
        self.buf = frames.new_buffer(length)
        self.received = 0
        self.failed = False
        self.since = since
        self.fetcher = None  # a connection waiting for the rest, spliced to it
        self.dropped = False  # evicted while arriving: the rest is read and dropped


class ResultBlobs:
    """The result blobs on their way through the controller (any thread;
    ``cv`` guards the tables).

    A kept blob is dropped ``ttl`` seconds after it came (checked as blobs
    arrive and by :meth:`expire`, which the controller calls periodically;
    ``clock`` is the time source, default ``time.monotonic``).  The kept
    blobs hold at most ``max_bytes`` together (None: no bound): the oldest
    are dropped to make room, and a blob bigger than that alone is not
    kept.  A FETCH of a dropped blob gets an ERROR saying why.
    """

    def __init__(self, ttl, max_bytes=None, clock=None):
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.clock = clock or time.monotonic
        self.cv = threading.Condition()
        self.stopped = False
        self._kept = {}        # blob id -> _Kept, for a FETCH or a route (oldest first)
        self._kept_bytes = 0
        self._dropped_bytes = 0  # dropped under cv, told to memtrim once it is released
        # blob id -> (_Conn, since, pushed): where a blob not here yet goes (pushed:
        # routed by the controller, not asked for by a FETCH)
        self._routes = {}
        self._unrouted = {}    # blob ids answered without a route (ordered)
        self._expected = {}    # blob id -> engine id, answered but not here yet (ordered)
        self._lost = {}        # blob id -> why it will never come (ordered)
        # recently delivered ids -> the connection they were routed to (None:
        # fetched): a second FETCH fails at once, one from that client is ignored
        self._fetched = OrderedDict()
        #: Result blobs sent to clients unasked (routed), and on a FETCH; FETCHes.
        self.routed = 0
        self.fetched = 0
        self.asked = 0

    def stop(self):
        """Forget everything (the server stopped); waiting threads go on."""
        with self.cv:
            self.stopped = True
            for entry in self._kept.values():
                entry.dropped = True
            for table in (self._kept, self._routes, self._unrouted, self._expected, self._lost):
                table.clear()
            self._kept_bytes = 0
            self.cv.notify_all()

    def arrived(self, conn, blob_id, length):
        """An engine's large result: on to the client it is routed to, else kept.

        The engine answers before it sends the blob, so the route usually
        comes while the blob arrives: until it does (or the answer went
        through without one, or ROUTE_WAIT passed), the body waits in the
        socket, to be moved across in the kernel rather than copied in here.
        """
        deadline = time.monotonic() + ROUTE_WAIT
        with self.cv:
            while (blob_id not in self._routes and blob_id not in self._unrouted
                   and not self.stopped):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(left)
            self._unrouted.pop(blob_id, None)
            self._expected.pop(blob_id, None)
            route = self._routes.pop(blob_id, None)
            entry = refused = None
            if route is not None and route[0].alive:
                self._delivered(blob_id, route[0] if route[2] else None)
            elif blob_id in self._lost or self.stopped:
                refused = True  # dropped before it came (its result was discarded)
            else:
                self._expire_kept(self.clock())
                refused = not self._make_room(blob_id, length)
                if not refused:
                    entry = _Kept(length, self.clock())
                    self._kept[blob_id] = entry
                    self._kept_bytes += length
                self.cv.notify_all()
        self._trim()
        if refused:
            splice.discard(conn.sock, length)  # keep the engine's stream in step
        elif entry is None:
            self._deliver(conn, route[0], blob_id, length)
        else:
            self._keep(conn, blob_id, entry)

    def _make_room(self, blob_id, length):
        """Drop the oldest kept blobs until ``length`` more bytes fit in
        ``max_bytes`` (``cv`` held); False (and ``blob_id`` lost) when it
        cannot fit at all."""
        if self.max_bytes is None:
            return True
        budget = sizes.format_size(self.max_bytes)
        if length > self.max_bytes:
            self._lose(blob_id, f"bulk data {blob_id.hex()} of a result "
                                f"({sizes.format_size(length)}) is bigger than the "
                                f"{budget} of unfetched results this controller keeps; fetch "
                                f"the result at once (block=True), in pieces, or start "
                                f"ipcontroller with a larger --unfetched-total")
            return False
        while self._kept and self._kept_bytes + length > self.max_bytes:
            oldest = next(iter(self._kept))
            self._drop_kept(oldest, f"bulk data {oldest.hex()} of a result was dropped: the "
                                    f"controller keeps at most {budget} of unfetched results "
                                    f"(all clients together) and newer ones came; fetch "
                                    f"results sooner, or start ipcontroller with a larger "
                                    f"--unfetched-total")
        return True

    def _drop_kept(self, blob_id, why):
        """Forget kept blob ``blob_id`` (``cv`` held); a FETCH of it gets ``why``."""
        entry = self._take(blob_id)
        if entry is None:
            return
        entry.dropped = True  # if it is still arriving, the rest is read and dropped
        self._lose(blob_id, why)
        self._dropped_bytes += len(entry.buf)

    def _trim(self):
        """Tell memtrim what was dropped (``cv`` not held: it may trim the heap)."""
        with self.cv:
            dropped, self._dropped_bytes = self._dropped_bytes, 0
        memtrim.freed(dropped)

    def _take(self, blob_id):
        """Remove ``blob_id`` from the kept blobs (``cv`` held); its _Kept or None."""
        entry = self._kept.pop(blob_id, None)
        if entry is not None:
            self._kept_bytes -= len(entry.buf)
        return entry

    def _expire_kept(self, now):
        if self.ttl is None:
            return
        for old in [k for k, e in self._kept.items() if now - e.since > self.ttl]:
            self._drop_kept(old, f"bulk data {old.hex()} of a result waited unfetched for "
                                 f"more than {self.ttl:g} s and was dropped (ipcontroller "
                                 f"--result-ttl); fetch results sooner")

    def expire(self, now=None):
        """Drop the kept blobs older than ``ttl`` (``now``: the clock's time)."""
        with self.cv:
            self._expire_kept(self.clock() if now is None else now)
        self._trim()

    def discard(self, blob_ids, why):
        """Nobody will ask for these blobs (their result was discarded, or its
        client went away): drop those kept, and those still to come when they
        come.  A blob already routed to a client goes on."""
        with self.cv:
            for blob_id in blob_ids:
                if blob_id in self._fetched or blob_id in self._routes:
                    continue
                if blob_id in self._kept:
                    self._drop_kept(blob_id, why)
                else:
                    self._lose(blob_id, why)
        self._trim()

    def _delivered(self, blob_id, conn):
        """Remember that ``blob_id`` went (or goes) to ``conn`` (None: on a FETCH)."""
        self._fetched[blob_id] = conn
        while len(self._fetched) > REMEMBER_FETCHED:
            self._fetched.popitem(last=False)
        self.cv.notify_all()

    def _keep(self, conn, blob_id, entry):
        """Receive a blob for a later FETCH or route, which may have it streamed
        out while it arrives."""
        length = len(entry.buf)
        view = memoryview(entry.buf)
        try:
            while entry.received < length:
                with self.cv:
                    fetcher, dropped = entry.fetcher, entry.dropped
                if dropped:  # evicted while it came: nobody will have it
                    view.release()
                    splice.discard(conn.sock, length - entry.received)
                    return
                if fetcher is not None:  # a client waits: hand the rest straight over
                    self._deliver(conn, fetcher, blob_id, length, view[:entry.received])
                    return
                k = conn.sock.recv_into(view[entry.received:],
                                        min(length - entry.received, frames.CHUNK))
                if not k:
                    raise ConnectionError("a peer closed its data channel in the middle of a blob")
                with self.cv:
                    entry.received += k
                    self.cv.notify_all()
            with self.cv:
                fetcher, entry.fetcher = entry.fetcher, None
        except BaseException:
            with self.cv:
                entry.failed = True
                if self._kept.get(blob_id) is entry:
                    self._take(blob_id)
                self.cv.notify_all()
            raise
        if fetcher is not None:  # it was asked for just as the last bytes came
            try:
                self._send_kept(fetcher, blob_id, entry)
            except OSError:
                fetcher.close()  # the client's side; this engine's stream is fine

    # -- routes (reactor thread) ----------------------------------------------------------

    def answered(self, engine_id, blob_ids, engine_gone):
        """Engine ``engine_id``'s answer referring to these blobs went through
        the controller (a reactor turn ago): those not routed to a client by
        now are kept when they come, without waiting for a route, and those
        not here yet fail when that engine goes away (at once when
        ``engine_gone``: it has no data connection)."""
        with self.cv:
            for blob_id in blob_ids:
                if (blob_id in self._fetched or blob_id in self._kept
                        or blob_id in self._lost):
                    continue  # here already (or lost): nothing to wait for
                if blob_id not in self._routes:
                    self._unrouted[blob_id] = None
                self._expected[blob_id] = engine_id
                if engine_gone:
                    self._lose(blob_id, f"engine {engine_id} has no data channel; bulk data "
                                        f"{blob_id.hex()} of its result is lost")
            for table in (self._unrouted, self._expected):
                while len(table) > REMEMBER_FETCHED:  # their blobs never came
                    del table[next(iter(table))]
            self.cv.notify_all()

    def _lose(self, blob_id, message):
        """``blob_id`` will never come (``cv`` held): its routed client gets
        an ERROR, a later FETCH or route learns it at once."""
        self._expected.pop(blob_id, None)
        self._unrouted.pop(blob_id, None)
        route = self._routes.pop(blob_id, None)
        if route is not None:
            route[0].later(lambda: send_error(route[0], blob_id, message))
        self._lost[blob_id] = message
        while len(self._lost) > MAX_LOST:
            del self._lost[next(iter(self._lost))]
        self.cv.notify_all()

    def route(self, blob_id, conn):
        """Send the engine's result blob ``blob_id`` to the client connection
        ``conn`` (the controller answers that client with a reference to it)
        without waiting for the client's FETCH.

        True when it will be sent (as it arrives, or at once from the client
        connection's sending thread when it is here whole); False when the
        client has to FETCH it (the blob is gone or already on its way).
        """
        with self.cv:
            if blob_id in self._fetched or blob_id in self._routes or blob_id in self._lost:
                return False
            entry = self._kept.get(blob_id)
            if entry is None:  # not here yet: it goes on the moment it comes
                self._add_route(blob_id, conn, True)
                self.routed += 1
                return True
            if entry.failed or entry.fetcher is not None:
                return False
            self._take(blob_id)
            self._delivered(blob_id, conn)
            self.routed += 1
            if entry.received == len(entry.buf):  # here whole: sent from the client's thread
                conn.later(lambda: self._send_kept(conn, blob_id, entry))
            else:  # arriving: the receiving thread sends it (see _keep)
                entry.fetcher = conn
                self.cv.notify_all()
            return True

    def _add_route(self, blob_id, conn, pushed):
        """``blob_id`` goes to ``conn`` when it comes (``cv`` held)."""
        now = time.monotonic()
        while self._routes:  # the blobs of routes this old will not come
            first = next(iter(self._routes))
            if now - self._routes[first][1] <= self.ttl and len(self._routes) < REMEMBER_FETCHED:
                break
            del self._routes[first]
        self._routes[blob_id] = (conn, now, pushed)
        self.cv.notify_all()

    # -- FETCH ----------------------------------------------------------------------------

    def fetch(self, conn, blob_id):
        """A client's FETCH of ``blob_id`` (its connection's thread)."""
        with self.cv:
            self.asked += 1
            lost = self._lost.pop(blob_id, None)
            if lost is not None:
                self._delivered(blob_id, None)  # told once; asking again: "already fetched"
        if lost is not None:
            send_error(conn, blob_id, lost)
            return
        with self.cv:
            if (blob_id not in self._kept and blob_id not in self._fetched
                    and blob_id not in self._routes and not self.stopped):
                self._add_route(blob_id, conn, False)  # not here yet: sent as it comes
                return
            route = self._routes.get(blob_id)
            if (route is not None and route[0] is conn) or self._fetched.get(blob_id) is conn:
                return  # already on its way to this client
            entry = self._take(blob_id)
            if entry is not None:
                self._delivered(blob_id, None)
                self.fetched += 1
            if entry is not None and entry.received < len(entry.buf):
                entry.fetcher = conn  # the receiving thread delivers it (see _keep)
                self.cv.notify_all()
                return
        if entry is None:
            send_error(conn, blob_id, f"the controller has no bulk data {blob_id.hex()} "
                                       f"(already fetched, expired, or never sent)")
            return
        self._send_kept(conn, blob_id, entry)

    def take_kept(self, blob_id, timeout=FETCH_WAIT):
        """The whole blob kept for a FETCH, once it has arrived, or None.

        Blocks (call it from a thread, not the reactor): the Foolscap
        fallback for clients that cannot reach the data port.
        """
        deadline = time.monotonic() + timeout
        with self.cv:
            def ready():
                entry = self._kept.get(blob_id)
                return (self.stopped or blob_id in self._fetched or blob_id in self._lost
                        or (entry is not None and (entry.failed
                                                   or entry.received == len(entry.buf))))
            self.cv.wait_for(ready, max(0.0, deadline - time.monotonic()))
            entry = self._kept.get(blob_id)
            if entry is None or entry.failed or entry.received < len(entry.buf):
                return None
            self._take(blob_id)
            self._delivered(blob_id, None)
            return entry.buf

    # -- delivering -------------------------------------------------------------------------

    def _send_kept(self, conn, blob_id, entry):
        """DELIVER a kept blob that has arrived whole to ``conn``."""
        with conn.send_lock:
            frames.send_all(conn.sock, [frames.header(frames.DELIVER, blob_id, len(entry.buf)),
                                        entry.buf])
        DATA_CHANNEL.bytes_out += len(entry.buf)

    def _deliver(self, source, dest, blob_id, length, prefix=None):
        """DELIVER a blob to ``dest`` while it arrives on ``source``: first the
        ``prefix`` already received, then the rest moved across in the kernel
        when it can be.  A destination that fails is closed (the rest of the
        blob is read and dropped); a source that fails closes the destination
        too, since it got part of a body (its reader then fails its waiters)."""
        left = length - (len(prefix) if prefix is not None else 0)
        DATA_CHANNEL.bytes_out += length
        with dest.send_lock:
            try:  # the header waits (MSG_MORE) to leave with the first bytes of the body
                frames.send_all(dest.sock, [frames.header(frames.DELIVER, blob_id, length),
                                            prefix if prefix is not None else b""],
                                more=left > 0)
            except OSError:
                pass
            else:
                try:
                    splice.forward(source.sock, dest.sock, left)
                    return
                except splice.DestinationGone as gone:
                    left = gone.left
                except BaseException:
                    dest.close()
                    raise
        dest.close()
        splice.discard(source.sock, left)  # keep the engine's stream in step

    def engine_gone(self, engine_id):
        """The results engine ``engine_id`` answered with but did not send will
        not come: their clients get an ERROR now rather than waiting."""
        with self.cv:
            ids = [b for b, e in self._expected.items() if e == engine_id]
            for blob_id in ids:
                self._lose(blob_id, f"engine {engine_id} went away before it sent bulk data "
                                    f"{blob_id.hex()} of its result")

    def lost_reason(self, blob_id):
        """Why ``blob_id`` will not come (dropped, expired, its engine gone), or None."""
        with self.cv:
            return self._lost.get(blob_id)

    @property
    def kept_bytes(self):
        """Bytes of blobs waiting for a FETCH."""
        with self.cv:
            return self._kept_bytes


def send_error(conn, blob_id, message):
    """Tell ``conn`` that blob ``blob_id`` will not come, and why."""
    with conn.send_lock:
        conn.send(frames.header(frames.ERROR, blob_id, 0, {"message": message}))
