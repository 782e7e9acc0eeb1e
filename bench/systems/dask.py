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

Between hosts the scheduler and workers are processes in the namespaces
(:mod:`bench.systems.dask_hosts`).  ``dask-tls`` is the same with
``tls://`` and throwaway certificates (:mod:`bench.certs`) everywhere,
encryption required.
"""
import logging
import shutil
import tempfile
import time
from pathlib import Path

from bench import certs, payloads, procs
from bench.systems import dask_hosts
from bench.systems.base import System

#: Tasks submitted between two waits in the memory workload.
BATCH = 1000
#: Seconds the scheduler may take to forget released tasks.
FORGET_TIMEOUT = 30
#: Seconds a cluster may take to start.
START_TIMEOUT = dask_hosts.START_TIMEOUT


def _quiet_logs():
    """Keep dask's log handlers at WARNING for the whole run: each LocalCluster
    quietens them only while it lives, and the first one closed (while
    another, dask-tls, still runs) would set them back to INFO."""
    import distributed  # noqa: F401 - makes its log handlers

    for handler in logging.getLogger("distributed").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.WARNING)


def _start_local(n, tls_paths=None):
    import distributed

    _quiet_logs()
    extra = {}
    if tls_paths:
        extra = dict(protocol="tls://", security=dask_hosts.security(tls_paths))
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.WARNING,
                                       **extra)
    return cluster, _connect(cluster, n, extra.get("security"))


def _connect(cluster, n, security=None):
    import distributed

    try:
        client = distributed.Client(cluster, security=security)
        client.wait_for_workers(n, timeout=START_TIMEOUT)
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
    #: True: ``tls://`` everywhere, with throwaway certificates.
    tls = False

    def __init__(self, placement=None):
        super().__init__(placement)
        self.client = None
        self.first_worker = None
        self._x = None
        self._parts = None

    def _workdir(self):
        """A temporary folder (logs, scheduler file, certificates), removed at stop."""
        path = tempfile.mkdtemp(prefix=f"bench-{self.name}-")
        self._track(lambda: shutil.rmtree(path, ignore_errors=True))
        return Path(path)

    def _tls_paths(self, workdir):
        if not self.tls:
            return None
        addresses = ["127.0.0.1"]
        if self.placement.remote:
            addresses += [self.placement.server_addr, self.placement.engine_addr]
        return certs.make(workdir, addresses)

    def _cluster(self, n, own_process=False):
        """Start a cluster; ``(client, stop, scheduler pid or None)``.  One
        host: a LocalCluster (its scheduler in this process), or with
        ``own_process`` the scheduler alone in a process."""
        workdir = self._workdir()
        tls_paths = self._tls_paths(workdir)
        if self.placement.remote or (own_process and tls_paths):
            return dask_hosts.start_processes(n, self.placement, workdir, tls_paths)
        if own_process:
            from distributed.deploy.subprocess import SubprocessCluster

            cluster = SubprocessCluster(n_workers=n, threads_per_worker=1,
                                        dashboard_address=":0", silence_logs=logging.WARNING)
            return (*_connect(cluster, n), cluster.scheduler.process.pid)
        _, (client, stop) = _start_local(n, tls_paths)
        return client, stop, None

    def start(self, n):
        self.client, stop, _ = self._cluster(n)
        self._track(stop)
        self.first_worker = sorted(self.client.scheduler_info()["workers"])[0]

    def startup(self, n):
        _, stop, _ = self._cluster(n)
        return self._track(stop)

    def memory(self, n, ntasks):
        # LocalCluster runs its scheduler inside this (client) process, so this
        # workload has the scheduler alone in a process.
        import distributed

        client, stop, pid = self._cluster(n, own_process=True)
        stop = self._track(stop)
        try:
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


class DaskTlsSystem(DaskSystem):
    """dask with ``tls://`` on every connection (throwaway certificates,
    encryption required): the peer's encrypted configuration."""

    name = "dask-tls"
    tls = True
    encrypted = True
