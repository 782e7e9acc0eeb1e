"""ipkernel: ``LocalCluster`` (or, between two "hosts", a
:class:`~bench.systems.ipkernel_hosts.TwoHostCluster`) with its blocking
MultiEngineClient and TaskClient."""
import socket
import threading
from urllib.parse import urlsplit

from bench import payloads, procs
from bench.systems.base import System

#: Tasks submitted between two barriers in the memory workload.
BATCH = 1000


def _start_cluster(n, controller_args, placement):
    if placement.remote:
        from bench.systems.ipkernel_hosts import TwoHostCluster

        return TwoHostCluster(n, placement, controller_args, timeout=max(120, n)).start()
    from ipkernel.cluster import LocalCluster

    cluster = LocalCluster(n=n, controller_args=controller_args, timeout=120)
    cluster.start()
    return cluster


class IpkernelSystem(System):
    """ipkernel's controller and engines as local processes.

    ``controller_args`` go to ``ipcontroller`` (for example
    ``["--payload-cap", "200000000"]``; the default has no cap);
    ``placement`` (a :class:`bench.hosts.Placement`) says where the
    processes run.  Between hosts ipkernel encrypts by default (Foolscap
    TLS, data channel TLS), so it is one system in both the plain and the
    encrypted comparison.
    """

    name = "ipkernel"

    def __init__(self, controller_args=(), placement=None):
        super().__init__(placement)
        self.controller_args = list(controller_args)
        self.cluster = self.mec = self.tc = None

    def _clients(self, cluster):
        mec = cluster.multiengine_client(progress=False)
        tc = cluster.task_client()
        return mec, tc

    def start(self, n):
        self.cluster = _start_cluster(n, self.controller_args, self.placement)
        self._track(self.cluster.stop)
        self.mec, self.tc = self._clients(self.cluster)
        mec, tc = self.mec, self.tc

        def close():
            for client in (mec, tc):
                client.close()
        self._track(close)

    def stop(self):
        try:
            super().stop()
        finally:
            self.cluster = self.mec = self.tc = None

    def startup(self, n):
        cluster = _start_cluster(n, self.controller_args, self.placement)
        stop = self._track(cluster.stop)
        mec, tc = self._clients(cluster)
        mec.close()
        tc.close()
        return stop

    def memory(self, n, ntasks):
        from ipkernel.task import MapTask

        cluster = _start_cluster(n, self.controller_args, self.placement)
        stop = self._track(cluster.stop)
        try:
            mec, tc = self._clients(cluster)
            done_measuring = self._measuring(cluster)
            pid = cluster.controller.pid
            # one round first, so the idle figure includes the loaded task machinery
            tc.barrier([tc.run(MapTask(payloads.noop))])
            tc.clear()
            out = {"start": procs.tree_memory(pid)}
            done = 0
            while done < ntasks:
                size = min(BATCH, ntasks - done)
                tc.barrier(tc.run_many([MapTask(payloads.noop, (i,)) for i in range(size)]))
                done += size
            out["tasks"] = procs.tree_memory(pid)
            tc.clear()
            out["clear"] = procs.tree_memory(pid)
            done_measuring()
            mec.close()
            tc.close()
            return out
        finally:
            stop()

    def _measuring(self, cluster):
        """Called once ``memory`` has its fresh cluster; returns what to call after."""
        return lambda: None

    # -- operations --------------------------------------------------------------------

    def execute_all(self):
        self.mec.execute("a=1", targets="all", block=True)

    def apply_one(self):
        return self.mec.apply(payloads.noop, targets=0, block=True)[0]

    def run_tasks(self, n):
        from ipkernel.task import MapTask

        # One call per task, as the peers' submit/apply_async in this row (the
        # bulk path, run_many, is not like for like with them).
        ids = [self.tc.run(MapTask(payloads.noop, (i,)), block=False) for i in range(n)]
        self.tc.barrier(ids)

    def run_tasks_bulk(self, n):
        from ipkernel.task import MapTask

        self.tc.barrier(self.tc.run_many([MapTask(payloads.noop, (i,)) for i in range(n)]))

    def clear_tasks(self):
        self.tc.clear()

    def lb_map(self, n):
        return self.tc.map(payloads.noop, range(n))

    def push(self, array, everywhere):
        self.mec.push({"x": array}, targets="all" if everywhere else 0, block=True)

    def pull_one(self):
        return self.mec.pull("x", targets=0, block=True)[0]

    def scatter(self, array):
        self.mec.scatter("x", array, targets="all", block=True)

    def gather(self):
        return self.mec.gather("x", targets="all", block=True)

    def direct_map(self, n):
        return self.mec.map(payloads.square, range(n))


class PageWatcher:
    """What a dashboard page open in a browser does to the controller: a
    thread reading the live stream (``/api/events``) of ``url`` (loopback,
    plain HTTP), counting its snapshots."""

    def __init__(self, url, timeout=30):
        base, token = url.split("?token=")
        where = urlsplit(base)
        self.snapshots = 0
        self.first = threading.Event()
        self._sock = socket.create_connection((where.hostname, where.port), timeout=timeout)
        self._sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: {where.netloc}\r\n"
                           f"Authorization: token {token}\r\n\r\n".encode())
        self._sock.settimeout(None)   # the stream is quiet for up to 15 s
        self._thread = threading.Thread(target=self._read, name="bench-dashboard-page",
                                        daemon=True)
        self._thread.start()

    def _read(self):
        with self._sock.makefile("rb") as stream:
            try:
                for line in stream:
                    if line.startswith(b"data: "):
                        self.snapshots += 1
                        self.first.set()
            except OSError:
                pass   # closed by close()

    def wait_first(self, timeout=30):
        """Block until the first snapshot arrived (the page is live)."""
        if not self.first.wait(timeout):
            raise RuntimeError(f"the dashboard sent no snapshot within {timeout} s")

    def close(self):
        """Close the stream (the controller sees the page go at once)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(timeout=5)
        self._sock.close()


class IpkernelWatchedSystem(IpkernelSystem):
    """ipkernel with its dashboard open: each repetition runs with a
    :class:`PageWatcher` reading the live stream, opened (and live) before
    the repetition and closed after it.  Compared with plain ipkernel, not
    with the peers (the report's "watched/ipkernel" column).

    When the run has plain ipkernel too (:meth:`share`), both use that one
    cluster, so the two columns differ only by the page: the runner
    alternates their repetitions, and a stream closed is a page gone at once
    (the controller stops asking the engines for their usage)."""

    name = "ipkernel-watched"

    def __init__(self, controller_args=(), placement=None):
        super().__init__(controller_args, placement)
        self.base = None

    def share(self, base):
        """Run on ``base``'s main cluster (an :class:`IpkernelSystem` started first)."""
        self.base = base

    def start(self, n):
        if self.base is not None and self.base.cluster is not None:
            self.cluster, self.mec, self.tc = self.base.cluster, self.base.mec, self.base.tc
        else:
            super().start(n)
        self._dashboard_url(self.cluster)

    @staticmethod
    def _dashboard_url(cluster):
        url = getattr(cluster, "dashboard_url", None)
        if not url:
            raise RuntimeError("ipkernel-watched needs the controller's dashboard (its URL "
                               "file is missing: was ipcontroller run with --no-dashboard?)")
        return url

    def repetition(self, run):
        close_page = self._measuring(self.cluster)
        try:
            # Waiting for the page leaves the cluster idle for up to half a second,
            # and the first calls after an idle spell are slow (two to three times,
            # with or without a page): one untimed round first, so this repetition
            # starts warm like plain ipkernel's, which follows right after another.
            run()
            return run()
        finally:
            close_page()

    def _measuring(self, cluster):
        """A page open on ``cluster``'s dashboard, live; returns what closes it."""
        watcher = PageWatcher(self._dashboard_url(cluster))
        watcher.wait_first()
        return watcher.close
