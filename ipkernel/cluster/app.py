"""The ``ipcluster`` program: start, inspect and stop a cluster on this machine.

::

    ipcluster local -n 4            # in the foreground; Ctrl-C stops everything
    ipcluster start -n 4 --daemon   # in the background; returns once it is ready
    ipcluster status                # pids, uptime and liveness of every process
    ipcluster stop                  # stops the engines and the controller, waits for them

Every subcommand takes ``--cluster-dir`` (default ``$IPKERNEL_DIR`` or
``~/.ipkernel``) and ``--log-level`` / ``-v`` / ``-q`` (see
:func:`ipkernel.applog.add_arguments`): the level of ipcluster's own messages,
passed on to the controller and the engines it starts (before the
``--controller-args`` and ``--engine-args``, which may change it again).
The ``ipcluster ready`` line, the output of ``status`` and errors are
printed at every level.  The processes keep their pid files in its ``pid/`` folder
and their logs in ``log/`` (``ipcluster.log``, ``ipcontroller.log``,
``ipengine-<n>.log``).  A cluster directory holds one cluster at a time: a
second ``start`` says which one runs and exits with status 1.  Pid files of
processes that are gone are reported and removed.

``ipcluster local`` (and ``start`` without ``--daemon``) is the watching
process: it starts a :class:`~ipkernel.cluster.local.LocalCluster`, prints a
line starting with ``ipcluster ready`` and waits.  SIGINT, SIGTERM or SIGHUP
stop the engines, then the controller; so does the controller's own exit
(for example after ``kill(controller=True)`` from a client).  An engine that
crashes is started again with a back-off, as LocalCluster does
(:mod:`ipkernel.cluster.restarts`); ``--no-restart`` leaves it dead.
"""
import argparse
import logging
import shlex
import signal
import sys
import threading

from ipkernel import applog
from ipkernel.clusterdir import MULTIENGINE_FURL, ClusterDir
from ipkernel.cluster import pidfiles
from ipkernel.cluster.engineset import BATCH_MODES, MODES, saved_sets
from ipkernel.cluster.launcher import LaunchError, ProcessLauncher, child_env
from ipkernel.cluster.local import LocalCluster
from ipkernel.pids import process_alive

READY = "ipcluster ready"
#: How often the foreground process checks that the controller still runs.
WATCH_INTERVAL = 0.5
#: Extra time a daemon gets beyond its start timeout to report readiness.
DAEMON_MARGIN = 15.0
#: Bound of ``status``'s question to the controller.
STATUS_TIMEOUT = 10.0
LOG_NOTE = ("the level is passed on to the controller and the engines (before "
            "--controller-args and --engine-args, which may change it); errors, the "
            "ready line and the output of status are printed at every level")


# -- command line ---------------------------------------------------------------------

#: The launcher modes that start engines beyond this process's own children.
REMOTE_MODES = tuple(MODES)
MODE_HELP = {
    "local": "engines as processes on this machine",
    "mpiexec": "engines as one MPI job (mpiexec -n N; alias mpirun)",
    "ssh": "engines on the hosts of a clusterfile, started over ssh",
    "slurm": "engines as a Slurm job array (sbatch)",
    "pbs": "engines as a PBS/Torque job array (qsub)",
    "sge": "engines as a Grid Engine job array (qsub)",
    "lsf": "engines as an LSF job array (bsub)",
}


def _starting_options():
    starting = argparse.ArgumentParser(add_help=False)
    starting.add_argument("-n", "--num", dest="n", type=int, default=None,
                          help="number of engines (default 4; for ssh, the clusterfile's "
                               "total)")
    starting.add_argument("--daemon", action="store_true",
                          help="run in the background; return once the engines registered")
    starting.add_argument("--timeout", type=float, default=None,
                          help="seconds allowed for the controller and every engine to be "
                               "ready (default 60 here, 300 for batch jobs)")
    starting.add_argument("--controller-args", default="", metavar="ARGS",
                          help="extra ipcontroller arguments, one string: "
                               "--controller-args='--heartbeat-period 2'")
    starting.add_argument("--engine-args", default="", metavar="ARGS",
                          help="extra ipengine arguments, one string: "
                               "--engine-args='--exec-lines \"import numpy\"'")
    starting.add_argument("-r", "--reuse-furls", action="store_true",
                          help="the controller keeps its FURLs (and ports) across restarts")
    starting.add_argument("--client-port", type=int, metavar="PORT",
                          help="the controller's port for clients (default: any free one)")
    starting.add_argument("--engine-port", type=int, metavar="PORT",
                          help="the controller's port for engines (default: any free one)")
    starting.add_argument("--logdir", metavar="DIR",
                          help="where the logs go (default: log/ in the cluster directory)")
    return starting


def _local_options():
    local = argparse.ArgumentParser(add_help=False)
    local.add_argument("--no-restart", dest="restart", action="store_false",
                       help="leave engines that crash dead (by default an engine that "
                            "exits with a status other than 0 without being asked to stop "
                            "is started again: at once, then after 1, 2, 4 ... 30 s while "
                            "it keeps dying within 30 s of its start; given up when it "
                            "dies before registering 5 times in a row)")
    local.add_argument("--engine-furl", dest="engine_furl", action="store_true",
                       help="also write the engine FURL file (security/"
                            "ipcontroller-engine.furl), so that engines started by hand "
                            "can join; by default each engine ipcluster starts gets a "
                            "one-time credential instead and no such file exists")
    return local


def _remote_options(mode):
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument("--engine-cmd", metavar="COMMAND",
                        help="the engine command line on the engines' side (default: this "
                             "Python by absolute path, -m ipkernel.engine: a shared filesystem "
                             "or the same install path just works)")
    remote.add_argument("--controller", default="local",
                        choices=("local", *BATCH_MODES),
                        help="where the controller runs: here (local, the default) or in a "
                             "batch job of its own")
    remote.add_argument("--controller-queue", metavar="QUEUE",
                        help="the queue of the controller's batch job")
    if mode in BATCH_MODES:
        remote.add_argument("-q", "--queue", help="the queue (partition) of the engine job")
        remote.add_argument("-s", "--script", metavar="FILE",
                            help="a template for the engine job script (placeholders {n}, "
                                 "{engine_command}, {cluster_dir}, {log_dir}, {queue}, "
                                 "{job_name}; a job array is added unless it has one)")
    if mode == "mpiexec":
        remote.add_argument("--mpi", choices=["mpi4py"],
                            help="engines import this MPI module (MPI.COMM_WORLD ranks 0..N-1 "
                                 "become the engine ids)")
        remote.add_argument("--mpiexec-args", default="", metavar="ARGS",
                            help="extra mpiexec arguments, one string: "
                                 "--mpiexec-args='-f hosts'")
    if mode == "ssh":
        remote.add_argument("--clusterfile", metavar="FILE", required=True,
                            help="a Python file with engines = {'host': count, ...} and "
                                 "send_furl = True|False")
        remote.add_argument("--ssh-config", metavar="FILE",
                            help="an ssh configuration file (given to ssh and scp as -F)")
    return remote


def build_parser():
    """The argument parser of ``ipcluster``."""
    top = argparse.ArgumentParser(
        prog="ipcluster", description="Start, inspect and stop an ipkernel cluster "
        "(a controller and engines): on this machine, as an MPI job, over ssh or as "
        "batch jobs (Slurm, PBS, Grid Engine, LSF).")
    top.add_argument("--cluster-dir", help="cluster directory (default $IPKERNEL_DIR or "
                     "~/.ipkernel)")
    applog.add_arguments(top, "ipcluster", note=LOG_NOTE)
    # --cluster-dir and the log options are accepted after the subcommand
    # too; SUPPRESS keeps the top value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cluster-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    applog.add_arguments(common, "ipcluster", default=argparse.SUPPRESS, note=LOG_NOTE)
    # In the batch modes -q is the queue (as in 0.10); --quiet stays.
    batch_common = argparse.ArgumentParser(add_help=False)
    batch_common.add_argument("--cluster-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    applog.add_arguments(batch_common, "ipcluster", default=argparse.SUPPRESS, note=LOG_NOTE,
                         short_quiet=False)
    starting = _starting_options()
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in ("local", "start"):
        what = (MODE_HELP["local"] if name == "local"
                else "the same as local (kept from earlier versions)")
        commands.add_parser(name, parents=[common, starting, _local_options()],
                            help=f"{what}; in the foreground (Ctrl-C stops it) or --daemon")
    for mode in REMOTE_MODES:
        commands.add_parser(mode, parents=[batch_common if mode in BATCH_MODES else common,
                                           starting, _remote_options(mode)],
                            aliases=["mpirun"] if mode == "mpiexec" else [],
                            help=f"{MODE_HELP[mode]}; in the foreground or --daemon")
    stop = commands.add_parser("stop", parents=[common],
                               help="stop the cluster's engines (cancelling batch jobs) and "
                                    "controller")
    stop.add_argument("--timeout", type=float, default=30.0,
                      help="seconds allowed for a polite stop before processes are killed "
                           "(default 30)")
    commands.add_parser("status", parents=[common],
                        help="show the cluster's processes and jobs (exit status 1 if none "
                             "runs)")
    return top


#: The level of ipcluster's own messages (set by :func:`main`).
_level = applog.DEFAULT_LEVEL
_logging_configured = False


def _shown(level):
    return applog.LEVEL_NAMES.index(level) >= applog.LEVEL_NAMES.index(_level)


def say(message, level="info", always=False):
    """Print ``message`` (on stdout) if ``level`` is shown, or ``always``."""
    if always or _shown(level):
        print(message, flush=True)


def _configure_logging(level):
    # LocalCluster's and the launchers' messages (stdlib logging), on stderr.
    global _logging_configured
    logger = logging.getLogger("ipkernel.cluster")
    if not _logging_configured:
        _logging_configured = True
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("ipcluster: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel({"warn": "WARNING"}.get(level, level.upper()))


def complain(message):
    print(f"ipcluster: {message}", file=sys.stderr, flush=True)


def clean_stale(cluster):
    """Remove (and report) pid files of processes that are gone; return the live records."""
    records = pidfiles.scan(cluster.pid)
    for record in pidfiles.remove_stale(records):
        say(f"removed the stale pid file {record.path} (pid {record.pid} is not running)")
    return [r for r in records if r.alive]


def refuse_if_running(cluster):
    """An error message if a cluster runs in ``cluster``, else None."""
    live = clean_stale(cluster)
    if not live:
        return None
    who = ", ".join(f"{r.name} (pid {r.pid})" for r in live)
    return (f"a cluster is already running in {cluster.path}: {who}; "
            f"`ipcluster stop --cluster-dir {cluster.path}` stops it")


# -- local / start in the foreground ----------------------------------------------------

class _StopRequested(BaseException):
    """A stop signal arrived while the cluster was starting."""


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP as a stop request.

    While ``raising`` is set the first signal raises :class:`_StopRequested`
    (interrupting the start); afterwards signals only set ``requested``.
    """

    SIGNALS = [s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s)]

    def __init__(self):
        self.requested = threading.Event()
        self.signal_name = None
        self.raising = True
        self._previous = {}

    def install(self):
        for name in self.SIGNALS:
            signum = getattr(signal, name)
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name
        self.requested.set()
        if self.raising:
            self.raising = False
            raise _StopRequested()


def _split(text):
    return shlex.split(text) if text else []


def controller_args(options):
    """The ipcontroller arguments ``options`` ask for (log level first)."""
    args = ["--log-level", options.log_level]
    if options.reuse_furls:
        args.append("--reuse-furls")
    for role in ("client", "engine"):
        port = getattr(options, f"{role}_port")
        if port is not None:
            args += [f"--{role}-port", str(port)]
    return args + _split(options.controller_args)


def make_cluster(options, cluster):
    """The LocalCluster or Cluster that ``options`` describe."""
    engine_args = ["--log-level", options.log_level, *_split(options.engine_args)]
    if options.command in ("local", "start"):
        return LocalCluster(options.n, cluster, timeout=options.timeout,
                            controller_args=controller_args(options), engine_args=engine_args,
                            restart=options.restart, engine_furl_file=options.engine_furl)
    from ipkernel.cluster.cluster import Cluster
    mode_options = {}
    if options.command in BATCH_MODES:
        mode_options.update(queue=options.queue, script=options.script)
    elif options.command == "mpiexec":
        mode_options.update(mpi=options.mpi, mpi_args=_split(options.mpiexec_args))
    elif options.command == "ssh":
        mode_options.update(clusterfile=options.clusterfile, ssh_config=options.ssh_config)
    return Cluster(options.n, cluster, engines=options.command, controller=options.controller,
                   controller_queue=options.controller_queue, engine_command=options.engine_cmd,
                   controller_args=controller_args(options), engine_args=engine_args,
                   timeout=options.timeout, **mode_options)


def ready_line(lc, options):
    """The ``ipcluster ready`` line: the processes or the jobs, and the client FURL file."""
    furl = ClusterDir(lc.cluster_dir).furl_file(MULTIENGINE_FURL)
    controller = getattr(lc.controller, "pid", None)
    where = f"ipcontroller pid {controller}" if controller else f"ipcontroller {lc.controller}"
    if isinstance(lc, LocalCluster):
        pids = " ".join(str(e.pid) for e in lc.engines)
        return (f"{READY}: {where}, {options.n} engines (pids {pids or '-'}); "
                f"client FURL file {furl}")
    jobs = ", ".join(f"{r['job']} on {r.get('hosts') or '?'}" for r in lc.describe())
    return (f"{READY}: {where}, {options.n} engines ({options.command}: {jobs or '-'}); "
            f"client FURL file {furl}")


def run_foreground(options, cluster):
    """Run the cluster until a stop signal or the controller's exit; return the exit status."""
    supervisor_pid = cluster.pid_file(pidfiles.SUPERVISOR)
    problem = refuse_if_running(cluster)
    if problem:
        complain(problem)
        return 1
    try:
        pidfiles.claim(supervisor_pid)
    except pidfiles.AlreadyRunning as exc:
        complain(f"{exc}; `ipcluster stop` stops it")
        return 1
    signals = StopSignals()
    signals.install()
    lc = None
    try:
        try:
            lc = make_cluster(options, cluster)
            how = "" if options.command in ("local", "start") else f" ({options.command})"
            say(f"ipcluster: starting a controller and {options.n} engines{how} in "
                f"{cluster.path}")
            lc.start()
            signals.raising = False
        except _StopRequested:
            complain(f"stopped by {signals.signal_name} while starting")
            return 1
        except (LaunchError, ValueError) as exc:
            complain(f"the cluster did not start: {exc}")
            return 1
        say(ready_line(lc, options), always=True)
        url = cluster.dashboard_url()
        if url:
            say(f"ipcluster: dashboard: {url}", always=True)
        return watch(lc, signals) if isinstance(lc, LocalCluster) else watch_sets(lc, signals)
    finally:
        signals.raising = False
        try:
            if lc is not None:
                try:
                    lc.stop()
                except LaunchError as exc:
                    complain(str(exc))
        finally:
            pidfiles.release(supervisor_pid)
            signals.restore()
        say("ipcluster: stopped")


def watch(lc, signals):
    """Wait for a stop request or the controller's exit, reporting engines that
    exit (when restarts are on, the restarter reports them)."""
    reported = set()
    while not signals.requested.wait(WATCH_INTERVAL):
        for engine in () if lc.restarts_engines else lc.engines:
            if (engine.name, engine.pid) not in reported and not engine.is_alive():
                reported.add((engine.name, engine.pid))
                why = "--no-restart" if lc.restart_policy is None else "restarts cannot work here"
                say(f"ipcluster: {engine.name} (pid {engine.pid}) exited with status "
                    f"{engine.exit_code} (not restarted: {why})",
                    "info" if engine.exit_code == 0 else "warn")
        if not lc.controller.is_alive():
            say(f"ipcluster: ipcontroller exited with status {lc.controller.exit_code}; "
                f"stopping the engines", "info" if lc.controller.exit_code == 0 else "warn")
            return 0 if lc.controller.exit_code == 0 else 1
    say(f"ipcluster: {signals.signal_name} received; stopping the engines and the controller")
    return 0


def watch_sets(cluster, signals):
    """:func:`watch` for a :class:`~ipkernel.cluster.cluster.Cluster`: reports
    engine jobs that end; the controller's end stops everything."""
    reported = set()
    while not signals.requested.wait(WATCH_INTERVAL):
        for engine_set in cluster.engine_sets:
            ended = None if engine_set.name in reported else engine_set.poll()
            if ended:
                reported.add(engine_set.name)
                say(f"ipcluster: the engines of {engine_set.name} ended: {ended}", "warn")
        if not cluster.controller.is_alive():
            code = getattr(cluster.controller, "exit_code", None)
            say(f"ipcluster: the controller ended (status {code}); stopping the engines",
                "info" if code == 0 else "warn")
            return 0 if code == 0 else 1
    say(f"ipcluster: {signals.signal_name} received; stopping the engines and the controller")
    return 0


# -- --daemon ---------------------------------------------------------------------------

_DID_NOT_START = "ipcluster: the cluster did not start: "


def daemon_failure(daemon, error):
    """Why the background ``ipcluster`` did not start: its own complaint
    (which names the process or job that failed and ends with its log or the
    launcher's text), or else ``error`` (the daemon's :class:`LaunchError`)."""
    text = daemon.log_text()
    start = text.rfind(_DID_NOT_START)
    if start < 0:
        return str(error)
    reason = text[start + len(_DID_NOT_START):]
    end = reason.find("\nipcluster: stopped")
    reason = reason[:end] if end >= 0 else reason
    return f"{reason.rstrip()}\n(the background ipcluster's log: {daemon.log_file})"


def daemon_argv(argv, cluster):
    """The command line of the background ipcluster: ``argv`` without
    ``--daemon``, with the cluster directory made explicit."""
    given = any(a == "--cluster-dir" or a.startswith("--cluster-dir=") for a in argv)
    return [sys.executable, "-m", "ipkernel.cluster", *(a for a in argv if a != "--daemon"),
            *([] if given else ["--cluster-dir", str(cluster.path)])]


def start_daemon(options, cluster, argv):
    """Start this ipcluster command detached; return once it is ready."""
    problem = refuse_if_running(cluster)
    if problem:
        complain(problem)
        return 1
    daemon = ProcessLauncher("ipcluster", daemon_argv(argv, cluster),
                             cluster.log / "ipcluster.log", env=child_env(), ready_text=READY)
    daemon.start()
    try:
        daemon.wait_ready(options.timeout + DAEMON_MARGIN)
    except LaunchError as exc:
        daemon.shutdown()
        complain(f"the cluster did not start: {daemon_failure(daemon, exc)}")
        return 1
    except KeyboardInterrupt:
        daemon.shutdown()
        complain("interrupted; the cluster was stopped")
        return 130
    how = "" if options.command in ("local", "start") else f" ({options.command})"
    url = cluster.dashboard_url()
    say(f"ipcluster: a controller and {options.n} engines{how} run in the background "
        f"(ipcluster pid {daemon.pid}).\n"
        f"  client FURL file: {cluster.furl_file(MULTIENGINE_FURL)}\n"
        + (f"  dashboard:        {url}\n" if url else "") +
        f"  logs:             {cluster.log}\n"
        f"  stop it with:     ipcluster stop --cluster-dir {cluster.path}")
    return 0


# -- stop -------------------------------------------------------------------------------

def stop(options, cluster):
    """Stop the watching process (which stops its processes and cancels its
    jobs), then anything left: processes with pid files, recorded jobs."""
    live = clean_stale(cluster)
    recorded = saved_sets(cluster)
    if not live and not recorded:
        complain(f"no cluster is running in {cluster.path}")
        return 1
    for record in live:
        if record.name == pidfiles.SUPERVISOR:
            pidfiles.terminate([record.pid], options.timeout)
    left = [r.pid for r in live if process_alive(r.pid)]
    survivors = pidfiles.terminate(left, options.timeout)
    pidfiles.remove_stale(pidfiles.scan(cluster.pid))
    problems = [f"could not stop the processes {survivors}"] if survivors else []
    stopped = [f"{r.name} (pid {r.pid})" for r in live]
    for engine_set in saved_sets(cluster):   # those the watching process did not stop
        try:
            engine_set.stop(options.timeout)
        except LaunchError as exc:
            problems.append(str(exc))
            continue
        engine_set.forget()
        stopped.append(f"the engines of {engine_set.name}")
    for problem in problems:
        complain(problem)
    if stopped:
        say(f"ipcluster: stopped {', '.join(stopped)}")
    return 1 if problems else 0


# -- status -----------------------------------------------------------------------------

def format_uptime(seconds):
    """``1:02:03``, or ``2 d 1:02:03`` past a day."""
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    clock = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{days} d {clock}" if days else clock


def format_table(header, rows):
    """Rows of strings as aligned columns under ``header``."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


def registered_engines(cluster, timeout=STATUS_TIMEOUT):
    """The controller's answer to ``get_ids`` as text (or why there is none)."""
    from ipkernel.client import MultiEngineClient
    from ipkernel.error import KernelError
    try:
        with MultiEngineClient(str(cluster.furl_file(MULTIENGINE_FURL)), timeout=timeout,
                               progress=False) as mec:
            ids = mec.get_ids()
    except (KernelError, OSError, ValueError) as exc:
        return f"unknown ({type(exc).__name__}: {exc})"
    return f"engines {ids}" if ids else "no engines"


def job_rows(cluster):
    """``status`` rows of the recorded engine sets (batch jobs, ssh hosts, mpiexec)."""
    rows = []
    for engine_set in saved_sets(cluster):
        try:
            described = engine_set.describe()
        except LaunchError as exc:
            described = [{"job": "?", "hosts": "?", "state": f"unknown ({exc})"}]
        for row in described:
            rows.append((engine_set.name, engine_set.mode, row.get("job", "?"),
                         row.get("hosts") or "-", row.get("state", "?")))
    return rows


def status(options, cluster):
    """Print the table of processes and jobs; 0 if the controller runs, else 1."""
    records = pidfiles.scan(cluster.pid)
    jobs = job_rows(cluster)
    say(f"cluster directory: {cluster.path}", always=True)
    if jobs:
        say(format_table(("ENGINES", "MODE", "JOB", "HOSTS", "STATE"), jobs), always=True)
    if not records:
        say("no cluster is running (no pid files)", always=True)
        return 1
    rows = []
    for record in records:
        alive = "yes" if record.alive else "no (stale pid file removed)"
        uptime = format_uptime(record.uptime) if record.alive else "-"
        rows.append((record.name, record.pid if record.pid is not None else "?", alive, uptime))
    pidfiles.remove_stale(records)
    say(format_table(("PROCESS", "PID", "ALIVE", "UPTIME"), rows), always=True)
    engines = sum(1 for r in records if r.alive and r.name.startswith(pidfiles.ENGINE_PREFIX))
    controller = any(r.alive and r.name == pidfiles.CONTROLLER for r in records)
    if controller:
        say(f"{engines} engine(s) running; client FURL file "
            f"{cluster.furl_file(MULTIENGINE_FURL)}", always=True)
        say(f"registered with the controller: {registered_engines(cluster)}", always=True)
        url = cluster.dashboard_url()
        say(f"dashboard: {url}" if url else "dashboard: not served (--no-dashboard)",
            always=True)
        return 0
    say("the controller is not running", always=True)
    return 1


# -- entry points -----------------------------------------------------------------------

def default_count(options):
    """``-n`` when none is given: the clusterfile's total for ssh, else 4."""
    if options.command == "ssh":
        from ipkernel.cluster.clusterfile import load
        return load(options.clusterfile).total
    return 4


#: ``--timeout`` when none is given: a batch queue may take a while.
DEFAULT_TIMEOUTS = {"local": 60.0, "start": 60.0, "mpiexec": 120.0, "ssh": 120.0}
BATCH_TIMEOUT = 300.0


def main(argv=None):
    """Run ``ipcluster`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    global _level
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    options = build_parser().parse_args(argv)
    _level = options.log_level
    _configure_logging(_level)
    if options.command == "mpirun":
        options.command = "mpiexec"
    if options.command not in ("stop", "status") and options.n is None:
        try:
            options.n = default_count(options)
        except ValueError as exc:
            complain(str(exc))
            return 2
    if getattr(options, "n", 0) < 0:
        complain("-n must not be negative")
        return 2
    if getattr(options, "timeout", 0) is None:
        options.timeout = DEFAULT_TIMEOUTS.get(options.command, BATCH_TIMEOUT)
    cluster = ClusterDir(options.cluster_dir, getattr(options, "logdir", None)).create()
    if options.command == "stop":
        return stop(options, cluster)
    if options.command == "status":
        return status(options, cluster)
    if options.daemon:
        return start_daemon(options, cluster, argv)
    return run_foreground(options, cluster)


def run():
    """Console entry point of ``ipcluster``."""
    sys.exit(main())
