"""``mpiexec`` engines: ``n`` engines started as one MPI job.

:class:`MPIEngineSet` runs ``mpiexec -n N [mpi_args] <ipengine ... --mpi
mpi4py>``; with ``--mpi mpi4py`` each engine asks the controller for its
MPI rank as engine id, so ranks and ids agree and collectives
(``MPI.COMM_WORLD.allreduce``) work across engines executing together.

The launcher's handle is the ``mpiexec`` process; its output (and the
engines', which mpiexec forwards) is appended to
``log/ipengine-mpi-<name>.log``.  ``mpiexec`` by default is the one next
to this Python (``pip install ipkernel[mpi]`` puts MPICH's there), else
the first on ``PATH``.

Stopping sends SIGTERM to mpiexec, which forwards it to every rank (MPICH's
hydra does; so does Open MPI's mpirun), then makes sure that every local
process of the job is gone: those found below mpiexec and those carrying
the set's marker in their environment (:data:`MARKER_ENV`, which mpiexec
passes on to the ranks), SIGKILL after a grace period.  The record holds
mpiexec's pid and start time, so ``ipcluster stop`` in another process
never signals a process that merely reuses the pid.
"""
import os
import shlex
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from ipkernel import credentials
from ipkernel.cluster.engineset import EngineSet
from ipkernel.cluster.launcher import LaunchError, ProcessLauncher, child_env, read_log, tail
from ipkernel.pids import parent_of, process_alive, signal_quietly, start_ticks

#: The environment variable naming the engine set, in mpiexec and its ranks.
MARKER_ENV = "IPKERNEL_MPI_SET"
#: Interval of the polls while stopping.
POLL_INTERVAL = 0.05
#: Part of ``stop``'s timeout given to SIGTERM before SIGKILL.
GRACE_SHARE = 0.5
#: mpiexec options whose value names hosts, and those naming a host file.
_HOST_OPTIONS = ("-hosts", "-host", "--host", "-H")
_HOSTFILE_OPTIONS = ("-f", "-hostfile", "--hostfile", "-machinefile", "--machinefile")
#: What to do when no mpiexec is found.
INSTALL_HINT = "pip install 'ipkernel[mpi]' (MPICH and mpi4py from PyPI)"


def default_mpiexec():
    """The ``mpiexec`` next to this Python (a virtualenv's ``bin/``, not
    resolved through symlinks), else the one on ``PATH``; None if neither."""
    here = Path(os.path.abspath(sys.executable)).parent / "mpiexec"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("mpiexec") or shutil.which("mpirun")


def _all_pids():
    try:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return []


def descendants(pid):
    """The pids of the processes below ``pid`` (children, their children, ...)."""
    children = {}
    for other in _all_pids():
        children.setdefault(parent_of(other), []).append(other)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def marked(value):
    """The pids of the processes whose environment has ``MARKER_ENV=value``."""
    wanted = f"{MARKER_ENV}={value}".encode()
    found = []
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if wanted in f.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue
    return found


def hosts_of(mpi_args):
    """The hosts named by ``-hosts``/``-f`` in ``mpi_args`` (text), or this host's name."""
    args = list(mpi_args)
    for k, arg in enumerate(args):
        option, _, value = arg.partition("=")
        if value == "" and k + 1 < len(args):
            value = args[k + 1]
        if option in _HOST_OPTIONS and value:
            return value
        if option in _HOSTFILE_OPTIONS and value:
            try:
                lines = Path(value).expanduser().read_text().splitlines()
            except OSError:
                return f"hosts of {value}"
            names = [line.split("#")[0].split(":")[0].split()[0] for line in lines
                     if line.split("#")[0].strip()]
            return ",".join(names) or f"hosts of {value}"
    return socket.gethostname()


class MPIEngineSet(EngineSet):
    """``n`` engines of cluster directory ``cluster`` as one ``mpiexec`` job.

    ``mpiexec``: the command (a path or name; default
    :func:`default_mpiexec`); ``mpi_args``: more mpiexec arguments before
    the engine command (a list or a shell-like string: ``-f hostfile``,
    ``-hosts a,b``); ``mpi``: the engines' ``--mpi`` (``"mpi4py"``, or None
    to run them without MPI ranks as ids).  The other arguments are those
    of :class:`~ipkernel.cluster.engineset.EngineSet`.
    """

    mode = "mpiexec"

    def __init__(self, cluster, n, *, mpiexec=None, mpi_args=(), mpi="mpi4py",
                 engine_command=None, engine_args=(), name=None):
        super().__init__(cluster, n, engine_command=engine_command, engine_args=engine_args,
                         name=name)
        if mpi not in (None, "mpi4py"):
            raise ValueError(f"mpi must be 'mpi4py' or None, not {mpi!r}")
        if isinstance(mpi_args, str):
            mpi_args = shlex.split(mpi_args)
        self.mpiexec = mpiexec
        self.mpi_args = [str(a) for a in mpi_args]
        self.mpi = mpi
        self.log_file = self.cluster.log / f"ipengine-mpi-{self.name}.log"
        self.launcher = None
        self.pid = None
        self.started = None     # start_ticks of mpiexec, to know a reused pid
        self.argv = None

    # -- the command line ---------------------------------------------------------------

    def mpiexec_command(self):
        """The mpiexec program to run (a path); LaunchError naming the install if none."""
        if self.mpiexec is None:
            found = default_mpiexec()
            if found is None:
                raise LaunchError(f"no mpiexec found next to {sys.executable} or on PATH; "
                                  f"install one: {INSTALL_HINT}, or give its path (mpiexec=...)")
            return found
        found = shutil.which(self.mpiexec)
        if found is None:
            raise LaunchError(f"the mpiexec command {self.mpiexec!r} was not found or is not "
                              f"executable; give the right path, or install one: {INSTALL_HINT}")
        return found

    def command(self, mpiexec=None):
        """The full command line: mpiexec, ``-n N``, ``mpi_args``, the engine."""
        engine = self.engine_argv("--exit-with-parent", *(["--mpi", self.mpi] if self.mpi else []))
        return [mpiexec or self.mpiexec_command(), "-n", str(self.n), *self.mpi_args, *engine]

    # -- the launcher -------------------------------------------------------------------

    def start(self):
        """Start mpiexec (see the module doc); LaunchError if it cannot be run."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running (mpiexec pid {self.pid})")
        self.argv = self.command()
        env = child_env({MARKER_ENV: self.name})
        # a one-time credential cannot serve n engines: they use the engine FURL file
        env.pop(credentials.CREDENTIAL_ENV, None)
        self.launcher = ProcessLauncher(f"ipengine-mpi-{self.name}", self.argv, self.log_file,
                                        env=env)
        try:
            self.pid = self.launcher.start()
        except OSError as exc:
            raise LaunchError(f"cannot run {self.argv[0]}: {exc.strerror or exc}; "
                              f"install mpiexec ({INSTALL_HINT}) or give its path",
                              name=self.name, log_file=self.log_file) from None
        self.started = start_ticks(self.pid)

    def running(self):
        """True while this set's mpiexec runs (not a process that took its pid)."""
        if self.launcher is not None and self.launcher.process is not None:
            return self.launcher.is_alive()
        return (self.pid is not None and process_alive(self.pid)
                and start_ticks(self.pid) == self.started)

    def output(self):
        """What mpiexec (and the engines through it) wrote since it started."""
        if self.launcher is not None:
            return self.launcher.log_text()
        return read_log(self.log_file)

    def poll(self):
        """None while mpiexec runs; else its exit and the tail of its output."""
        if self.pid is None or self.running():
            return None
        code = self.launcher.exit_code if self.launcher is not None else None
        ended = (f"mpiexec (pid {self.pid}) exited with status {code}" if code is not None
                 else f"mpiexec (pid {self.pid}) is no longer running")
        shown = tail(self.output()) or "(no output)"
        return f"{ended}; the last lines of its output ({self.log_file}):\n{shown}"

    def job_pids(self):
        """The local processes of the job still running: mpiexec (if it is
        this set's), the processes below it and those marked as this set's."""
        pids = [self.pid] if self.running() else []
        if pids:
            pids += descendants(self.pid)
        pids += [pid for pid in marked(self.name) if pid not in pids]
        return [pid for pid in pids if pid != os.getpid() and process_alive(pid)]

    def stop(self, timeout=30.0):
        """SIGTERM to mpiexec (it forwards it to the ranks), then SIGKILL for
        whatever of the job still runs after part of ``timeout``; returns once
        all of it is gone.  Safe to call again."""
        deadline = time.monotonic() + timeout
        pids = self.job_pids()
        if pids:
            if self.running():
                signal_quietly(self.pid, signal.SIGTERM)
            else:   # mpiexec is gone: its ranks get the signal themselves
                for pid in pids:
                    signal_quietly(pid, signal.SIGTERM)
            left = self._wait_gone(time.monotonic() + timeout * GRACE_SHARE)
            for pid in left:
                signal_quietly(pid, signal.SIGKILL)
            left = self._wait_gone(deadline)
            if left:
                raise LaunchError(f"processes {left} of {self.name} still run {timeout:g} s "
                                  f"after they were asked to stop", name=self.name,
                                  log_file=self.log_file)
        if self.launcher is not None:
            self.launcher.wait(max(0.1, deadline - time.monotonic()))   # reap mpiexec

    def _wait_gone(self, deadline):
        while True:
            if self.launcher is not None and self.launcher.process is not None:
                self.launcher.process.poll()    # reap mpiexec once it exits
            left = self.job_pids()
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(POLL_INTERVAL)

    def describe(self):
        """One row: mpiexec's pid, the hosts and whether it runs."""
        if self.pid is None:
            state = "not started"
        elif self.running():
            state = "running"
        else:
            code = self.launcher.exit_code if self.launcher is not None else None
            state = "gone" if code is None else f"exited ({code})"
        return [{"job": self.pid, "hosts": hosts_of(self.mpi_args), "state": state}]

    # -- records ------------------------------------------------------------------------

    def state(self):
        return {"pid": self.pid, "started": self.started, "mpiexec": self.mpiexec,
                "mpi_args": self.mpi_args, "mpi": self.mpi, "argv": self.argv,
                "log_file": str(self.log_file)}

    @classmethod
    def from_record(cls, cluster, record):
        state = record.get("state") or {}
        found = cls(cluster, record["n"], mpiexec=state.get("mpiexec"),
                    mpi_args=state.get("mpi_args") or (), mpi=state.get("mpi"),
                    name=record["name"])
        found.pid = state.get("pid")
        found.started = state.get("started")
        found.argv = state.get("argv")
        if state.get("log_file"):
            found.log_file = Path(state["log_file"])
        return found
