"""Where a TaskController keeps task ids, unfinished tasks and finished results.

Two stores share one small interface:

* :class:`MemoryTaskStore` keeps nothing beyond the controller's own memory
  (the default: a controller restart forgets every task).
* :class:`SQLiteTaskStore` writes through to an SQLite file (WAL mode), so
  ids keep counting up, unfinished tasks run again and finished results are
  served again after a controller restart.

Only opaque data is stored.  :func:`encode` turns plain data holding
Serialized frames and ErrorRecords into bytes (JSON, frames in base64) and
:func:`decode` turns it back; neither ever unpickles anything.
"""
import base64
import json
import os
import sqlite3

from ipkernel.serialize import Serialized
from ipkernel.wire import ErrorRecord


# -- opaque encoding ------------------------------------------------------------------


def _plain(obj):
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$b": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, Serialized):
        return {"$s": [obj.type_descriptor, _plain(obj.metadata),
                       [_plain(f) for f in obj.frames]]}
    if isinstance(obj, ErrorRecord):
        return {"$e": _plain(obj.state())}
    if isinstance(obj, (list, tuple)):
        items = [_plain(v) for v in obj]
        return items if isinstance(obj, list) else {"$t": items}
    if isinstance(obj, dict):
        return {"$d": [[_plain(k), _plain(v)] for k, v in obj.items()]}
    raise TypeError(f"cannot store a {type(obj).__name__} opaquely")


def _unplain(obj):
    if isinstance(obj, list):
        return [_unplain(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    (tag, value), = obj.items()
    if tag == "$b":
        return base64.b64decode(value)
    if tag == "$s":
        td, md, frames = value
        return Serialized([_unplain(f) for f in frames], td, _unplain(md))
    if tag == "$e":
        return ErrorRecord(**_unplain(value))
    if tag == "$t":
        return tuple(_unplain(v) for v in value)
    if tag == "$d":
        return {_unplain(k): _unplain(v) for k, v in value}
    raise ValueError(f"unknown tag {tag!r} in stored data")


def encode(obj):
    """Plain data (with Serialized / ErrorRecord leaves) -> bytes, without pickling."""
    return json.dumps(_plain(obj), separators=(",", ":")).encode("utf-8")


def decode(data):
    """The inverse of :func:`encode`; never unpickles."""
    return _unplain(json.loads(bytes(data).decode("utf-8")))


# -- stores -----------------------------------------------------------------------------


class LoadedState:
    """What a store remembers at start: ``next_id``, ``unfinished`` as a list
    of ``(taskid, state, spec)``, ``finished`` as ``(taskid, result)`` (both
    oldest first; spec and result as stored, already decoded) and the ids of
    ``evicted`` results."""

    def __init__(self, next_id=0, unfinished=(), finished=(), evicted=()):
        self.next_id = next_id
        self.unfinished = list(unfinished)
        self.finished = list(finished)
        self.evicted = list(evicted)


class MemoryTaskStore:
    """The store that keeps nothing: every method is a no-op.

    ``persistent`` is False, so the controller does not bother encoding."""

    persistent = False

    def load(self):
        """What was kept: always an empty :class:`LoadedState`."""
        return LoadedState()

    def add(self, taskid, spec):
        """Task ``taskid`` was submitted; ``spec`` is plain data or None (not storable)."""

    def add_many(self, tasks):
        """Several :meth:`add` at once: ``tasks`` is a list of ``(taskid, spec)``."""

    def update(self, taskid, spec):
        """Task ``taskid`` goes on as ``spec`` (retries used, or its recovery task)."""

    def evict(self, taskids):
        """The results of ``taskids`` were dropped by the cap: remember only that."""

    def set_state(self, taskid, state):
        """Task ``taskid`` is now ``'queued'`` or ``'running'``."""

    def finish(self, taskid, result):
        """Task ``taskid`` finished; ``result`` is plain data or None (not storable)."""

    def delete(self, taskids=None):
        """Forget the finished (or evicted) results of ``taskids`` (None: all of them)."""

    def close(self):
        """Release the store."""


class SQLiteTaskStore(MemoryTaskStore):
    """A store in the SQLite file ``path`` (made, with its directory, if missing).

    Every write is one short transaction in the calling thread (WAL mode,
    ``synchronous=NORMAL``), so the reactor is held for a moment only.
    """

    persistent = True

    def __init__(self, path):
        self.path = str(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)")
            self.db.execute("CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, "
                            "state TEXT NOT NULL, spec BLOB, result BLOB)")
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('next_id', 0)")

    def _write(self, sql, *args):
        with self.db:  # one short transaction
            self.db.execute(sql, *args)

    def load(self):
        """Read back ids, unfinished tasks and finished results (see :class:`LoadedState`)."""
        (next_id,), = self.db.execute("SELECT value FROM meta WHERE key='next_id'")
        unfinished, finished, evicted = [], [], []
        for taskid, state, spec, result in self.db.execute(
                "SELECT id, state, spec, result FROM tasks ORDER BY id"):
            if state == "finished":
                finished.append((taskid, decode(result)))
            elif state == "evicted":
                evicted.append(taskid)
            else:
                unfinished.append((taskid, state, decode(spec)))
        return LoadedState(int(next_id), unfinished, finished, evicted)

    def add(self, taskid, spec):
        self.add_many([(taskid, spec)])

    def add_many(self, tasks):
        if not tasks:
            return
        with self.db:
            self.db.execute("UPDATE meta SET value=MAX(value, ?) WHERE key='next_id'",
                            (max(taskid for taskid, _ in tasks) + 1,))
            self.db.executemany("INSERT OR REPLACE INTO tasks VALUES (?, 'queued', ?, NULL)",
                                [(taskid, encode(spec)) for taskid, spec in tasks
                                 if spec is not None])

    def update(self, taskid, spec):
        if spec is None:
            self._write("DELETE FROM tasks WHERE id=?", (taskid,))
        else:
            self._write("UPDATE tasks SET spec=? WHERE id=? AND state IN ('queued', 'running')",
                        (encode(spec), taskid))

    def evict(self, taskids):
        with self.db:
            self.db.executemany("UPDATE tasks SET state='evicted', result=NULL "
                                "WHERE id=? AND state='finished'", [(i,) for i in taskids])

    def set_state(self, taskid, state):
        self._write("UPDATE tasks SET state=? WHERE id=? AND state!='finished'", (state, taskid))

    def finish(self, taskid, result):
        if result is None:
            self._write("DELETE FROM tasks WHERE id=?", (taskid,))
        else:
            self._write("UPDATE tasks SET state='finished', spec=NULL, result=? WHERE id=?",
                        (encode(result), taskid))

    def delete(self, taskids=None):
        if taskids is None:
            self._write("DELETE FROM tasks WHERE state IN ('finished', 'evicted')")
            return
        with self.db:
            self.db.executemany("DELETE FROM tasks WHERE id=? AND state IN ('finished', "
                                "'evicted')", [(i,) for i in taskids])

    def close(self):
        self.db.close()


def open_store(kind, cluster_dir=None):
    """``'memory'`` -> MemoryTaskStore; ``'sqlite'`` -> SQLiteTaskStore in
    ``<cluster_dir>/db/tasks.sqlite``."""
    if kind == "memory":
        return MemoryTaskStore()
    if kind == "sqlite":
        if cluster_dir is None:
            raise ValueError("an SQLite task store needs a cluster directory")
        return SQLiteTaskStore(os.path.join(str(cluster_dir), "db", "tasks.sqlite"))
    raise ValueError(f"unknown task store {kind!r} (memory or sqlite)")
