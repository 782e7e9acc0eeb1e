"""Engine sets: engines started together by one launcher.

An :class:`EngineSet` is what one launcher starts: ``n`` engines in a batch
job array (Slurm, PBS, SGE, LSF), in one ``mpiexec`` run, or over ssh on
the hosts of a clusterfile.  :class:`~ipkernel.cluster.cluster.Cluster` and
``ipcluster`` drive every mode through this one surface:

* :meth:`~EngineSet.start` launches them and returns once the launcher
  accepted them (a job id was given, the processes run); it raises
  :class:`~ipkernel.cluster.launcher.LaunchError` with the launcher's own
  text (``sbatch``'s stderr, ssh's message) and what to do.  Whether the
  engines registered is the controller's business, not the launcher's.
* :meth:`~EngineSet.poll` is None while the engines may still run and the
  reason once the launcher's job or processes ended (a job that failed, an
  ``mpiexec`` that exited).
* :meth:`~EngineSet.stop` stops them (``scancel``, ``qdel``, ``bkill``,
  signals) and returns once the scheduler no longer lists the jobs and the
  processes are gone; safe to call again.
* :meth:`~EngineSet.describe` gives a row per job or host for
  ``ipcluster status``.

Every set writes a record (:meth:`~EngineSet.save`, a JSON file in the
cluster directory's ``jobs/``), so that ``ipcluster stop`` in another
process can stop what a crashed ``ipcluster`` left behind
(:func:`saved_sets`, :meth:`~EngineSet.from_record`).
"""
import importlib
import json
import os
import sys
import time
from abc import ABC, abstractmethod

from ipkernel.clusterdir import ClusterDir, ensure_private_dir, write_private_file

#: The folder of the cluster directory that holds the records.
JOBS_DIR = "jobs"

#: mode -> "module:class" of its engine set (imported when first used).
MODES = {
    "mpiexec": "ipkernel.cluster.mpi:MPIEngineSet",
    "ssh": "ipkernel.cluster.ssh:SSHEngineSet",
    "slurm": "ipkernel.cluster.batch.slurm:SlurmEngineSet",
    "pbs": "ipkernel.cluster.batch.pbs:PBSEngineSet",
    "sge": "ipkernel.cluster.batch.sge:SGEEngineSet",
    "lsf": "ipkernel.cluster.batch.lsf:LSFEngineSet",
}
#: The batch-scheduler modes (those that can also run the controller).
BATCH_MODES = ("slurm", "pbs", "sge", "lsf")
#: Other names of a mode.
ALIASES = {"mpirun": "mpiexec"}


def canonical_mode(mode):
    """The mode ``mode`` names (an alias resolved); ValueError naming the choices."""
    mode = ALIASES.get(mode, mode)
    if mode not in MODES and mode != "local":
        choices = ", ".join(["local", *MODES, *ALIASES])
        raise ValueError(f"unknown launcher mode {mode!r}: choose one of {choices}")
    return mode


def engine_set_class(mode):
    """The :class:`EngineSet` subclass of ``mode`` (not ``local``)."""
    mode = canonical_mode(mode)
    if mode == "local":
        raise ValueError("local engines are started by LocalCluster, not an engine set")
    module, _, name = MODES[mode].partition(":")
    return getattr(importlib.import_module(module), name)


def default_engine_command():
    """The engine command line for another host: this Python by absolute path
    (not resolved through symlinks, so a virtualenv stays a virtualenv), so a
    shared filesystem or an identical install path just works."""
    return [os.path.abspath(sys.executable), "-m", "ipkernel.engine"]


class EngineSet(ABC):
    """``n`` engines of cluster directory ``cluster`` started by one launcher.

    ``engine_command``: the engine program on the other side (a list, or a
    shell-like string; default :func:`default_engine_command`);
    ``engine_args``: more ``ipengine`` arguments.  ``name`` tells sets of
    one cluster apart (default: the mode and the start time).
    """

    #: The mode this class launches (a key of :data:`~ipkernel.cluster.engineset.MODES`).
    mode = None

    def __init__(self, cluster, n, *, engine_command=None, engine_args=(), name=None):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive number of engines, not {n!r}")
        self.cluster = cluster if isinstance(cluster, ClusterDir) else ClusterDir(cluster)
        self.n = n
        if isinstance(engine_command, str):
            import shlex
            engine_command = shlex.split(engine_command)
        self.engine_command = [str(a) for a in (engine_command or default_engine_command())]
        from ipkernel.engine.group import refuse_group_args
        refuse_group_args(engine_args, f"an engine set ({self.mode})")
        self.engine_args = [str(a) for a in engine_args]
        self.name = name or f"{self.mode}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"

    def engine_argv(self, *extra):
        """The full engine command line: the command, ``--cluster-dir``, the
        engine arguments, then ``extra``."""
        return [*self.engine_command, "--cluster-dir", str(self.cluster.path),
                *self.engine_args, *map(str, extra)]

    # -- the launcher -------------------------------------------------------------------

    @abstractmethod
    def start(self):
        """Launch the engines; return once the launcher accepted them.

        Raises :class:`~ipkernel.cluster.launcher.LaunchError` whose message
        quotes the launcher's own error and says what to do."""

    @abstractmethod
    def poll(self):
        """None while the engines may still run; else why they ended (text)."""

    @abstractmethod
    def stop(self, timeout=30.0):
        """Stop the engines; return once the launcher no longer lists them.

        Safe to call again, and on a set rebuilt by :meth:`from_record`.
        Raises :class:`~ipkernel.cluster.launcher.LaunchError` if they are
        still listed after ``timeout`` seconds."""

    @abstractmethod
    def describe(self):
        """Rows for ``ipcluster status``: dicts with ``job`` (a job id or pid),
        ``hosts`` (text) and ``state`` (the launcher's word for it)."""

    # -- records ------------------------------------------------------------------------

    @abstractmethod
    def state(self):
        """What :meth:`from_record` needs to stop and describe the set (JSON-able)."""

    @classmethod
    @abstractmethod
    def from_record(cls, cluster, record):
        """A set rebuilt from :meth:`~ipkernel.cluster.engineset.EngineSet.record`
        in another process (it can stop and describe, not start)."""

    def record(self):
        """The saved form: mode, name, n and :meth:`state`."""
        return {"mode": self.mode, "name": self.name, "n": self.n, "state": self.state()}

    @property
    def record_file(self):
        """Where :meth:`save` writes the record."""
        return self.cluster.path / JOBS_DIR / f"{self.name}.json"

    def save(self):
        """Write the record (mode 0600)."""
        ensure_private_dir(self.record_file.parent)
        write_private_file(self.record_file, json.dumps(self.record(), indent=1), durable=False)

    def forget(self):
        """Remove the record (once stopped)."""
        try:
            self.record_file.unlink()
        except FileNotFoundError:
            pass

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}: {self.n} engines>"


def saved_sets(cluster):
    """The engine sets recorded in cluster directory ``cluster``, rebuilt
    (records that cannot be read are skipped)."""
    cluster = cluster if isinstance(cluster, ClusterDir) else ClusterDir(cluster)
    found = []
    folder = cluster.path / JOBS_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            found.append(engine_set_class(record["mode"]).from_record(cluster, record))
        except (OSError, ValueError, KeyError, TypeError, ImportError):
            continue
    return found
