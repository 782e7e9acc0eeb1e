"""ipyparallel: ``ipyparallel.Cluster`` (controller + engines as local
processes), a DirectView on all engines and a LoadBalancedView.

Between hosts the controller and engines are processes in the namespaces
(:mod:`bench.systems.ipyparallel_hosts`).  ``ipyparallel-curve`` is the
same with CurveZMQ (``--IPController.enable_curve=True``: the connection
files carry the controller's public key, engines and client make their own
key pairs).
"""
import logging

from bench import payloads, procs
from bench.systems import ipyparallel_hosts
from bench.systems.base import System

#: Tasks submitted between two waits in the memory workload.
BATCH = 1000
#: Seconds a cluster may take to start.
START_TIMEOUT = ipyparallel_hosts.START_TIMEOUT
#: The controller option turning CurveZMQ on.
CURVE = "--IPController.enable_curve=True"


def _start_cluster(n, controller_args=()):
    import ipyparallel

    cluster = ipyparallel.Cluster(n=n, log_level=logging.WARNING,
                                  controller_args=list(controller_args))
    try:
        client = cluster.start_and_connect_sync()
        client.wait_for_engines(n, timeout=START_TIMEOUT)
    except BaseException:
        cluster.stop_cluster_sync()
        raise

    def stop():
        try:
            client.close()
        finally:
            cluster.stop_cluster_sync()
    return cluster.controller.process.pid, client, stop


class IpyparallelSystem(System):
    """ipyparallel with its default configuration (ZeroMQ, in-memory hub DB)."""

    name = "ipyparallel"
    #: Extra ``ipcontroller`` options of this configuration.
    controller_args = ()

    def __init__(self, placement=None):
        super().__init__(placement)
        self.rc = self.dv = self.lview = None

    def _cluster(self, n):
        if self.placement.remote:
            return ipyparallel_hosts.start_processes(n, self.placement, self.controller_args)
        return _start_cluster(n, self.controller_args)

    def start(self, n):
        _, self.rc, stop = self._cluster(n)
        self._track(stop)
        self.dv = self.rc[:]
        self.lview = self.rc.load_balanced_view()

    def startup(self, n):
        _, _, stop = self._cluster(n)
        return self._track(stop)

    def memory(self, n, ntasks):
        pid, rc, stop = self._cluster(n)
        stop = self._track(stop)
        try:
            # the hub and its schedulers are the controller process and its children
            lview = rc.load_balanced_view()
            lview.apply_sync(payloads.noop)
            rc.purge_everything()
            out = {"start": procs.tree_memory(pid)}
            done = 0
            while done < ntasks:
                size = min(BATCH, ntasks - done)
                rc.wait([lview.apply_async(payloads.noop, i) for i in range(size)])
                done += size
            out["tasks"] = procs.tree_memory(pid)
            rc.purge_everything()
            out["clear"] = procs.tree_memory(pid)
            return out
        finally:
            stop()

    # -- operations --------------------------------------------------------------------

    def execute_all(self):
        self.dv.execute("a=1", block=True)

    def apply_one(self):
        return self.rc[0].apply_sync(payloads.noop)

    def run_tasks(self, n):
        results = [self.lview.apply_async(payloads.noop, i) for i in range(n)]
        self.rc.wait(results)

    def run_tasks_bulk(self, n):
        self.lview.map_async(payloads.noop, range(n)).wait()

    def clear_tasks(self):
        self.rc.purge_everything()

    def lb_map(self, n):
        # default chunksize (1): one task per item, like ipkernel's TaskClient.map
        return self.lview.map_sync(payloads.noop, range(n))

    def push(self, array, everywhere):
        view = self.dv if everywhere else self.rc[0]
        view.push({"x": array}, block=True)

    def pull_one(self):
        return self.rc[0].pull("x", block=True)

    def scatter(self, array):
        self.dv.scatter("x", array, block=True)

    def gather(self):
        return self.dv.gather("x", block=True)

    def direct_map(self, n):
        return self.dv.map_sync(payloads.square, range(n))


class IpyparallelCurveSystem(IpyparallelSystem):
    """ipyparallel with CurveZMQ encryption and authentication on: the
    peer's encrypted configuration."""

    name = "ipyparallel-curve"
    controller_args = (CURVE,)
    encrypted = True
