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

def build_parser():
    """The argument parser of ``ipcluster``."""
    top = argparse.ArgumentParser(
        prog="ipcluster", description="Start, inspect and stop an ipkernel cluster "
        "(a controller and engines) on this machine.")
    top.add_argument("--cluster-dir", help="cluster directory (default $IPKERNEL_DIR or "
                     "~/.ipkernel)")
    applog.add_arguments(top, "ipcluster", note=LOG_NOTE)
    # --cluster-dir and the log options are accepted after the subcommand
    # too; SUPPRESS keeps the top value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cluster-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    applog.add_arguments(common, "ipcluster", default=argparse.SUPPRESS, note=LOG_NOTE)
    starting = argparse.ArgumentParser(add_help=False)
    starting.add_argument("-n", "--num", dest="n", type=int, default=4,
                          help="number of engines (default 4)")
    starting.add_argument("--timeout", type=float, default=60.0,
                          help="seconds allowed for the controller and every engine to be "
                               "ready (default 60)")
    starting.add_argument("--controller-args", default="", metavar="ARGS",
                          help="extra ipcontroller arguments, one string: "
                               "--controller-args='--heartbeat-period 2'")
    starting.add_argument("--engine-args", default="", metavar="ARGS",
                          help="extra ipengine arguments, one string: "
                               "--engine-args='--exec-lines \"import numpy\"'")
    starting.add_argument("--no-restart", dest="restart", action="store_false",
                          help="leave engines that crash dead (by default an engine that "
                               "exits with a status other than 0 without being asked to stop "
                               "is started again: at once, then after 1, 2, 4 ... 30 s while "
                               "it keeps dying within 30 s of its start; given up when it "
                               "dies before registering 5 times in a row)")
    starting.add_argument("--engine-furl", dest="engine_furl", action="store_true",
                          help="also write the engine FURL file (security/"
                               "ipcontroller-engine.furl), so that engines started by hand "
                               "can join; by default each engine ipcluster starts gets a "
                               "one-time credential instead and no such file exists")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("local", parents=[common, starting],
                        help="run a cluster in the foreground (Ctrl-C stops it)")
    start = commands.add_parser("start", parents=[common, starting],
                                help="start a cluster (in the background with --daemon)")
    start.add_argument("--daemon", action="store_true",
                       help="run in the background; return once the cluster is ready")
    stop = commands.add_parser("stop", parents=[common],
                               help="stop the cluster's engines and controller")
    stop.add_argument("--timeout", type=float, default=30.0,
                      help="seconds allowed for a polite stop before processes are killed "
                           "(default 30)")
    commands.add_parser("status", parents=[common],
                        help="show the cluster's processes (exit status 1 if none runs)")
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
    level = ["--log-level", options.log_level]
    lc = LocalCluster(options.n, cluster.path, timeout=options.timeout,
                      controller_args=level + _split(options.controller_args),
                      engine_args=level + _split(options.engine_args),
                      restart=options.restart, engine_furl_file=options.engine_furl)
    try:
        try:
            say(f"ipcluster: starting a controller and {options.n} engines in {cluster.path}")
            lc.start()
            signals.raising = False
        except _StopRequested:
            complain(f"stopped by {signals.signal_name} while starting")
            return 1
        except LaunchError as exc:
            complain(f"the cluster did not start: {exc}")
            return 1
        engines = " ".join(str(e.pid) for e in lc.engines)
        say(f"{READY}: ipcontroller pid {lc.controller.pid}, {options.n} engines "
            f"(pids {engines or '-'}); client FURL file {lc.mec_furl_file}", always=True)
        return watch(lc, signals)
    finally:
        signals.raising = False
        try:
            lc.stop()
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


# -- start --daemon ---------------------------------------------------------------------

_DID_NOT_START = "ipcluster: the cluster did not start: "


def daemon_failure(daemon, error):
    """Why the background ``ipcluster local`` did not start: its own complaint
    (which names the process that failed and ends with that process's log),
    or else ``error`` (the daemon's :class:`LaunchError`)."""
    text = daemon.log_text()
    start = text.rfind(_DID_NOT_START)
    if start < 0:
        return str(error)
    reason = text[start + len(_DID_NOT_START):]
    end = reason.find("\nipcluster: stopped")
    reason = reason[:end] if end >= 0 else reason
    return f"{reason.rstrip()}\n(the background ipcluster's log: {daemon.log_file})"


def start_daemon(options, cluster):
    """Start ``ipcluster local`` detached; return once it is ready."""
    problem = refuse_if_running(cluster)
    if problem:
        complain(problem)
        return 1
    argv = [sys.executable, "-m", "ipkernel.cluster", "local", "--cluster-dir", cluster.path,
            "-n", options.n, "--timeout", options.timeout, "--log-level", options.log_level,
            f"--controller-args={options.controller_args}",
            f"--engine-args={options.engine_args}", *([] if options.restart else ["--no-restart"]),
            *(["--engine-furl"] if options.engine_furl else [])]
    daemon = ProcessLauncher("ipcluster", argv, cluster.log / "ipcluster.log",
                             env=child_env(), ready_text=READY)
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
    say(f"ipcluster: a controller and {options.n} engines run in the background "
        f"(ipcluster pid {daemon.pid}).\n"
        f"  client FURL file: {cluster.furl_file(MULTIENGINE_FURL)}\n"
        f"  logs:             {cluster.log}\n"
        f"  stop it with:     ipcluster stop --cluster-dir {cluster.path}")
    return 0


# -- stop -------------------------------------------------------------------------------

def stop(options, cluster):
    """Stop the watching process (which stops its processes), then anything left."""
    live = clean_stale(cluster)
    if not live:
        complain(f"no cluster is running in {cluster.path}")
        return 1
    for record in live:
        if record.name == pidfiles.SUPERVISOR:
            pidfiles.terminate([record.pid], options.timeout)
    left = [r.pid for r in live if process_alive(r.pid)]
    survivors = pidfiles.terminate(left, options.timeout)
    pidfiles.remove_stale(pidfiles.scan(cluster.pid))
    if survivors:
        complain(f"could not stop the processes {survivors}")
        return 1
    names = ", ".join(f"{r.name} (pid {r.pid})" for r in live)
    say(f"ipcluster: stopped {names}")
    return 0


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


def status(options, cluster):
    """Print the table of processes; 0 if the controller runs, else 1."""
    records = pidfiles.scan(cluster.pid)
    say(f"cluster directory: {cluster.path}", always=True)
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
        return 0
    say("the controller is not running", always=True)
    return 1


# -- entry points -----------------------------------------------------------------------

def main(argv=None):
    """Run ``ipcluster`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    global _level
    options = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    _level = options.log_level
    _configure_logging(_level)
    if getattr(options, "n", 0) < 0:
        complain("-n must not be negative")
        return 2
    cluster = ClusterDir(options.cluster_dir).create()
    if options.command == "local" or (options.command == "start" and not options.daemon):
        return run_foreground(options, cluster)
    if options.command == "start":
        return start_daemon(options, cluster)
    if options.command == "stop":
        return stop(options, cluster)
    return status(options, cluster)


def run():
    """Console entry point of ``ipcluster``."""
    sys.exit(main())
