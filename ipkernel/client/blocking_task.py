"""TaskClient: the blocking client of a controller's task farm.

It shares the reactor bridge of :class:`~ipkernel.client.MultiEngineClient`
(a background reactor thread started on first use) and calls an
:class:`~ipkernel.client.fctask.FCTaskClient` there::

    from ipkernel import client
    from ipkernel.task import MapTask
    tc = client.TaskClient()            # or TaskClient("path/to/ipcontroller-tc.furl")
    tid = tc.run(MapTask(pow, (2, 10)))
    tc.get_task_result(tid, block=True)  # 1024
"""
import functools
import sys
import threading
import weakref

from ipkernel.client import progress as _progress
from ipkernel.client.blocking import _check_timeout, _live_clients, _release
from ipkernel.client.output import in_ipython, prefixed_lines
from ipkernel.client.reactor import ReactorBridge, default_bridge
from ipkernel.error import KernelError


#: Guards the MapTask output waiting to be shown (reactor thread in, caller out).
_printing_lock = threading.Lock()


class TaskClient:
    """A blocking client of the task farm (``ipcontroller-tc.furl``).

    ``furl_or_file``: the task FURL or a file holding it (default:
    ``security/ipcontroller-tc.furl`` of ``cluster_dir``).  ``timeout``
    bounds each call (None: no limit); ``progress`` enables progress bars
    for long maps (see :mod:`ipkernel.client.progress`); ``tub`` and
    ``call_in_reactor`` are for programs and tests that run the reactor
    themselves.
    """

    def __init__(self, furl_or_file=None, *, cluster_dir=None, timeout=None, progress=True,
                 tub=None, call_in_reactor=None, connect_timeout=30):
        from ipkernel import asyncclient
        from ipkernel.client import connect
        from ipkernel.clusterdir import TASK_FURL

        self._bridge = (ReactorBridge(call_in_reactor=call_in_reactor)
                        if call_in_reactor is not None else default_bridge())
        self.timeout = _check_timeout(timeout)
        self.progress = progress
        if furl_or_file is None:
            furl_or_file = connect.default_furl_file(TASK_FURL, cluster_dir=cluster_dir)
        elif cluster_dir is not None:
            raise TypeError("give either a FURL (or FURL file) or cluster_dir, not both")
        connect_timeout = _check_timeout(connect_timeout, "connect_timeout")
        # Kept so a lost connection is made again on the next call.
        self._reconnect_args = (furl_or_file, tub, connect_timeout)
        fc = self._bridge.call(asyncclient.get_task_client, furl_or_file, tub, connect_timeout,
                               what="connecting to the task controller")
        self._attach(fc, owned=True)

    @classmethod
    def _over(cls, fc, bridge=None, timeout=None, progress=True):
        """A client over the connected FCTaskClient ``fc``, which it does not
        own (see :meth:`ipkernel.client.fctask.FCTaskClient.adapt_to_blocking_client`):
        closing it leaves ``fc`` open, and it does not reconnect."""
        self = cls.__new__(cls)
        self._bridge = bridge if bridge is not None else default_bridge()
        self.timeout = _check_timeout(timeout)
        self.progress = progress
        self._reconnect_args = None
        self._attach(fc, owned=False)
        return self

    def _attach(self, fc, owned):
        self.furl = fc.furl
        self._printed = []   # (engine id, stdout, stderr) of MapTasks, not shown yet
        self._holder = [fc]
        self._closed = False
        self._finalizer = weakref.finalize(self, _release, self._bridge, self._holder, owned)
        self._finalizer.atexit = False
        _live_clients.add(self)

    def __repr__(self):
        # The FURL without its secret part (``furl`` holds the whole FURL).
        from ipkernel.fcutil import redacted_furl

        return f"<TaskClient {redacted_furl(self.furl) or '?'}{' closed' if self._closed else ''}>"

    @property
    def stream(self):
        """Whether what MapTasks printed is shown (``[stdout:N]`` per line, N
        the engine) when their results arrive.  None (the default): yes in
        IPython and Jupyter, no in scripts.  A StringTask's output is in its
        TaskResult's ``stdout``/``stderr`` either way."""
        return getattr(self, "_stream", None)

    @stream.setter
    def stream(self, value):
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"stream must be True, False or None (automatic), not {value!r}")
        self._stream = value

    def _took_output(self, engine_id, stdout, stderr):
        """A MapTask's output arrived with its result (reactor thread): kept
        until the waiting thread shows it."""
        shown = self.stream if self.stream is not None else in_ipython()
        if shown:
            with _printing_lock:
                self._printed.append((engine_id, stdout, stderr))

    def _show_output(self):
        """Print the MapTask output that arrived (the calling thread)."""
        printed = getattr(self, "_printed", None)
        if not printed:
            return
        with _printing_lock:
            items, printed[:] = list(printed), []
        for engine_id, stdout, stderr in items:
            if stdout:
                sys.stdout.write(prefixed_lines(engine_id, "stdout", stdout))
            if stderr:
                sys.stderr.write(prefixed_lines(engine_id, "stderr", stderr))

    def executor(self):
        """A ``concurrent.futures.Executor`` running each submitted call as a
        load-balanced task (see :class:`~ipkernel.client.executor.TaskExecutor`)."""
        from ipkernel.client.executor import TaskExecutor
        return TaskExecutor(self)

    def _when_done(self, taskid, future):
        """Settle the concurrent.futures ``future`` with task ``taskid``'s
        result when it arrives (fetched in the background)."""
        def settle_ok(value):
            if not future.done():
                future.set_result(value)

        def settle_failed(failure):
            if not future.done():
                future.set_exception(failure.value)

        def start():
            try:
                d = self._with_fc(lambda fc: fc.get_task_result(taskid, True))
            except Exception as exc:  # noqa: B902 - closed: the future says why
                future.set_exception(exc)
                return
            d.addCallbacks(settle_ok, settle_failed)
        self._bridge.post(start)

    def _with_fc(self, func):
        """``func(fc)`` (reactor thread).  When the connection was lost (the
        controller restarted, the network was cut) a new one is made first;
        the call that noticed the loss failed with ControllerError."""
        if not self._holder:
            raise KernelError("this TaskClient is closed")
        fc = self._holder[0]
        fc.on_output = self._took_output
        remote = getattr(fc, "remote_reference", None)
        if (remote is not None and not remote.isConnected()
                and self._reconnect_args is not None):  # (an adapted client does not)
            from ipkernel import asyncclient

            def reconnected(new_fc):
                new_fc.on_output = self._took_output
                self._holder[:] = [new_fc]
                self.furl = new_fc.furl
                return func(new_fc)
            return asyncclient.get_task_client(*self._reconnect_args).addCallback(reconnected)
        return func(fc)

    def _call(self, method, *args, **kwargs):
        return self._call_with(lambda fc: getattr(fc, method)(*args, **kwargs),
                               what=f"TaskClient.{method}")

    def _call_with(self, func, what="TaskClient.map"):
        """``func(fc)`` in the reactor thread, waited for."""
        if self._closed:
            raise KernelError("this TaskClient is closed; make a new one")
        try:
            return self._bridge.call(self._with_fc, func, timeout=self.timeout, what=what)
        finally:
            self._show_output()

    def run(self, task, block=False):
        """Submit ``task``; its id, or with ``block=True`` its result."""
        taskid = self._call("run", task)
        return self.get_task_result(taskid, block=True) if block else taskid

    def run_many(self, tasks):
        """Submit a list of tasks in one call; their ids (none is submitted
        if one is refused)."""
        return self._call("run_many", tasks)

    def get_task_result(self, taskid, block=False):
        """The task's result; None while it runs unless ``block``."""
        return self._call("get_task_result", taskid, block)

    def get_task_results(self, taskids, block=False):
        """``(True, result)`` or ``(False, exception)`` per task id, in order."""
        return self._call("get_task_results", taskids, block)

    def abort(self, taskid):
        """Abort a queued or running task."""
        return self._call("abort", taskid)

    def barrier(self, taskids):
        """Wait until all ``taskids`` (an id or a list of ids) have finished.

        Many ids are waited for in small batches (see
        :func:`~ipkernel.client.progress.plan_batches`), advancing a progress
        bar (see ``progress``)."""
        if isinstance(taskids, int):
            return self._call("barrier", taskids)
        ids = list(taskids)
        batches = _progress.plan_batches(len(ids))
        if len(batches) < 2:
            return self._call("barrier", ids)
        with _progress.bar(len(ids), "barrier", _progress.wanted(self.progress),
                           unit="task") as shown:
            def wait(fc):
                return _progress.gather_landing([fc.barrier(ids[a:b]) for a, b in batches],
                             lambda k: shown.update(batches[k][1] - batches[k][0]))
            self._call_with(wait, what="TaskClient.barrier")
        return None

    def spin(self):
        """Make the controller start what it can now."""
        return self._call("spin")

    def queue_status(self, verbose=False):
        """Counts (or ids, with ``verbose``) of pending/scheduled/succeeded/failed tasks."""
        return self._call("queue_status", verbose)

    def clear(self, taskids=None):
        """Forget finished results (all, or ``taskids``); the number forgotten."""
        return self._call("clear", taskids)

    def map(self, func, *sequences):
        """``[func(*args) for args in zip(*sequences)]`` as load-balanced tasks."""
        return self.mapper().map(func, *sequences)

    def mapper(self, clear_before=False, clear_after=False, retries=0, recovery_task=None,
               depend=None, block=True):
        """A :class:`~ipkernel.client.blocking_task.BlockingTaskMapper` with these
        task options."""
        return BlockingTaskMapper(self, dict(
            clear_before=clear_before, clear_after=clear_after, retries=retries,
            recovery_task=recovery_task, depend=depend, block=block))

    def parallel(self, clear_before=False, clear_after=False, retries=0, recovery_task=None,
                 depend=None, block=True):
        """Decorator: calling the function maps it over its arguments as tasks."""
        mapper = self.mapper(clear_before, clear_after, retries, recovery_task, depend, block)

        def decorate(func):
            @functools.wraps(func)
            def call(*sequences):
                return mapper.map(func, *sequences)
            return call
        return decorate

    def close(self):
        """Drop the connection objects; further calls raise KernelError.  Idempotent."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class BlockingTaskMapper:
    """Maps a function over sequences as MapTasks (``block=False``: task ids)."""

    def __init__(self, client, options):
        self.client = client
        self.options = options
        for name, value in options.items():
            setattr(self, name, value)

    def map(self, func, *sequences):
        """The results in order, or (``block=False``) the task ids.

        A blocking map waits for its results in small batches (see
        :func:`~ipkernel.client.progress.plan_batches`); when it takes a
        while a progress bar shows them arrive (see the client's ``progress``)."""
        options = self.options
        if not options["block"]:
            return self.client._call_with(lambda fc: fc.mapper(**options).map(func, *sequences))
        total = min((len(s) for s in sequences), default=0) if _all_sized(sequences) else None
        show = bool(total) and _progress.wanted(self.client.progress)
        with _progress.bar(total, "map", show, unit="task") as shown:
            return self.client._call_with(
                lambda fc: _map_tasks(fc, options, func, sequences, shown.update))


def _all_sized(sequences):
    return all(hasattr(s, "__len__") for s in sequences)


def _map_tasks(fc, options, func, sequences, advance):
    """A blocking task map (reactor thread): submit the tasks, then fetch their
    results in batches, calling ``advance(n)`` as ``n`` more arrive; a Deferred
    of the results (the first failed task's exception, in order, is raised).
    Cancelled (Ctrl-C, timeout), it aborts the tasks whose results have not
    arrived: nobody else knows their ids."""
    from twisted.internet import defer

    async def run():
        ids = await fc.mapper(**dict(options, block=False)).map(func, *sequences)
        batches = _progress.plan_batches(len(ids))
        landed = set()

        def arrived(k):
            landed.add(k)
            advance(batches[k][1] - batches[k][0])
        try:
            fetched = await _progress.gather_landing([fc.get_task_results(ids[a:b], block=True)
                                   for a, b in batches], arrived)
        except defer.CancelledError:
            for k, (a, b) in enumerate(batches):
                if k not in landed:
                    for taskid in ids[a:b]:  # (one that has finished meanwhile: IndexError)
                        fc.abort(taskid).addErrback(lambda _: None)
            raise
        results = []
        for pairs in fetched:
            for ok, value in pairs:
                if not ok:
                    raise value
                results.append(value)
        return results
    return defer.Deferred.fromCoroutine(run())


def get_task_client(furl_or_file="", **options):
    """A connected :class:`TaskClient`: IPython 0.10's spelling of
    ``TaskClient(furl_or_file, **options)``.

    ``furl_or_file`` ``''`` or None means the FURL file
    ``security/ipcontroller-tc.furl`` of the default cluster directory
    (``$IPKERNEL_DIR`` or ``~/.ipkernel``); ``options`` are those of
    :class:`TaskClient` (``timeout``, ``cluster_dir``, ...).
    """
    return TaskClient(furl_or_file or None, **options)
