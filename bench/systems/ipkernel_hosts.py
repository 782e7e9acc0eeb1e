"""An ipkernel cluster over two "hosts" (see :mod:`bench.hosts`): ``ipcontroller``
in namespace *a*, ``n`` engines in *b* (one ``ipengine -n n``, as a user
starts several engines on a host).

Made with ipkernel's own launchers, each command run through ``ip netns
exec``.  The engines dial the controller's veth address (the engine FURL
names only it); the client FURL names loopback when the client shares the
controller's namespace and the veth address when it does not, as a user
would set ``--client-ip`` for each case.  Nothing about encryption is set:
what ipkernel does between hosts by default is what is measured.
"""
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

#: Seconds between two looks at the logs while starting.
POLL = 0.02


def _group_ready(launcher, n):
    """True once each of the ``n`` engines of ``launcher`` (an ``ipengine -n``)
    logged that it is ready."""
    from ipkernel.cluster.launcher import ENGINE_READY, read_log
    from ipkernel.engine.group import engine_log

    return all(ENGINE_READY in read_log(Path(engine_log(launcher.log_file, k)), 0)
               for k in range(n))


class TwoHostCluster:
    """Controller in ``placement.server_ns``, engines in ``placement.engine_ns``.

    The same surface as the part of ``LocalCluster`` the bench uses:
    :meth:`start`, :meth:`stop`, ``controller`` (its launcher, with ``pid``),
    :meth:`multiengine_client` and :meth:`task_client`.
    """

    def __init__(self, n, placement, controller_args=(), timeout=120):
        self.n = n
        self.placement = placement
        self.controller_args = list(controller_args)
        self.timeout = timeout
        self.controller = None
        self.engines = []
        self._dir = None
        self._cluster = None

    def start(self):
        """Start the controller, then the engines; return once all registered."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        from ipkernel.cluster.launcher import ControllerLauncher, ProcessLauncher
        from ipkernel.clusterdir import ClusterDir

        deadline = time.monotonic() + self.timeout
        self._dir = tempfile.mkdtemp(prefix="bench-ipkernel-hosts-")
        self._cluster = ClusterDir(self._dir).create()
        args = ["--engine-ip", self.placement.server_addr,
                "--client-ip", self.placement.client_facing_addr, *self.controller_args]
        self.controller = ControllerLauncher(self._cluster, args)
        self.controller.argv[:0] = self.placement.prefix(self.placement.server_ns)
        self.controller.start()
        # The engines start at once and wait for the FURL file (as LocalCluster's
        # do): the directory is new, so no stale file can be there.  They are
        # one `ipengine -n N` on their host, as a user starts N engines there.
        log_file = self._cluster.log / "ipengine-group.log"
        group = ProcessLauncher(
            "ipengine-group", [*self.placement.prefix(self.placement.engine_ns),
                               sys.executable, "-m", "ipkernel.engine", "--parent-pid",
                               os.getpid(), "--cluster-dir", self._cluster.path,
                               "--logfile", log_file, "-n", self.n], log_file)
        group.is_ready = functools.partial(_group_ready, group, self.n)
        self.engines.append(group)
        group.start()
        self._wait(self.controller, deadline)
        self._wait(group, deadline)

    def _wait(self, launcher, deadline):
        while not launcher.is_ready():
            if launcher.exit_code is not None:
                raise launcher.failure(f"{launcher.name} exited with status "
                                       f"{launcher.exit_code} before it was ready")
            if launcher is not self.controller and not self.controller.is_alive():
                raise self.controller.failure("ipcontroller exited while the engines registered")
            if time.monotonic() >= deadline:
                raise launcher.failure(f"{launcher.name} was not ready within {self.timeout:g} s")
            time.sleep(POLL)

    def stop(self):
        """Stop the engines, then the controller; remove the cluster directory."""
        from ipkernel.cluster.launcher import shutdown_all

        try:
            shutdown_all(self.engines)
            if self.controller is not None:
                self.controller.shutdown()
        finally:
            self.engines, self.controller = [], None
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _furl(self, name):
        return str(self._cluster.furl_file(name))

    def multiengine_client(self, **kwargs):
        """A blocking MultiEngineClient (keyword arguments are passed on)."""
        from ipkernel.client import MultiEngineClient
        from ipkernel.clusterdir import MULTIENGINE_FURL
        return MultiEngineClient(self._furl(MULTIENGINE_FURL), **kwargs)

    def task_client(self, **kwargs):
        """A blocking TaskClient (keyword arguments are passed on)."""
        from ipkernel.client import TaskClient
        from ipkernel.clusterdir import TASK_FURL
        return TaskClient(self._furl(TASK_FURL), **kwargs)
