"""``LocalCluster``: a controller and n engines as processes on this machine.

::

    from ipkernel.cluster import LocalCluster

    with LocalCluster(n=4) as cluster:
        mec = cluster.multiengine_client()
        print(mec.map(lambda x: x ** 2, range(10)))

No Twisted reactor has to run: the processes are started with
:mod:`subprocess` (on Linux the controller and the engines are forked from
one helper process, the zygote, which imports their code once; see
:mod:`ipkernel.engine.zygote`), and readiness is read from their logs (the
controller's ``ready`` line and FURL files, then each engine's "registered
as engine" line).  Every process is stopped by
:meth:`~ipkernel.cluster.LocalCluster.stop`, by leaving
the ``with`` block (also through an exception), when the object is
garbage-collected and at interpreter exit; engines and the controller also
stop by themselves when the process that started them dies.

An engine that crashes while the cluster runs is started again, with a
back-off (``restart=True``, the default; see :mod:`ipkernel.cluster.restarts`).
"""
import logging
import os
import shutil
import sys
import tempfile
import time
import weakref

from ipkernel import credentials
from ipkernel.clusterdir import MULTIENGINE_FURL, TASK_FURL, ClusterDir
from ipkernel.cluster.launcher import (STOP_TIMEOUT, ControllerLauncher, EngineLauncher,
                                       ForkedControllerLauncher, ForkedEngineLauncher,
                                       ZygoteLauncher, shutdown_all)
from ipkernel.cluster.restarts import EngineRestarter, RestartPolicy, pidfd_problem

logger = logging.getLogger("ipkernel.cluster")

#: Interval of the polls of the logs during a start.
READY_POLL = 0.01
#: The same for a forked controller, and for the engines once the controller
#: is ready (they were started before and wait for it): both take tens of
#: milliseconds.
ENGINE_POLL = 0.002

#: The ways to start engines (``LocalCluster(engine_start=...)``).
ENGINE_STARTS = ("fork", "spawn")


def can_fork():
    """True where engines can be forked from a zygote (Linux)."""
    return hasattr(os, "fork") and sys.platform.startswith("linux")


class _Processes:
    """What must be cleaned up: launchers and the temporary directory.

    Kept apart from :class:`LocalCluster` so the finalizer can hold it
    without keeping the cluster object alive.
    """

    def __init__(self):
        self.controller = None
        self.zygote = None
        self.engines = []
        self.restarter = None
        self.temp_dir = None

    def stop(self, timeout=STOP_TIMEOUT):
        try:
            if self.restarter is not None:
                self.restarter.stop()   # first: what is stopped now stays stopped
            shutdown_all(self.engines, timeout)
        finally:
            try:
                try:
                    if self.controller is not None:
                        self.controller.shutdown(timeout)
                finally:
                    # last: it reports the exits of the processes it forked
                    if self.zygote is not None:
                        self.zygote.shutdown(timeout)
            finally:
                if self.temp_dir is not None:
                    shutil.rmtree(self.temp_dir, ignore_errors=True)
                    self.temp_dir = None


class LocalCluster:
    """A controller and ``n`` engines as local processes (see the module doc).

    ``cluster_dir``: the cluster directory to use; None makes a private
    temporary one, removed on :meth:`stop`.  ``controller_args`` and
    ``engine_args`` are extra command-line arguments of ``ipcontroller``
    and ``ipengine``.  ``timeout`` bounds the whole start (seconds); a
    process that fails or is late raises :class:`LaunchError` showing the
    tail of its log, after everything was stopped.

    ``engine_start``: ``"fork"`` (the default) starts one helper process,
    the zygote; it imports the controller and engine code once and forks
    the controller and the engines, so they start in milliseconds.  Where
    fork cannot be used (not Linux, or an unusual Twisted reactor) they
    are started as new processes, as with ``"spawn"`` (or with ``n=0``).
    Either way the controller and each engine are processes of their own
    with the same pid files, logs and control (:attr:`controller`,
    :attr:`engines`).

    ``restart``: an engine that crashes (exits with a status other than 0
    while nobody asked it to stop) is started again, the way it was
    started first, and registers under a new engine id: at once the first
    time, then after 1, 2, 4 ... (at most 30) seconds while it keeps dying
    within 30 s of its start; an engine that dies before it registers 5
    times in a row (it cannot start) is given up.
    ``restart=False`` turns that off; a
    :class:`~ipkernel.cluster.restarts.RestartPolicy` changes the numbers.
    Engines stopped on purpose (``kill`` or ``shutdown`` from a client,
    :meth:`stop`, their launcher's ``shutdown()``) are never restarted.
    :attr:`engine_exits` tells what happened to each engine that ended.

    ``engine_furl_file``: by default the controller writes no engine FURL
    file (``security/ipcontroller-engine.furl``): each engine this cluster
    starts (or restarts) gets its own one-time credential in its
    environment and registers with it (see :mod:`ipkernel.credentials`),
    so nothing on disk lets another process register as an engine.
    ``engine_furl_file=True`` makes the controller write the file too, so
    that engines started by hand (``ipengine --cluster-dir ...``) can join.
    """

    def __init__(self, n=4, cluster_dir=None, *, controller_args=(), engine_args=(),
                 timeout=60, engine_start="fork", restart=True, engine_furl_file=False):
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative number of engines, not {n!r}")
        if engine_start not in ENGINE_STARTS:
            raise ValueError(f"engine_start must be one of {ENGINE_STARTS}, "
                             f"not {engine_start!r}")
        if not isinstance(restart, (bool, RestartPolicy)):
            raise TypeError(f"restart must be True, False or a RestartPolicy, not {restart!r}")
        self.n = n
        self.restart_policy = (restart if isinstance(restart, RestartPolicy)
                               else RestartPolicy() if restart else None)
        self.engine_start = engine_start
        self.timeout = timeout
        self.controller_args = list(controller_args)
        self.engine_args = list(engine_args)
        self.engine_furl_file = bool(engine_furl_file)
        self._engine_key = None
        self._given_dir = cluster_dir
        self._cluster = None
        self._procs = _Processes()
        self._finalizer = None

    # -- information --------------------------------------------------------------------

    @property
    def cluster_dir(self):
        """The cluster directory (a Path; None before a temporary one is made)."""
        return self._cluster.path if self._cluster is not None else None

    @property
    def controller(self):
        """The controller's :class:`~ipkernel.cluster.launcher.ProcessLauncher`
        (of the last start; after a stop it tells how the process ended)."""
        return self._procs.controller

    @property
    def zygote(self):
        """The engine zygote's :class:`~ipkernel.cluster.launcher.ZygoteLauncher`
        (None when the engines are not forked)."""
        return self._procs.zygote

    @property
    def engines(self):
        """The engines' launchers, in order of their numbers."""
        return list(self._procs.engines)

    @property
    def restarts_engines(self):
        """True while crashed engines are restarted (``restart`` was not
        False, and exits can be watched here)."""
        return self._procs.restarter is not None and self.is_running()

    @property
    def engine_exits(self):
        """What happened to each engine that ended while the cluster ran: a
        list of :class:`~ipkernel.cluster.restarts.EngineExit` (empty with
        ``restart=False``)."""
        restarter = self._procs.restarter
        return restarter.exits if restarter is not None else []

    def wait_for_engine_exits(self, predicate, timeout):
        """Wait until ``predicate(exits)`` is true for the list of
        :attr:`engine_exits`; return its value, or None after ``timeout`` s."""
        restarter = self._procs.restarter
        if restarter is None:
            raise RuntimeError("engine exits are watched only while a cluster with "
                               "restart=True runs")
        return restarter.wait_for(predicate, timeout)

    @property
    def mec_furl_file(self):
        """Path of the multi-engine client FURL file."""
        self._require_started()
        return self._cluster.furl_file(MULTIENGINE_FURL)

    @property
    def tc_furl_file(self):
        """Path of the task client FURL file."""
        self._require_started()
        return self._cluster.furl_file(TASK_FURL)

    @property
    def dashboard_url(self):
        """The controller's dashboard page, with its token (None: not served)."""
        self._require_started()
        return self._cluster.dashboard_url()

    def is_running(self):
        """True from a successful start until stop, while the controller runs."""
        return (self._finalizer is not None and self._procs.controller is not None
                and self._procs.controller.is_alive())

    def __repr__(self):
        state = "running" if self.is_running() else "stopped"
        return f"<LocalCluster n={self.n} cluster_dir={str(self.cluster_dir)!r} {state}>"

    # -- life cycle ---------------------------------------------------------------------

    def start(self):
        """Start the controller and the engines; return once all engines are
        registered.  Returns self."""
        if self._finalizer is not None:
            raise RuntimeError("this LocalCluster is already running; stop() it first")
        self._procs = _Processes()
        self._finalizer = weakref.finalize(self, self._procs.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        deadline = time.monotonic() + self.timeout
        if self._given_dir is None:
            self._procs.temp_dir = tempfile.mkdtemp(prefix="ipkernel-cluster-")
            path = self._procs.temp_dir
        else:
            path = self._given_dir
        self._cluster = (path if isinstance(path, ClusterDir) else ClusterDir(path)).create()
        # A new key per start: credentials of an earlier run are worthless.
        self._engine_key = credentials.new_key()
        keys = {"engine_key": self._engine_key}
        if self.n and self.engine_start == "fork" and can_fork():
            # One process imports the code, then forks the controller and the engines.
            zygote = self._procs.zygote = ZygoteLauncher(self._cluster, timeout=self.timeout)
            zygote.start()
            self._make_certificates()   # while the zygote imports
            controller = ForkedControllerLauncher(zygote, self._cluster, self.controller_args,
                                                  engine_furl=self.engine_furl_file, **keys)
        else:
            controller = ControllerLauncher(self._cluster, self.controller_args,
                                            engine_furl=self.engine_furl_file, **keys)
        self._procs.controller = controller
        # With no engine FURL file yet, the engines start at once and wait for
        # it (their start overlaps the controller's); an old file could be
        # stale, so then they start once the controller is ready.
        early = not self._cluster.furl_file(credentials.GATE_FURL).exists()
        controller.start()
        if early:
            self._start_engines()
        # A forked controller is ready in tens of milliseconds; a new process
        # first imports its code.
        forked = getattr(controller, "forked", False)
        self._wait_ready(controller, deadline, "was not ready",
                         ENGINE_POLL if forked else READY_POLL)
        self._connect_early()
        if not early:
            self._start_engines()
        for engine in self._procs.engines:
            self._wait_ready(engine, deadline, "did not register", ENGINE_POLL)
        self._watch_engines()

    def _watch_engines(self):
        if self.restart_policy is None or not self._procs.engines:
            return
        problem = pidfd_problem()
        if problem:
            logger.warning("LocalCluster: engines that die are not restarted here: %s", problem)
            return
        self._procs.restarter = EngineRestarter(self._procs.engines, self._procs.controller,
                                                self.restart_policy).start()

    def _make_certificates(self):
        # The controller's certificates (in the cluster directory, where it
        # would make them at its start, unless told to use other files).
        from ipkernel.fcutil import load_or_create_cert
        for role in ("client", "engine"):
            option = f"--{role}-cert-file"
            if not any(a == option or a.startswith(option + "=") for a in self.controller_args):
                load_or_create_cert(self._cluster.cert_file(role))

    def _connect_early(self):
        # Where this process already runs the blocking clients' reactor thread,
        # its client Tub connects while the engines register (a client made next
        # finds the connection made).  No reactor thread is started for it.
        client_reactor = sys.modules.get("ipkernel.client.reactor")
        thread = client_reactor.reactor_thread() if client_reactor is not None else None
        if thread is None or not thread.is_alive():
            return
        from ipkernel.client import connect
        from ipkernel.fcutil import find_furl
        try:
            furl = find_furl(self.mec_furl_file)
            client_reactor.call_in_reactor(connect.connect_early, furl)
        except Exception as exc:  # noqa: B902 - only a head start; the client reports problems
            logger.debug("LocalCluster: no early client connection (%s)", exc)

    def _start_engines(self):
        zygote = self._procs.zygote
        if zygote is not None and not zygote.wait_ready_to_fork():
            logger.warning("LocalCluster: engines cannot be forked here (%s); starting them "
                           "as new processes", zygote.reason)
            zygote.shutdown()
            zygote = None
        for index in range(self.n):
            self._start_engine(index, self.engine_args)

    def _start_engine(self, index, args):
        zygote = self._procs.zygote
        if zygote is not None and zygote.is_alive():
            engine = ForkedEngineLauncher(zygote, self._cluster, index, args,
                                          engine_key=self._engine_key)
        else:
            engine = EngineLauncher(self._cluster, index, args, engine_key=self._engine_key)
        self._procs.engines.append(engine)
        engine.start()
        return engine

    def add_engines(self, k, engine_args=(), timeout=None):
        """Start ``k`` more engines (``engine_args`` after the cluster's own);
        return their launchers once they registered (within ``timeout``
        seconds, default the cluster's).  They are restarted like the others."""
        self._require_started()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive number of engines, not {k!r}")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        first = len(self._procs.engines)
        added = [self._start_engine(first + i, [*self.engine_args, *map(str, engine_args)])
                 for i in range(k)]
        for engine in added:
            self._wait_ready(engine, deadline, "did not register", ENGINE_POLL)
        if self._procs.restarter is not None:
            for engine in added:
                self._procs.restarter.add(engine)
        elif len(added) == len(self._procs.engines):
            self._watch_engines()
        return added

    def _wait_ready(self, launcher, deadline, late, interval=READY_POLL):
        # Bounded polling of the logs; the controller must stay up meanwhile.
        controller = self._procs.controller
        while not launcher.is_ready():
            if launcher.exit_code is not None:
                raise launcher.failure(
                    f"{launcher.name} exited with status {launcher.exit_code} before it was ready")
            if launcher is not controller and not controller.is_alive():
                raise controller.failure(f"ipcontroller exited with status "
                                         f"{controller.exit_code} while the engines registered")
            if time.monotonic() >= deadline:
                raise launcher.failure(f"{launcher.name} {late} within the LocalCluster "
                                       f"timeout of {self.timeout:g} s")
            time.sleep(interval)

    def stop(self, timeout=STOP_TIMEOUT):
        """Stop the engines, then the controller (politely, then by force after
        ``timeout`` seconds); remove the temporary directory.  Safe to call again."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
            self._procs.stop(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- clients ------------------------------------------------------------------------

    def multiengine_client(self, **kwargs):
        """A blocking :class:`ipkernel.client.MultiEngineClient` for this cluster
        (keyword arguments are passed on)."""
        self._require_started()
        from ipkernel.client import MultiEngineClient
        return MultiEngineClient(str(self.mec_furl_file), **kwargs)

    def task_client(self, **kwargs):
        """A blocking :class:`ipkernel.client.TaskClient` for this cluster
        (keyword arguments are passed on)."""
        self._require_started()
        from ipkernel.client import TaskClient
        return TaskClient(str(self.tc_furl_file), **kwargs)

    def _require_started(self):
        if not self.is_running():
            raise RuntimeError("the cluster is not running: call start() or use `with`")
