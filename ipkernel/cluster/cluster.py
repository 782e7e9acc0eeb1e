"""``Cluster``: a controller and engines started by any launcher mode.

::

    from ipkernel.cluster import Cluster

    with Cluster(n=8, engines="slurm", queue="short") as cluster:
        mec = cluster.multiengine_client()
        print(mec.map(lambda x: x ** 2, range(32)))

``engines`` is one of ``local`` (processes on this machine; the
:class:`~ipkernel.cluster.local.LocalCluster` case), ``mpiexec`` (one MPI
job), ``ssh`` (the hosts of a clusterfile or a ``{host: count}`` dict),
``slurm``, ``pbs``, ``sge`` or ``lsf`` (a job array).  The controller runs
in this process's host by default; ``controller="slurm"`` (or another batch
mode) puts it in a batch job too.  :meth:`~ipkernel.cluster.Cluster.start` returns once ``n``
engines registered with the controller, or raises
:class:`~ipkernel.cluster.launcher.LaunchError` with the launcher's own
text; :meth:`~ipkernel.cluster.Cluster.stop` stops the engines (cancelling their jobs and
waiting until the scheduler no longer lists them), then the controller.

Engines beyond this host need a controller they can reach: unless
``controller_args`` say otherwise, a controller started here listens for
engines on every address (``--engine-ip 0.0.0.0``) and its engine FURL
holds this host's addresses.  Clients stay on loopback unless
``controller_args`` give ``--client-ip``.
"""
import logging
import shutil
import time
import weakref
from pathlib import Path

from ipkernel.clusterdir import MULTIENGINE_FURL, TASK_FURL, ClusterDir
from ipkernel.cluster.engineset import BATCH_MODES, canonical_mode, engine_set_class
from ipkernel.cluster.launcher import STOP_TIMEOUT, ControllerLauncher, LaunchError
from ipkernel.cluster.local import LocalCluster

logger = logging.getLogger("ipkernel.cluster")

#: Interval of the polls for registered engines.
REGISTER_POLL = 0.25
#: Bound of one question to the controller while waiting.
ASK_TIMEOUT = 10.0


def _has_option(args, name):
    return any(a == name or str(a).startswith(name + "=") for a in args)


def _ssh_total(clusterfile, hosts):
    """The number of engines a clusterfile or a ``{host: count}`` dict asks for."""
    if hosts:
        return sum(hosts.values())
    if clusterfile:
        from ipkernel.cluster.clusterfile import load
        return load(clusterfile).total
    raise ValueError("engines='ssh' needs clusterfile= or hosts={host: count}")


class _Parts:
    """What :meth:`~ipkernel.cluster.Cluster.stop` stops, apart from the Cluster object (so the
    finalizer does not keep it alive)."""

    def __init__(self):
        self.sets = []
        self.controller = None
        self.client = None
        self.temp_dir = None

    def close_client(self):
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: B902 - closing a client must not stop the stop
                pass
            self.client = None

    def stop(self, timeout=STOP_TIMEOUT):
        problems = []
        self.close_client()
        for engine_set in reversed(self.sets):
            try:
                engine_set.stop(timeout)
                engine_set.forget()
            except LaunchError as exc:
                problems.append(str(exc))
        self.sets = []
        if self.controller is not None:
            try:
                self.controller.shutdown(timeout)
                forget = getattr(self.controller, "forget", None)
                if forget is not None:
                    forget()
            except LaunchError as exc:
                problems.append(str(exc))
            self.controller = None
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None
        if problems:
            raise LaunchError("the cluster did not stop cleanly:\n" + "\n".join(problems))


class Cluster:
    """A controller and ``n`` engines started with launcher mode ``engines``
    (``n=None``: 4, or for ssh the total of the clusterfile or ``hosts``).

    Mode options (used by the modes that know them): ``queue`` and
    ``script`` (a job-script template; see :mod:`ipkernel.cluster.batch`)
    for the batch modes; ``clusterfile`` (0.10's format), ``hosts``
    (``{host: count}``), ``send_furl`` and ``ssh_config`` for ``ssh``;
    ``mpi`` (``"mpi4py"``) and ``mpi_args`` for ``mpiexec``.
    ``engine_command`` is the engine program on the other side (default:
    this Python by absolute path).  ``controller_args`` and ``engine_args``
    are extra ``ipcontroller`` and ``ipengine`` arguments;
    ``controller_queue`` and ``controller_script`` are the queue and
    template of a controller batch job.  ``cluster_dir``: None makes a new
    directory under ``~/.ipkernel-clusters`` (the home directory is the
    place other hosts usually share), removed by :meth:`stop`.  ``timeout``
    bounds :meth:`start` (a batch queue may take a while: give it time).
    """

    def __init__(self, n=None, cluster_dir=None, *, engines="local", controller="local",
                 queue=None, script=None, clusterfile=None, hosts=None, send_furl=None,
                 ssh_config=None, mpi=None, mpi_args=(), engine_command=None,
                 controller_args=(), engine_args=(), controller_queue=None,
                 controller_script=None, timeout=120, restart=True):
        self.mode = canonical_mode(engines)
        if n is None:
            n = _ssh_total(clusterfile, hosts) if self.mode == "ssh" else 4
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative number of engines, not {n!r}")
        self.n = n
        self.controller_mode = canonical_mode(controller)
        if self.controller_mode not in ("local", *BATCH_MODES):
            raise ValueError(f"the controller runs here (controller='local') or in a batch job "
                             f"({', '.join(BATCH_MODES)}), not with {controller!r}")
        self.timeout = timeout
        self.controller_args = [str(a) for a in controller_args]
        self.engine_args = [str(a) for a in engine_args]
        self.engine_command = engine_command
        self.options = {"queue": queue, "script": script, "clusterfile": clusterfile,
                        "hosts": hosts, "send_furl": send_furl, "ssh_config": ssh_config,
                        "mpi": mpi, "mpi_args": list(mpi_args)}
        self.controller_options = {"queue": controller_queue, "script": controller_script}
        self._given_dir = cluster_dir
        self._local = None
        if self.mode == "local" and self.controller_mode == "local":
            self._local = LocalCluster(n, cluster_dir, controller_args=self.controller_args,
                                       engine_args=self.engine_args, timeout=timeout,
                                       restart=restart)
        self._cluster = None
        self._parts = _Parts()
        self._finalizer = None

    # -- information --------------------------------------------------------------------

    @property
    def cluster_dir(self):
        """The cluster directory (a Path; None before :meth:`start` made one)."""
        if self._local is not None:
            return self._local.cluster_dir
        return self._cluster.path if self._cluster is not None else None

    @property
    def local(self):
        """The :class:`LocalCluster` doing the work in the ``local`` mode (else None)."""
        return self._local

    @property
    def engine_sets(self):
        """The :class:`~ipkernel.cluster.engineset.EngineSet` objects started so far."""
        return list(self._parts.sets)

    @property
    def controller(self):
        """The controller's launcher (a process here, or a batch job)."""
        if self._local is not None:
            return self._local.controller
        return self._parts.controller

    def is_running(self):
        if self._local is not None:
            return self._local.is_running()
        return self._finalizer is not None

    def describe(self):
        """Rows (dicts with ``set``, ``job``, ``hosts``, ``state``) of every engine set."""
        rows = []
        for engine_set in self._parts.sets:
            for row in engine_set.describe():
                rows.append({"set": engine_set.name, **row})
        return rows

    def __repr__(self):
        state = "running" if self.is_running() else "stopped"
        return f"<Cluster {self.mode}: {self.n} engines, {state}, {self.cluster_dir}>"

    # -- start and stop -----------------------------------------------------------------

    def start(self):
        """Start the controller and ``n`` engines; return once they registered.
        Returns self."""
        if self._local is not None:
            self._local.start()
            return self
        if self._finalizer is not None:
            raise RuntimeError("this Cluster is already running; stop() it first")
        self._parts = _Parts()
        self._finalizer = weakref.finalize(self, self._parts.stop)
        try:
            deadline = time.monotonic() + self.timeout
            self._make_dir()
            self._start_controller(deadline)
            if self.n:
                self._start_set(self.n, [], deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _make_dir(self):
        if self._given_dir is None:
            base = Path.home() / ".ipkernel-clusters"
            base.mkdir(mode=0o700, exist_ok=True)
            path = base / f"{self.mode}-{time.strftime('%Y%m%d-%H%M%S')}-{id(self):x}"
            self._parts.temp_dir = path
        else:
            path = self._given_dir
        self._cluster = (path if isinstance(path, ClusterDir) else ClusterDir(path)).create()

    def _reach_args(self):
        # Engines on other hosts need an address they can reach.
        if _has_option(self.controller_args, "--engine-ip"):
            return []
        if self.mode == "mpiexec" and not self.options["mpi_args"]:
            return []   # one MPI job on this host
        return ["--engine-ip", "0.0.0.0"]

    def _start_controller(self, deadline):
        args = [*self._reach_args(), *self.controller_args]
        if self.controller_mode == "local":
            controller = ControllerLauncher(self._cluster, args, engine_furl=True)
            self._parts.controller = controller
            controller.start()
            controller.wait_ready(max(1.0, deadline - time.monotonic()))
            return
        from ipkernel.cluster.batch.base import BatchControllerJob
        if not _has_option(args, "--client-ip"):
            # the clients are here, the controller on a node
            args = ["--client-ip", "0.0.0.0", *args]
        job = BatchControllerJob.for_mode(self.controller_mode, self._cluster, args,
                                          **self._given(self.controller_options))
        self._parts.controller = job
        job.start()
        job.wait_ready(max(1.0, deadline - time.monotonic()))

    def _given(self, options):
        return {key: value for key, value in options.items() if value not in (None, [], ())}

    def _set_options(self):
        wanted = {"ssh": ("clusterfile", "hosts", "send_furl", "ssh_config"),
                  "mpiexec": ("mpi", "mpi_args")}.get(self.mode, ("queue", "script"))
        options = self._given({key: self.options[key] for key in wanted})
        if self.mode == "mpiexec":
            options["mpi"] = self.options["mpi"]   # engines use MPI only when asked to
        if self.mode == "ssh" and "hosts" in options:
            options["engines"] = options.pop("hosts")
        return options

    def _start_set(self, k, extra_args, deadline):
        before = set(self._ids())
        engine_set = engine_set_class(self.mode)(
            self._cluster, k, engine_command=self.engine_command,
            engine_args=[*self.engine_args, *extra_args], **self._set_options())
        self._parts.sets.append(engine_set)
        engine_set.save()
        engine_set.start()
        engine_set.save()   # with what start learnt (job ids, pids)
        return self._wait_for(lambda ids: len(set(ids) - before) >= k, deadline,
                              f"{k} engine(s) of {engine_set.name} to register",
                              engine_set)

    def _client(self):
        # one blocking client for the waits, closed by stop()
        if self._parts.client is None:
            self._parts.client = self.multiengine_client(timeout=ASK_TIMEOUT, progress=False)
        return self._parts.client

    def _ids(self):
        return list(self._client().get_ids())

    def _wait_for(self, predicate, deadline, what, engine_set=None):
        while True:
            ids = self._ids()
            if predicate(ids):
                return ids
            if engine_set is not None:
                ended = engine_set.poll()
                if ended:
                    raise LaunchError(f"the engines of {engine_set.name} ended before they "
                                      f"registered: {ended}")
            logs = ClusterDir(self.cluster_dir).log
            controller = self.controller
            if controller is not None and not controller.is_alive():
                raise LaunchError(f"the controller ended while waiting for {what}; see "
                                  f"{getattr(controller, 'log_file', logs)}")
            if time.monotonic() >= deadline:
                rows = "; ".join(f"{r.get('job')} on {r.get('hosts') or '?'}: {r.get('state')}"
                                 for r in (engine_set.describe() if engine_set else ()))
                raise LaunchError(f"timed out waiting for {what} (registered: {sorted(ids)}; "
                                  f"launcher: {rows or '-'}); a busy queue needs a larger "
                                  f"timeout, an engine that cannot reach the controller logs "
                                  f"why in {logs}")
            time.sleep(REGISTER_POLL)

    def stop(self, timeout=STOP_TIMEOUT):
        """Stop the engines (cancelling their jobs), then the controller; safe to
        call again."""
        if self._local is not None:
            self._parts.close_client()
            self._local.stop(timeout)
            return
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
            self._parts.stop(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- changing the engines -----------------------------------------------------------

    def add_engines(self, k, timeout=None):
        """Start ``k`` more engines (a new job or launch of the same mode);
        return the ids they registered with."""
        self._require_started()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        before = set(self._ids())
        if self._local is not None:
            self._local.add_engines(k, timeout=timeout)
            return sorted(set(self._ids()) - before)
        return sorted(set(self._start_set(k, [], deadline)) - before)

    def remove_engines(self, ids, timeout=None):
        """Stop the engines ``ids`` (an id or a list); return once the
        controller no longer lists them.  They are not restarted."""
        self._require_started()
        ids = [ids] if isinstance(ids, int) else list(ids)
        client = self._client()
        known = set(client.get_ids())
        missing = [i for i in ids if i not in known]
        if missing:
            raise ValueError(f"no engine {missing} is registered (engines: {sorted(known)})")
        if not ids:
            return
        client.kill(targets=ids)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._wait_for(lambda now: not set(ids) & set(now), deadline, f"engines {ids} to leave")

    def restart_engine(self, engine_id, timeout=None):
        """Stop engine ``engine_id`` and start a new one that registers under
        the same id; return once it did."""
        self._require_started()
        if self.mode == "mpiexec":
            raise ValueError("an MPI engine cannot be restarted alone (its rank belongs to "
                             "the MPI job): restart the cluster instead")
        self.remove_engines([engine_id], timeout)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        again = ["--engine-id", engine_id]
        if self._local is not None:
            self._local.add_engines(1, again, timeout=timeout)
        else:
            self._start_set(1, again, deadline)
        self._wait_for(lambda now: engine_id in now, deadline, f"engine {engine_id} to come back")

    # -- clients ------------------------------------------------------------------------

    def multiengine_client(self, **kwargs):
        """A blocking :class:`ipkernel.client.MultiEngineClient` for this cluster."""
        self._require_started()
        from ipkernel.client import MultiEngineClient
        return MultiEngineClient(str(self._furl(MULTIENGINE_FURL)), **kwargs)

    def task_client(self, **kwargs):
        """A blocking :class:`ipkernel.client.TaskClient` for this cluster."""
        self._require_started()
        from ipkernel.client import TaskClient
        return TaskClient(str(self._furl(TASK_FURL)), **kwargs)

    @property
    def dashboard_url(self):
        """The controller's dashboard page, with its token (None: not served)."""
        self._require_started()
        return ClusterDir(self.cluster_dir).dashboard_url()

    def _furl(self, name):
        return ClusterDir(self.cluster_dir).furl_file(name)

    def _require_started(self):
        if not self.is_running():
            raise RuntimeError("the cluster is not running: call start() or use `with`")
