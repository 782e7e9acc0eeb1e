"""The clusters the soak runs against, with what the driver needs of them:
the engines' (workers') pids, the controller's (scheduler's) pid, the
arguments that point a worker process at it, and how a killed engine comes
back."""
import inspect
import logging
import os

from bench import procs

#: Seconds a cluster may take to start, and a replacement engine to register.
START_TIMEOUT = 120
READY_TIMEOUT = 60


def _alive(pids):
    return [p for p in pids if p and procs.rss(p) is not None]


class IpkernelSoak:
    """A LocalCluster.  Where LocalCluster restarts dead engines itself
    (``restart=True``) the soak relies on that; otherwise it starts a
    replacement with the same command (:meth:`replace`)."""

    name = "ipkernel"
    rss_of = "ipkernel controller"
    roles = ("client", "submitter")

    def __init__(self, engines):
        from ipkernel.cluster import LocalCluster

        self.cluster_restarts = "restart" in inspect.signature(LocalCluster).parameters
        extra = {"restart": True} if self.cluster_restarts else {}
        self.cluster = LocalCluster(n=engines, timeout=START_TIMEOUT, **extra)
        self.restarted_by = "the cluster" if self.cluster_restarts else "the soak"
        self.replace = None if self.cluster_restarts else self._replace

    def start(self):
        self.cluster.start()

    def worker_args(self, role):
        return ["--mec-furl", str(self.cluster.mec_furl_file),
                "--tc-furl", str(self.cluster.tc_furl_file)]

    def engine_pids(self):
        return _alive(e.pid for e in self.cluster.engines)

    def controller_pid(self):
        return self.cluster.controller.pid

    def _replace(self, pid):
        launcher = next(e for e in self.cluster.engines if e.pid == pid)
        launcher.wait(READY_TIMEOUT)
        new = launcher.start()
        launcher.wait_ready(READY_TIMEOUT)
        return new

    def stop(self):
        self.cluster.stop()


class DaskSoak:
    """dask.distributed's LocalCluster: single-threaded worker processes under
    nannies, which restart a killed worker.  Its scheduler runs in this
    (the driver's) process, so that is the process whose RSS is sampled."""

    name = "dask"
    roles = ("dask-submitter",)
    restarted_by = "the nannies"
    rss_of = "dask scheduler (in the driver process)"
    replace = None

    def __init__(self, engines):
        self.engines = engines
        self.cluster = None

    def start(self):
        import distributed

        self.cluster = distributed.LocalCluster(
            n_workers=self.engines, threads_per_worker=1, processes=True,
            dashboard_address=None, silence_logs=logging.ERROR)

    def worker_args(self, role):
        return ["--scheduler", self.cluster.scheduler_address]

    def engine_pids(self):
        pids = []
        for nanny in list(self.cluster.workers.values()):
            process = getattr(getattr(nanny, "process", None), "process", None)
            pids.append(getattr(process, "pid", None))
        return _alive(pids)

    def controller_pid(self):
        return os.getpid()

    def stop(self):
        if self.cluster is not None:
            self.cluster.close()
