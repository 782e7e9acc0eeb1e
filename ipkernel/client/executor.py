"""``concurrent.futures`` executors over a cluster.

:meth:`MultiEngineClient.executor() <ipkernel.client.MultiEngineClient.executor>`
gives an :class:`EngineExecutor`: each ``submit`` is an ``apply`` on the next
engine in turn (round robin).  :meth:`TaskClient.executor()
<ipkernel.client.TaskClient.executor>` gives a :class:`TaskExecutor`: each
``submit`` is a task of the load-balanced farm.  Both return real
``concurrent.futures.Future`` objects, so ``as_completed``, ``wait`` and
``Executor.map`` work as with a local pool::

    from concurrent.futures import as_completed
    with mec.executor() as pool:
        futures = [pool.submit(simulate, seed) for seed in range(100)]
        for future in as_completed(futures):
            print(future.result())

A future fails with the function's own exception (rebuilt from the
engine, its engine traceback shown by IPython).  A running call cannot be
cancelled through its future; ``shutdown(cancel_futures=True)`` aborts the
calls that have not started.
"""
import concurrent.futures
import itertools
import threading

from ipkernel.error import CompositeError

__all__ = ["EngineExecutor", "TaskExecutor", "ClusterExecutor"]


def _unwrapped(exc):
    """The one engine exception of a CompositeError from a call to one engine."""
    if isinstance(exc, CompositeError) and len(exc.elist) == 1:
        return exc.elist[0][1]
    return exc


class ClusterExecutor(concurrent.futures.Executor):
    """What both executors share: the futures not finished, and :meth:`shutdown`."""

    def __init__(self):
        self._lock = threading.Lock()
        self._shutdown = False
        self._running = {}   # Future -> what abort takes for it

    def _check_open(self):
        if self._shutdown:
            raise RuntimeError("cannot submit to an executor after shutdown()")

    def _track(self, future, handle):
        with self._lock:
            self._running[future] = handle
        future.add_done_callback(self._forget)

    def _forget(self, future):
        with self._lock:
            self._running.pop(future, None)

    def shutdown(self, wait=True, *, cancel_futures=False):
        """No more submissions; ``cancel_futures``: abort the calls that have
        not started (their futures fail with the Aborted error); ``wait``:
        return once every future has finished."""
        with self._lock:
            self._shutdown = True
            running = dict(self._running)
        if cancel_futures:
            for handle in running.values():
                try:
                    self._abort(handle)
                except Exception:  # noqa: B902 - already finished, or the client closed
                    pass
        if wait:
            concurrent.futures.wait(list(running))

    def _abort(self, handle):
        raise NotImplementedError


class EngineExecutor(ClusterExecutor):
    """Runs each submitted call on one engine of ``client`` (a
    MultiEngineClient), the engines of ``targets`` (default: all registered
    now) taken in turn."""

    def __init__(self, client, targets=None):
        super().__init__()
        self.client = client
        if targets is None or targets == "all":
            targets = client.get_ids()
        elif isinstance(targets, int):
            targets = [targets]
        self.targets = list(targets)
        if not self.targets:
            raise ValueError("an executor needs at least one engine (none is registered)")
        self._next = itertools.cycle(self.targets)

    def __repr__(self):
        return f"<EngineExecutor targets={self.targets!r} of {self.client!r}>"

    def submit(self, fn, /, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on the next engine; its Future."""
        with self._lock:
            self._check_open()
            engine_id = next(self._next)
        pending = self.client.apply(fn, args, kwargs, targets=engine_id, block=False)
        future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        self._track(future, pending)
        pending.add_done_callback(lambda p: _settle(future, p))
        return future

    def _abort(self, pending):
        self.client.abort(pending)


def _settle(future, pending):
    try:
        values = pending.get_result(block=False)
    except BaseException as exc:  # noqa: B902 - the call's outcome
        future.set_exception(_unwrapped(exc))
        return
    future.set_result(values[0] if isinstance(values, list) and len(values) == 1 else values)


class TaskExecutor(ClusterExecutor):
    """Runs each submitted call as a task of ``client`` (a TaskClient):
    load balanced over the engines, rescheduled when an engine dies."""

    def __init__(self, client):
        super().__init__()
        self.client = client

    def __repr__(self):
        return f"<TaskExecutor of {self.client!r}>"

    def submit(self, fn, /, *args, **kwargs):
        """Submit ``fn(*args, **kwargs)`` as a MapTask; its Future."""
        from ipkernel.task.tasks import MapTask

        with self._lock:
            self._check_open()
        taskid = self.client.run(MapTask(fn, args, kwargs))
        future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        self._track(future, taskid)
        self.client._when_done(taskid, future)
        return future

    def _abort(self, taskid):
        self.client.abort(taskid)
