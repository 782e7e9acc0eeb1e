"""What the dashboard shows, gathered from a running controller (no web here).

:class:`ClusterWatch` reads the controller's own state when asked for a
:meth:`~ClusterWatch.snapshot`: the registered engines (from their queues:
the command each runs and since when, how many wait), the task farm's
counts, the clients' sessions.  Every :data:`SAMPLE_EVERY` seconds it
samples what needs a history (a few counters read: nearly free): tasks
finished per second, bytes per second on the lanes and the data channel.
While someone watches (a page's live stream is open, or the JSON API was
asked in the last :data:`WATCH_IDLE` seconds) it also asks each engine for
its memory and CPU (answered from the engine's network thread); nobody
watching, no questions to engines.

Everything kept is bounded: :data:`HISTORY` samples (ten minutes), the last
:data:`MAX_ERRORS` failures with their engine tracebacks, the last
:data:`MAX_GONE` engines that went away (shown as dead for
:data:`GONE_KEPT` seconds).
"""
import itertools
import os
import socket
import time
import traceback
from collections import deque

from twisted.internet import task
from twisted.logger import Logger

from ipkernel import traffic
from ipkernel.error import TRACEBACK_ATTR

log = Logger()

#: Seconds between samples while someone watches.
SAMPLE_EVERY = 1.0
#: Samples kept (tasks/s and bytes/s history): ten minutes.
HISTORY = 600
#: Seconds after the last API request that engines are still asked for their usage.
WATCH_IDLE = 30.0
#: Recent failures kept.
MAX_ERRORS = 100
#: Engines that went away kept (shown as dead).
MAX_GONE = 64
#: Seconds an engine that went away is shown.
GONE_KEPT = 600.0
#: Characters of a command's description kept.
COMMAND_CHARS = 200
#: Characters of a traceback kept (its end).
TRACEBACK_CHARS = 8000

__all__ = ["ClusterWatch", "SAMPLE_EVERY", "HISTORY", "WATCH_IDLE", "MAX_ERRORS", "MAX_GONE",
           "GONE_KEPT", "COMMAND_CHARS", "TRACEBACK_CHARS"]


def _traceback_text(failure):
    exc = getattr(failure, "value", failure)
    text = getattr(exc, TRACEBACK_ATTR, None)
    if not text and isinstance(getattr(exc, "traceback", None), str):
        text = exc.traceback   # a wire ErrorRecord, or a RemoteError
    if not text:
        try:
            text = "".join(traceback.format_exception(exc))
        except Exception:  # noqa: B902 - an exception that cannot be formatted
            text = repr(exc)
    return text[-TRACEBACK_CHARS:]


def _summary(failure):
    exc = getattr(failure, "value", failure)
    name = getattr(exc, "ename", None) or type(exc).__name__
    value = getattr(exc, "evalue", None)
    value = str(exc) if value is None else value
    return f"{name}: {value}"[:COMMAND_CHARS] if value else name


class ClusterWatch:
    """The dashboard's view of ``node`` (a ControllerNode, or anything with
    its ``controller``, ``task_controller`` and ``mec`` attributes)."""

    def __init__(self, node, clock=None, sample_every=SAMPLE_EVERY, history=HISTORY,
                 now=time.time):
        if clock is None:
            from twisted.internet import reactor as clock
        self.node = node
        self.clock = clock
        self.sample_every = sample_every
        self.now = now
        self.started = now()
        self.errors = deque(maxlen=MAX_ERRORS)
        self.gone = deque(maxlen=MAX_GONE)
        self.task_history = deque(maxlen=history)       # (time, tasks/s)
        self.channel_history = deque(maxlen=history)    # (time, lane in, out, data in, out)
        self.usage = {}          # engine id -> {"rss", "cpu" (percent), "seconds", "at"}
        self.samples_taken = 0   # appended to the histories, ever (for updates)
        self.errors_taken = 0    # appended to errors, ever (each error's "seq")
        self._last = None        # (monotonic, finished tasks, lane in, out, data in, out)
        self._watched_at = None
        #: live streams open (pages watching); the site counts them
        self.viewers = 0
        self._loop = None
        self._observed = {}      # engine id -> (queued engine, observer)
        self._infos = {}         # engine id -> its registration info (kept for when it goes)
        self.version = _version()

    # -- start and stop -------------------------------------------------------------

    def start(self):
        controller = self.node.controller
        controller.on_register_engine_do(self._registered, True)
        controller.on_unregister_engine_do(self._unregistered, True)
        for engine_id in list(controller.engines):
            self._registered(engine_id)
        tasks = getattr(self.node, "task_controller", None)
        if tasks is not None:
            tasks.failure_listeners.append(self._task_failed)
        self._start_sampling()

    def stop(self):
        controller = self.node.controller
        controller.on_register_engine_do_not(self._registered)
        controller.on_unregister_engine_do_not(self._unregistered)
        for queued, observer in self._observed.values():
            queued.unregister_failure_observer(observer)
        self._observed.clear()
        tasks = getattr(self.node, "task_controller", None)
        if tasks is not None and self._task_failed in tasks.failure_listeners:
            tasks.failure_listeners.remove(self._task_failed)
        self._stop_sampling()

    # -- events -----------------------------------------------------------------------

    def _registered(self, engine_id):
        queued = self.node.controller.engines.get(engine_id)
        if queued is None or not hasattr(queued, "register_failure_observer"):
            return
        try:
            self._infos[engine_id] = self.node.controller.engine_info(engine_id)
        except KeyError:
            pass

        def failed(failure, command):
            self._note_error(engine_id, command, failure)
        queued.register_failure_observer(failed, independent=False)  # tasks: below
        self._observed[engine_id] = (queued, failed)
        self.gone = deque((g for g in self.gone if g["id"] != engine_id), maxlen=MAX_GONE)

    def _unregistered(self, engine_id):
        queued, observer = self._observed.pop(engine_id, (None, None))
        if queued is not None:
            queued.unregister_failure_observer(observer)
        info = self._infos.pop(engine_id, None)
        self.usage.pop(engine_id, None)
        self.gone.append({"id": engine_id, "at": self.now(), "info": info})

    def _note_error(self, engine_id, command, failure, task_id=None):
        self.errors_taken += 1
        self.errors.append({"seq": self.errors_taken, "time": self.now(),
                            "engine_id": engine_id,
                            "what": command.split("(", 1)[0] if command else "task",
                            "summary": _summary(failure), "traceback": _traceback_text(failure),
                            "task_id": task_id})

    def _task_failed(self, taskid, engine_id, failure):
        self._note_error(engine_id, None, failure, task_id=taskid)

    # -- sampling ---------------------------------------------------------------------

    def watched(self):
        """Someone asked the API: ask the engines for their memory and CPU at
        each sample until :data:`~ipkernel.dashboard.collector.WATCH_IDLE`
        seconds pass without another request."""
        self._watched_at = self.clock.seconds()

    def watching(self):
        """True while a page's live stream is open or the API was asked lately."""
        return self.viewers > 0 or (self._watched_at is not None and
                                    self.clock.seconds() - self._watched_at <= WATCH_IDLE)

    def _start_sampling(self):
        if self._loop is None:
            self._loop = task.LoopingCall(self._sample)
            self._loop.clock = self.clock
            self._loop.start(self.sample_every, now=True).addErrback(
                lambda f: log.failure("dashboard sampling stopped", f))

    def _stop_sampling(self):
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        self._last = None

    def _sample(self):
        now_m, now = self.clock.seconds(), self.now()
        tasks = self._task_counts()
        finished = tasks["succeeded"] + tasks["failed"] if tasks else 0
        counters = (finished, traffic.LANES.bytes_in, traffic.LANES.bytes_out,
                    traffic.DATA_CHANNEL.bytes_in, traffic.DATA_CHANNEL.bytes_out)
        if self._last is not None:
            dt = max(now_m - self._last[0], 1e-6)
            rates = [(c - p) / dt for c, p in zip(counters, self._last[1:])]
            self.task_history.append((now, rates[0]))
            self.channel_history.append((now, *rates[1:]))
            self.samples_taken += 1
        self._last = (now_m, *counters)
        if self.watching():
            self._ask_usage()

    def _ask_usage(self):
        for engine_id, queued in list(self.node.controller.engines.items()):
            remote = getattr(queued, "engine", None)
            stats = getattr(remote, "stats", None)
            if stats is None:
                continue
            try:
                d = stats()
            except Exception:  # noqa: B902 - a connection gone: no figures this time
                continue
            d.addCallbacks(self._got_usage, lambda _: None, callbackArgs=(engine_id,))

    def _got_usage(self, answer, engine_id):
        if engine_id not in self.node.controller.engines:
            return
        at = self.clock.seconds()
        before = self.usage.get(engine_id)
        cpu = None
        if before is not None and at > before["at"]:
            cpu = max(0.0, (answer.get("cpu", 0.0) - before["seconds"]) / (at - before["at"]))
            cpu *= 100.0
        self.usage[engine_id] = {"rss": answer.get("rss"), "seconds": answer.get("cpu", 0.0),
                                 "cpu": cpu, "at": at}

    def _task_counts(self):
        tasks = getattr(self.node, "task_controller", None)
        return tasks.counts() if tasks is not None else None

    # -- the snapshot -----------------------------------------------------------------

    def snapshot(self):
        """Everything the page shows, as plain JSON-able data (see the page)."""
        return self._snapshot(None, None)

    def _snapshot(self, samples, errors):
        return {"time": self.now(),
                "controller": {"pid": os.getpid(), "host": socket.gethostname(),
                               "started": self.started, "version": self.version},
                "limits": {"history": self.task_history.maxlen, "errors": MAX_ERRORS},
                "engines": self.engines(),
                "tasks": self.tasks(samples),
                "channels": self.channels(samples),
                "clients": self.clients(),
                "errors": _newest(self.errors, errors)}

    def mark(self):
        """Where the histories and errors are now, for :meth:`update`."""
        return (self.samples_taken, self.errors_taken)

    def update(self, mark):
        """A snapshot whose histories and errors hold only what came after
        ``mark`` (from :meth:`mark`): what a page holding the snapshot of
        then adds to it (keeping the snapshot's ``limits``: so many samples
        and errors)."""
        return self._snapshot(self.samples_taken - mark[0], self.errors_taken - mark[1])

    def engines(self):
        """One dict per engine: registered ones, then those gone recently (dead)."""
        controller = self.node.controller
        now_m = time.monotonic()
        rows = []
        for engine_id in sorted(controller.engines):
            queued = controller.engines[engine_id]
            try:
                info = controller.engine_info(engine_id)
            except KeyError:
                info = {}
            command = getattr(queued, "current", None)
            started = getattr(command, "started", None)
            usage = self.usage.get(engine_id, {})
            rows.append({"id": engine_id, "host": info.get("ip"), "pid": info.get("pid"),
                         "state": "busy" if command is not None else "idle",
                         "command": repr(command)[:COMMAND_CHARS] if command is not None
                         else None,
                         "running_for": now_m - started if started is not None else None,
                         "queue": len(getattr(queued, "queued", ())),
                         "rss": usage.get("rss"), "cpu": usage.get("cpu")})
        cutoff = self.now() - GONE_KEPT
        for gone in self.gone:
            if gone["at"] >= cutoff and gone["id"] not in controller.engines:
                info = gone["info"] or {}
                rows.append({"id": gone["id"], "host": info.get("ip"), "pid": info.get("pid"),
                             "state": "dead", "command": None, "running_for": None,
                             "queue": 0, "rss": None, "cpu": None})
        return rows

    def tasks(self, samples=None):
        """The task farm's counts and its throughput history (the newest
        ``samples`` of it; all by default)."""
        counts = self._task_counts() or {"waiting": 0, "running": 0, "succeeded": 0,
                                          "failed": 0}
        return {"pending": counts["waiting"], "running": counts["running"],
                "succeeded": counts["succeeded"], "failed": counts["failed"],
                "throughput": [list(s) for s in _newest(self.task_history, samples)]}

    def channels(self, samples=None):
        """Bytes per second on the lanes and the data channel now, and their
        history (the newest ``samples`` of it; all by default)."""
        last = self.channel_history[-1] if self.channel_history else (None, 0.0, 0.0, 0.0, 0.0)
        return {"lanes": {"bytes_in_per_s": last[1], "bytes_out_per_s": last[2]},
                "data_channel": {"bytes_in_per_s": last[3], "bytes_out_per_s": last[4]},
                "history": [list(s) for s in _newest(self.channel_history, samples)]}

    def clients(self):
        """One dict per connected client (a process's connection: its
        multi-engine and task sessions together): ``peer`` (host:port),
        ``uses`` (``"multi-engine"``, ``"tasks"``), ``connected_for`` (s) and
        ``calls`` (on Foolscap and lanes)."""
        now = time.monotonic()
        rows = {}
        for kind, sessions in (("multi-engine", self._sessions_of("mec")),
                               ("tasks", self._sessions_of("tasks"))):
            for session in sessions:
                if getattr(session, "closed", False):
                    continue
                peer = getattr(session, "peer", None)
                row = rows.setdefault(peer if peer is not None else id(session),
                                      {"peer": peer, "uses": [], "connected_for": 0.0,
                                       "calls": 0})
                if kind not in row["uses"]:
                    row["uses"].append(kind)
                row["connected_for"] = max(row["connected_for"],
                                           now - getattr(session, "opened", now))
                row["calls"] += getattr(session, "calls", 0)
        return sorted(rows.values(), key=lambda r: -r["connected_for"])

    def _sessions_of(self, name):
        root = getattr(self.node, name, None)
        sessions = getattr(root, "_sessions", None)
        return list(sessions) if sessions else []


def _newest(entries, count):
    """The last ``count`` of ``entries`` (a deque) as a list; all if None."""
    if count is None or count >= len(entries):
        return list(entries)
    return list(itertools.islice(entries, len(entries) - count, None)) if count > 0 else []


def _version():
    try:
        from importlib.metadata import version
        return version("ipkernel")
    except Exception:  # noqa: B902 - not installed (a checkout on sys.path)
        return "unknown"
