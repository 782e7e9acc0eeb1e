"""ResultTable: a TaskController's finished results, kept compactly.

A controller may hold 100,000 finished results.  Kept as Python objects,
each small map result costs about 500 bytes in several objects (a tuple, a
Serialized, its frame list, metadata dict and memoryview, the dict entry).
CPython places those in its small-object arenas, and an arena goes back to
the system only when every object in it is gone: the few long-lived objects
the controller makes meanwhile (Foolscap and reactor bookkeeping) pin most
of the arenas after a clear, and the memory stays resident.

So a plain result (one pickled frame of at most :data:`COMPACT_MAX` bytes,
no metadata), and a StringTask's successful result with such a payload,
is kept as bytes in one shared buffer, located through arrays indexed by
task id: no Python object per result, only a few large blocks that the C
allocator can give back.  Any other result (failures, arrays, big values)
is kept as it is.
"""
import struct
from array import array

from ipkernel.serialize import Serialized

#: Largest frame (bytes) kept in the shared buffer; larger ones are their own
#: allocation anyway, and are not worth copying.
COMPACT_MAX = 4096
#: Task ids per page of the index.
PAGE = 1024
#: Task ids per page of an :class:`IdSet` (8 KB of bits).
BITMAP_IDS = 65536
_ABSENT = -1  # start of a slot without a result
_OBJECT = -1  # size of a slot whose result is in _objects
# A record in the buffer starts with its kind: a map result's frame follows;
# a StringTask result has _STRING_HEAD, then the submitted and completed
# times (a length byte and UTF-8 each), then its payload's frame.
_MAP, _STRING = b"\x00", 1
_STRING_HEAD = struct.Struct("<Bqd")  # kind, engine id, duration


def _fc():
    from ipkernel.task import fc  # late: fc imports this module
    return fc


def plain_frame(value):
    """The one frame of ``value`` when it is a plain small pickle (a
    Serialized of one frame of at most :data:`COMPACT_MAX` bytes, without
    metadata) as a bytes-like object, else None: such a value is fully
    described by its frame, so it can be kept as bytes alone."""
    if type(value) is not Serialized:
        return None
    if value.type_descriptor != "pickle" or value.metadata or len(value.frames) != 1:
        return None
    frame = value.frames[0]
    if type(frame) is not bytes:
        try:
            frame = memoryview(frame).cast("B")
        except TypeError:  # not a plain contiguous buffer
            return None
    return frame if len(frame) <= COMPACT_MAX else None


def _string_record(value):
    """A StringTask's result as the parts of a record for the buffer, or None
    to keep it as is."""
    fc = _fc()
    if type(value) is not fc.WireResult or value.failure is not None:
        return None
    frame = plain_frame(value.payload)
    if (frame is None or type(value.engineid) is not int or type(value.duration) is not float
            or type(value.submitted) is not str or type(value.completed) is not str):
        return None
    times = [t.encode() for t in (value.submitted, value.completed)]
    if max(map(len, times)) > 255:
        return None
    return [_STRING_HEAD.pack(_STRING, value.engineid, value.duration),
            bytes((len(times[0]),)), times[0], bytes((len(times[1]),)), times[1], frame]


def _from_record(record, taskid):
    """The ``(success, value)`` a record in the buffer stands for."""
    if record[0] == _MAP[0]:
        return True, Serialized(bytes(record[1:]))
    _, engineid, duration = _STRING_HEAD.unpack_from(record)
    pos = _STRING_HEAD.size
    times = []
    for _ in range(2):
        end = pos + 1 + record[pos]
        times.append(record[pos + 1:end].decode())
        pos = end
    tr = _fc().WireResult(Serialized(bytes(record[pos:])), engineid)
    tr.taskid = taskid
    tr.submitted, tr.completed = times
    tr.duration = duration
    return True, tr


class _Page:
    """Slots of :data:`PAGE` consecutive task ids: ``locs[2k]`` is the
    start of id k's record in the buffer (or _ABSENT), ``locs[2k + 1]`` its
    size (or _OBJECT)."""

    __slots__ = ("locs", "count")

    def __init__(self):
        self.locs = array("q", [_ABSENT, 0]) * PAGE
        self.count = 0


class ResultTable:
    """Finished results by task id: ``(success, value)``, oldest first.

    Like a dict for ``in``, ``len``, ``[taskid]`` and iteration (ids in the
    order they were added); :meth:`add`, :meth:`discard`, :meth:`pop_oldest`
    and :meth:`clear` change it.  A compact result comes back as an equal
    copy (a Serialized whose frame is bytes; a new WireResult).  A task id
    is added at most once (task ids are never reused).
    """

    def __init__(self):
        self._reset()

    def _reset(self):
        self._pages = {}
        self._objects = {}
        self._data = bytearray()
        self._dead = 0        # bytes in _data of results no longer kept
        self._order = array("q")
        self._head = 0        # _order[:_head] were popped already
        self._len = 0

    # -- reading ----------------------------------------------------------------------

    def _slot(self, taskid):
        """``(page, index)`` of ``taskid`` if it has a result, else ``(None, 0)``."""
        if not isinstance(taskid, int) or taskid < 0:
            return None, 0
        page = self._pages.get(taskid // PAGE)
        k = 2 * (taskid % PAGE)
        if page is None or page.locs[k] == _ABSENT:
            return None, 0
        return page, k

    def __len__(self):
        return self._len

    def __contains__(self, taskid):
        return self._slot(taskid)[0] is not None

    def __getitem__(self, taskid):
        page, k = self._slot(taskid)
        if page is None:
            raise KeyError(taskid)
        start, size = page.locs[k], page.locs[k + 1]
        if size == _OBJECT:
            return self._objects[taskid]
        return _from_record(self._data[start:start + size], taskid)

    def __iter__(self):
        for i in range(self._head, len(self._order)):
            taskid = self._order[i]
            if taskid in self:
                yield taskid

    def items(self):
        """``(taskid, (success, value))`` pairs, oldest first."""
        for taskid in self:
            yield taskid, self[taskid]

    def kept(self):
        """``(taskid, pair)`` oldest first, without rebuilding any value:
        ``pair`` is ``(success, value)`` for a result kept as it is, None
        for one in the buffer (always a success with no task failure)."""
        for taskid in self:
            yield taskid, self._objects.get(taskid)

    # -- changing ---------------------------------------------------------------------

    def add(self, taskid, success, value):
        """Keep the result of ``taskid`` (which has none yet)."""
        page = self._pages.get(taskid // PAGE)
        if page is None:
            page = self._pages[taskid // PAGE] = _Page()
        k = 2 * (taskid % PAGE)
        if page.locs[k] != _ABSENT:
            raise KeyError(f"task {taskid} already has a result")
        data = self._data
        start = len(data)
        frame = plain_frame(value) if success else None
        if frame is not None:
            data += _MAP
            data += frame
        else:
            record = _string_record(value) if success else None
            if record is None:
                self._objects[taskid] = (success, value)
                page.locs[k], page.locs[k + 1] = 0, _OBJECT
            else:
                data += b"".join(record)
        if len(data) > start:
            page.locs[k], page.locs[k + 1] = start, len(data) - start
        page.count += 1
        self._order.append(taskid)
        self._len += 1

    def discard(self, taskid):
        """Forget the result of ``taskid``; True if there was one."""
        page, k = self._slot(taskid)
        if page is None:
            return False
        if page.locs[k + 1] == _OBJECT:
            del self._objects[taskid]
        else:
            self._dead += page.locs[k + 1]
        page.locs[k], page.locs[k + 1] = _ABSENT, 0
        page.count -= 1
        if page.count == 0:
            del self._pages[taskid // PAGE]
        self._len -= 1
        if self._len == 0:
            self._reset()  # gives the buffers back at once
        else:
            self._tidy()
        return True

    def pop_oldest(self):
        """Forget the oldest result; return its task id (KeyError if empty)."""
        for taskid in self:
            self.discard(taskid)
            return taskid
        raise KeyError("no results")

    def clear(self):
        """Forget every result."""
        self._reset()

    def _tidy(self):
        """Rebuild the order list or the buffer once most of it is stale, so
        both stay proportional to the results kept (amortised O(1))."""
        # The prefix _order[:_head] is skipped by every iteration: drop it.
        while self._head < len(self._order) and self._order[self._head] not in self:
            self._head += 1
        if len(self._order) - self._head > 2 * self._len + PAGE:
            self._order = array("q", iter(self))
            self._head = 0
        elif self._head > len(self._order) // 2:
            self._order = self._order[self._head:]
            self._head = 0
        if self._dead > len(self._data) // 2 and self._dead > 64 * PAGE:
            self._compact_data()

    def _compact_data(self):
        data = bytearray()
        with memoryview(self._data) as view:
            for page in self._pages.values():
                locs = page.locs
                for k in range(0, 2 * PAGE, 2):
                    if locs[k] != _ABSENT and locs[k + 1] != _OBJECT:
                        start, size = locs[k], locs[k + 1]
                        locs[k] = len(data)
                        data += view[start:start + size]
        self._data = data
        self._dead = 0


class IdSet:
    """A set of task ids (ints >= 0) as bitmaps of :data:`BITMAP_IDS` ids each.

    It holds the ids of evicted results, which grow with every task a capped
    controller finishes until the next clear: one bit per id instead of an
    int object and a hash-table slot (about 60 bytes) per id.
    """

    def __init__(self, ids=()):
        self._pages = {}
        self._len = 0
        self.update(ids)

    def add(self, taskid):
        page = self._pages.get(taskid // BITMAP_IDS)
        if page is None:
            page = self._pages[taskid // BITMAP_IDS] = bytearray(BITMAP_IDS // 8)
        i = taskid % BITMAP_IDS
        if not page[i >> 3] & (1 << (i & 7)):
            page[i >> 3] |= 1 << (i & 7)
            self._len += 1

    def update(self, ids):
        for taskid in ids:
            self.add(taskid)

    def __contains__(self, taskid):
        if not isinstance(taskid, int) or taskid < 0:
            return False
        page = self._pages.get(taskid // BITMAP_IDS)
        i = taskid % BITMAP_IDS
        return page is not None and bool(page[i >> 3] & (1 << (i & 7)))

    def __len__(self):
        return self._len

    def clear(self):
        self._pages = {}
        self._len = 0
