"""ipyparallel: ``ipyparallel.Cluster`` (controller + engines as local
processes), a DirectView on all engines and a LoadBalancedView."""
import logging

from bench import payloads, procs
from bench.systems.base import System

#: Tasks submitted between two waits in the memory workload.
BATCH = 1000


def _start_cluster(n):
    import ipyparallel

    cluster = ipyparallel.Cluster(n=n, log_level=logging.WARNING)
    try:
        client = cluster.start_and_connect_sync()
        client.wait_for_engines(n, timeout=120)
    except BaseException:
        cluster.stop_cluster_sync()
        raise

    def stop():
        try:
            client.close()
        finally:
            cluster.stop_cluster_sync()
    return cluster, client, stop


class IpyparallelSystem(System):
    """ipyparallel with its default configuration (ZeroMQ, in-memory hub DB)."""

    name = "ipyparallel"

    def __init__(self):
        super().__init__()
        self.rc = self.dv = self.lview = None

    def start(self, n):
        _, self.rc, stop = _start_cluster(n)
        self._track(stop)
        self.dv = self.rc[:]
        self.lview = self.rc.load_balanced_view()

    def startup(self, n):
        _, _, stop = _start_cluster(n)
        return self._track(stop)

    def memory(self, n, ntasks):
        cluster, rc, stop = _start_cluster(n)
        stop = self._track(stop)
        try:
            # the hub and its schedulers are the controller process and its children
            pid = cluster.controller.process.pid
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
