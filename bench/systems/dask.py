"""dask.distributed: a ``LocalCluster`` of single-threaded worker processes
and a ``Client``.

dask has no engine namespace, so the equivalents are (see bench/README.md):
``execute('a=1')`` -> ``client.run(noop)`` (a call on every worker);
push -> ``client.scatter`` (through the scheduler, its default path) and
pull -> ``client.gather`` of that future; scatter/gather -> ``client.scatter``
of one ``numpy.array_split`` chunk per worker, ``client.gather`` and
``numpy.concatenate``; direct map -> ``client.submit`` per worker (dask has no
non-load-balanced map: one task per worker maps its contiguous block, and
the blocks are joined -- what a direct map does; ``client.map`` over
10,000 items would measure 10,000 tasks instead).
"""
import logging
import time

from bench import payloads, procs
from bench.systems.base import System

#: Tasks submitted between two waits in the memory workload.
BATCH = 1000
#: Seconds the scheduler may take to forget released tasks.
FORGET_TIMEOUT = 30


def _start_local(n):
    import distributed

    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.WARNING)
    return cluster, _connect(cluster, n)


def _connect(cluster, n):
    import distributed

    try:
        client = distributed.Client(cluster)
        client.wait_for_workers(n, timeout=120)
    except BaseException:
        cluster.close()
        raise

    def stop():
        try:
            client.close()
        finally:
            cluster.close()
    return client, stop


def _scheduler_task_count(dask_scheduler):
    return len(dask_scheduler.tasks)


class DaskSystem(System):
    """dask.distributed with single-threaded worker processes (one per "engine")."""

    name = "dask"

    def __init__(self):
        super().__init__()
        self.client = None
        self.first_worker = None
        self._x = None
        self._parts = None

    def start(self, n):
        _, (self.client, stop) = _start_local(n)
        self._track(stop)
        self.first_worker = sorted(self.client.scheduler_info()["workers"])[0]

    def startup(self, n):
        _, (_, stop) = _start_local(n)
        return self._track(stop)

    def memory(self, n, ntasks):
        # LocalCluster runs its scheduler inside this (client) process, so this
        # workload uses a SubprocessCluster: the scheduler alone in a process.
        import distributed
        from distributed.deploy.subprocess import SubprocessCluster

        cluster = SubprocessCluster(n_workers=n, threads_per_worker=1, dashboard_address=":0",
                                    silence_logs=logging.WARNING)
        client, stop = _connect(cluster, n)
        stop = self._track(stop)
        try:
            pid = cluster.scheduler.process.pid
            client.submit(payloads.noop, pure=False).result()
            out = {"start": procs.tree_memory(pid)}
            kept = []
            while len(kept) < ntasks:
                size = min(BATCH, ntasks - len(kept))
                batch = client.map(payloads.noop, range(len(kept), len(kept) + size), pure=False)
                distributed.wait(batch)
                kept.extend(batch)
            out["tasks"] = procs.tree_memory(pid)
            del kept, batch  # releasing the futures is dask's "clear"
            deadline = time.monotonic() + FORGET_TIMEOUT
            while (client.run_on_scheduler(_scheduler_task_count) > 0
                   and time.monotonic() < deadline):
                time.sleep(0.1)
            out["clear"] = procs.tree_memory(pid)
            return out
        finally:
            stop()

    # -- operations --------------------------------------------------------------------

    def execute_all(self):
        self.client.run(payloads.noop)

    def apply_one(self):
        return self.client.submit(payloads.noop, pure=False,
                                  workers=[self.first_worker]).result()

    def run_tasks(self, n):
        import distributed

        futures = [self.client.submit(payloads.noop, i, pure=False) for i in range(n)]
        distributed.wait(futures)

    def run_tasks_bulk(self, n):
        import distributed

        distributed.wait(self.client.map(payloads.noop, range(n), pure=False))

    def lb_map(self, n):
        return self.client.gather(self.client.map(payloads.noop, range(n), pure=False))

    def push(self, array, everywhere):
        self._x = None  # release the previous copy first
        self._x = self.client.scatter(array, workers=None if everywhere else [self.first_worker],
                                      broadcast=everywhere, hash=False)

    def pull_one(self):
        return self.client.gather(self._x)

    def scatter(self, array):
        import numpy

        self._parts = None
        workers = len(self.client.scheduler_info()["workers"])
        self._parts = self.client.scatter(numpy.array_split(array, workers), hash=False)

    def gather(self):
        import numpy

        return numpy.concatenate(self.client.gather(self._parts))

    def direct_map(self, n):
        # one task per worker over a contiguous block, like a direct map's split
        workers = sorted(self.client.scheduler_info()["workers"])
        size = -(-n // len(workers))
        futures = [self.client.submit(payloads.square_all, range(i * size, min(n, (i + 1) * size)),
                                      workers=[w], pure=False)
                   for i, w in enumerate(workers)]
        return [y for part in self.client.gather(futures) for y in part]
