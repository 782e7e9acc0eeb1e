"""The ``ipengine`` program: one engine process that registers with a controller.

User code runs in the process's main thread (a
:class:`~ipkernel.engine.mainthread.MainThreadExecutor`)
while the Twisted reactor runs in a background thread.  So the engine keeps
answering the controller (heartbeats, ``interrupt``, ``kill``) while user
code is busy, and ``interrupt`` is a real SIGINT that also breaks
``time.sleep`` and other blocking calls.

* The engine reads the controller's engine FURL from ``--furl-file``
  (default: ``security/ipcontroller-engine.furl`` in the cluster
  directory), waiting up to ``--furl-wait`` seconds for it to appear.
  An engine started by LocalCluster or ipcluster gets a one-time
  credential in ``$IPKERNEL_ENGINE_CREDENTIAL`` instead and registers
  through the gate (default ``security/ipcontroller-engine-gate.furl``;
  see :mod:`ipkernel.credentials`).
* Before registering it starts its pulse process
  (:mod:`ipkernel.engine.pulse`), which tells the controller the engine is
  busy while code holding the GIL keeps it from answering pings
  (``--no-pulse``: none).
* It registers (asking for its MPI rank as id with ``--mpi=mpi4py``) and
  stays registered: after a controller restart with ``-r`` it reconnects
  and registers again, asking for its old id.  It says within seconds why
  the controller cannot be reached; when nothing at all answers at the
  FURL's addresses for ``--unreachable-timeout`` seconds (default 10) it
  exits with status 1, naming them; a stale FURL (one the controller
  there does not know) ends it at once with status 1.  A controller that
  shuts down deliberately tells its engines: they wait ``--stop-wait``
  seconds for it to come back, then exit with status 0; after a crash they
  reconnect for ``--reconnect-timeout`` seconds, then exit with status 1
  (see :mod:`ipkernel.engine.connector`).
* ``--exec-lines`` and ``--startup-script`` run at start and after every
  ``reset``.  If they fail at start, the engine logs the user's traceback
  and exits with status 1 without registering (a launcher waiting for it
  shows that text); after a ``reset`` a failure is only logged.
* It logs at ``--log-level`` (``-v``, ``-q``; see
  :func:`ipkernel.applog.add_arguments`); its ``ipengine ready`` line is
  logged at every level.
* A SIGINT while user code runs interrupts it (the call fails with
  KeyboardInterrupt, the engine stays); a SIGINT while idle is logged and
  ignored, but two within 2 s stop the engine (Ctrl-C twice).
* ``kill`` from a client is answered at once, even while user code runs:
  that code is interrupted (its call fails with EngineError), and if it
  has not returned within :data:`KILL_FORCE` seconds the process exits
  anyway.
* ``-n N`` starts N engines forked from this process
  (:mod:`ipkernel.engine.group`).
* It stops on ``kill`` from a client, on SIGTERM, and with
  ``--exit-with-parent`` (or ``--parent-pid PID``) when the process that
  started it exits.

:func:`main` returns the exit status (0, or 1 when start-up failed);
:func:`run` is the console entry point.
"""
import argparse
import functools
import os
import sys
import threading
from pathlib import Path

from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger, globalLogPublisher

from ipkernel import applog, credentials, fcutil, hostaddrs, reactorloop
from ipkernel.pids import process_alive
from ipkernel.clusterdir import ENGINE_FURL, ClusterDir
from ipkernel.engine.connector import (DEFAULT_RECONNECT_TIMEOUT, DEFAULT_STOP_WAIT,
                                       EngineConnector, RegistrationTimeout, StaleFurl)
from ipkernel.engine.interpreter import DEFAULT_HISTORY_CAP
from ipkernel.engine.mainthread import MainThreadExecutor
from ipkernel.engine.pulse import Pulse, bind_host, furl_hosts
from ipkernel.engine.reactorgate import ReactorGate, drive_wanted
from ipkernel.engine.service import EngineService

log = Logger()

READY = "ipengine ready"
FURL_POLL = 0.01
#: Time left for the answer to ``kill`` to leave before the reactor stops.
KILL_GRACE = 0.2
#: Seconds a killed engine waits for the interrupted command to return before it exits anyway.
KILL_FORCE = 3.0
#: Default of ``--unreachable-timeout`` (seconds).
DEFAULT_UNREACHABLE_TIMEOUT = 10.0
#: How long the main thread waits for the reactor thread to finish stopping.
REACTOR_STOP_TIMEOUT = 15.0


class AppError(Exception):
    """A start-up problem to report in one line (the program exits with 1)."""


def _whole_number(minimum, what):
    """An argparse type: an int of at least ``minimum``, else the error
    "``what`` ``minimum`` or more"."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} {minimum} or more, not {text!r}")
        return value
    return parse


#: ``--engine-id``: a non-negative int.
engine_id_option = _whole_number(0, "an engine id is a number")
#: ``-n``: a positive int.
engines_option = _whole_number(1, "the number of engines is")


def build_parser():
    p = argparse.ArgumentParser(
        prog="ipengine",
        description="Start an ipkernel engine and register it with a controller.")
    p.add_argument("--cluster-dir", help="cluster directory (default $IPKERNEL_DIR or ~/.ipkernel)")
    p.add_argument("--furl-file", help=f"the controller's engine FURL file (default "
                   f"security/{ENGINE_FURL} in the cluster directory)")
    p.add_argument("--furl-wait", type=float, default=30.0,
                   help="seconds to wait for the FURL file to appear (default 30)")
    p.add_argument("--register-timeout", type=float, default=60.0,
                   help="give up if the first registration takes longer (seconds; 0 = wait "
                        "forever; default 60); a FURL the controller does not know (stale) "
                        "fails at once")
    p.add_argument("--unreachable-timeout", type=float, default=DEFAULT_UNREACHABLE_TIMEOUT,
                   metavar="SECONDS",
                   help=f"before the first registration: exit with status 1 when nothing at "
                        f"all answers at the FURL's addresses (connection refused, no route, "
                        f"no answer) for this long, naming the addresses tried (0 = only "
                        f"--register-timeout; default {DEFAULT_UNREACHABLE_TIMEOUT:g}); the "
                        f"first failed attempt is logged at once")
    p.add_argument("--reconnect-timeout", type=float, default=DEFAULT_RECONNECT_TIMEOUT,
                   help=f"after losing the controller without notice (a crash, the network), "
                        f"keep reconnecting this long, then exit with status 1 (seconds; 0 = "
                        f"forever; default {DEFAULT_RECONNECT_TIMEOUT:g})")
    p.add_argument("--stop-wait", type=float, default=DEFAULT_STOP_WAIT,
                   help=f"after the controller says it is shutting down (ipcluster stop, "
                        f"SIGTERM), wait this long for it to come back (a restart), then exit "
                        f"with status 0 (seconds; 0 = exit at once; default "
                        f"{DEFAULT_STOP_WAIT:g})")
    p.add_argument("--logfile", help="append the log here (default: stderr)")
    p.add_argument("-n", "--engines", type=engines_option, default=1, metavar="N",
                   help="start N engines on this host, forked from this process (they "
                        "start sooner, share the imported code's memory and answer small "
                        "calls faster than N ipengine processes); --logfile X.log gives "
                        "X-0.log, X-1.log, ... (see ipkernel.engine.group)")
    p.add_argument("--engine-id", type=engine_id_option, metavar="ID",
                   help="ask the controller for this engine id (given when it is free, as "
                        "after a restart of the engine that had it; else the lowest free one)")
    p.add_argument("--mpi", choices=["mpi4py"],
                   help="run under MPI: ask for engine id == MPI rank, `mpi` in the namespace")
    p.add_argument("--exec-lines", action="append", default=[], metavar="CODE",
                   help="Python code to run at start and after reset (repeatable); if it "
                        "fails at start, the engine logs the traceback and exits with "
                        "status 1 instead of registering")
    p.add_argument("--startup-script", metavar="FILE",
                   help="a Python file to run at start and after reset (after --exec-lines; "
                        "a failure at start also stops the engine)")
    p.add_argument("--history-cap", type=int, default=DEFAULT_HISTORY_CAP,
                   help=f"results kept for get_result (default {DEFAULT_HISTORY_CAP})")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="stop when the process that started this engine exits")
    p.add_argument("--parent-pid", type=int, metavar="PID",
                   help="stop when process PID exits (a launcher passes its own pid: no race "
                        "with a parent that exits very early)")
    p.add_argument("--no-pulse", action="store_true",
                   help="start no pulse process (the helper that tells the controller this "
                        "engine is busy while code holding the GIL keeps it from answering "
                        "pings); without it such code running longer than the heartbeat "
                        "timeout gets the engine dropped")
    applog.add_arguments(p, "ipengine")
    return p


#: The argument parser, made once per process (the zygote makes it before it forks).
parser = functools.cache(build_parser)


def load_mpi(kind):
    """The MPI module for ``--mpi=kind``, with ``rank`` and ``size`` set, or None."""
    if kind is None:
        return None
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise AppError(f"--mpi=mpi4py needs the mpi4py package, which cannot be imported "
                       f"({exc}); install it (pip install mpi4py) or start without --mpi") from None
    MPI.rank = MPI.COMM_WORLD.Get_rank()
    MPI.size = MPI.COMM_WORLD.Get_size()
    return MPI


def startup_lines(options):
    """The code to run at start (and after each reset), in order."""
    lines = list(options.exec_lines)
    if options.startup_script:
        path = Path(options.startup_script).expanduser().resolve()
        try:
            path.read_text()
        except OSError as exc:
            raise AppError(f"cannot read the startup script {str(path)!r}: {exc.strerror}") from None
        lines.append(f"exec(compile(open({str(path)!r}).read(), {str(path)!r}, 'exec'))")
    return lines


def startup_labels(options):
    """How the lines of :func:`startup_lines` are named in an error message."""
    labels = [f"--exec-lines {line!r}" for line in options.exec_lines]
    if options.startup_script:
        labels.append(f"the startup script {options.startup_script!r}")
    return labels


def run_startup_lines(shell, lines, labels=()):
    """Run the startup ``lines`` in ``shell`` (call it in the user thread), in
    order; raise :class:`AppError` with the user's traceback at the first
    that fails (named by its entry of ``labels``)."""
    from ipkernel.engine.interpreter import format_user_traceback

    labels = list(labels)
    for k, line in enumerate(lines):
        try:
            shell.execute(line)
        except BaseException as exc:  # noqa: B902 - user code may raise anything
            what = labels[k] if k < len(labels) else f"the startup line {line!r}"
            raise AppError(f"{what} failed, so the engine does not register: "
                           f"{type(exc).__name__}: {exc}\n"
                           f"{format_user_traceback(exc).rstrip()}") from None


async def wait_for_file(reactor, path, timeout, interval=FURL_POLL):
    """Return once ``path`` exists; raise AppError after ``timeout`` seconds.

    It looks every ``interval`` seconds and, where inotify is available, also
    as soon as a file is created or moved into the folder.
    """
    if os.path.exists(path):
        return
    log.info("waiting up to {t:g} s for the FURL file {path}", t=timeout, path=path)
    arrived = defer.Deferred()

    def look(*_):
        if not arrived.called and os.path.exists(path):
            arrived.callback(None)

    def late():
        if not arrived.called:
            arrived.errback(AppError(
                f"the FURL file {path} did not appear within {timeout:g} s: start "
                f"ipcontroller first, or give the right --cluster-dir/--furl-file"))
    watcher = _watch_folder(reactor, os.path.dirname(os.path.abspath(path)), look)
    poll = task.LoopingCall(look)
    poll.clock = reactor
    poll.start(interval, now=False)
    timer = reactor.callLater(timeout, late)
    try:
        await arrived
    finally:
        poll.stop()
        if timer.active():
            timer.cancel()
        if watcher is not None:
            watcher.loseConnection()


def _watch_folder(reactor, folder, changed):
    """An inotify watch calling ``changed()`` when a file appears in ``folder``
    (None where inotify or the folder is missing: then polling alone finds it)."""
    try:
        from twisted.internet import inotify
        from twisted.python.filepath import FilePath
        watcher = inotify.INotify(reactor)
    except Exception:  # not Linux, or no inotify instance left
        return None
    try:
        watcher.startReading()
        watcher.watch(FilePath(folder), mask=inotify.IN_CREATE | inotify.IN_MOVED_TO,
                      callbacks=[changed])
    except Exception:  # the folder does not exist (yet)
        watcher.loseConnection()
        return None
    return watcher


def controller_hosts(furl):
    """The hosts of ``furl``'s hints that this engine will dial: only the
    loopback ones when every hint names this host (a controller here
    listening on every address: its FURL has this host's addresses and
    loopback, and the Tub connects on loopback; see fcutil.DirectTCPHints)."""
    hosts = furl_hosts(furl)
    local = [h for h in hosts if hostaddrs.is_loopback(h)]
    if local and all(hostaddrs.is_own_address(h) or h in local for h in hosts):
        return local
    return hosts


class EngineApp:
    """The engine's Twisted side (runs in the reactor thread).  See the module doc."""

    def __init__(self, reactor, options, executor, mpi=None, exec_lines=()):
        self.reactor = reactor
        self.options = options
        self.executor = executor
        self.exit_code = 0
        self.killed = False
        cluster = ClusterDir(options.cluster_dir)
        # A credential from the launcher (LocalCluster, ipcluster): the engine
        # registers through the controller's gate.  Taken out of the
        # environment, so the user's code does not find it there.
        self.credential = os.environ.pop(credentials.CREDENTIAL_ENV, None) or None
        default = credentials.GATE_FURL if self.credential else ENGINE_FURL
        self.furl_file = options.furl_file or str(cluster.furl_file(default))
        self.top = service.MultiService()
        # The startup lines run once before registering (see start); the
        # service gets them afterwards, to run them again after each reset.
        self.exec_lines = list(exec_lines)
        self.service = EngineService(mpi=mpi, history_cap=options.history_cap,
                                     kill_hook=self._on_kill, executor=executor)
        if options.engine_id is not None and mpi is None:
            self.service.id = options.engine_id
        self.tub = None
        self.connector = None
        self._parent = options.parent_pid or os.getppid()
        self._parent_watch = None
        self._stopping = None
        #: The log's stream (flushed before a forced exit).
        self.log_stream = None
        self._force = None

    def launch(self):
        """Start (from ``callWhenRunning``); a start-up failure stops the engine."""
        d = defer.ensureDeferred(self.start())
        d.addErrback(self._start_failed)
        return d

    async def start(self):
        if self.options.exit_with_parent or self.options.parent_pid:
            self._parent_watch = task.LoopingCall(self._check_parent)
            self._parent_watch.clock = self.reactor
            self._parent_watch.start(1.0, now=False)
        # The Tub (with its new key) is made while the controller may still be starting.
        self.tub = fcutil.make_tub()
        self.tub.setServiceParent(self.top)
        self.service.setServiceParent(self.top)
        self.top.startService()
        # The startup lines run while the engine waits for the FURL file; an
        # engine whose lines failed stops at once and does not register.
        startup = self.executor.submit(run_startup_lines, self.service.shell, self.exec_lines,
                                       startup_labels(self.options))
        waiting = defer.ensureDeferred(
            wait_for_file(self.reactor, self.furl_file, self.options.furl_wait))

        def stop_waiting():
            if not waiting.called:
                waiting.cancel()

        def startup_failed(failure):
            # (after this callback: start() goes on when the wait ends)
            self.reactor.callLater(0, stop_waiting)
            return failure
        startup.addErrback(startup_failed)
        try:
            await waiting
        except defer.CancelledError:
            pass   # the startup lines failed: raised just below
        except BaseException:
            startup.addErrback(lambda _: None)   # the first failure is the one reported
            raise
        await startup
        self.service.exec_lines = self.exec_lines
        try:
            furl = fcutil.find_furl(self.furl_file)
        except ValueError as exc:
            raise AppError(str(exc)) from None
        if not self.options.no_pulse:
            await self._start_pulse(furl)
        # Given the file (not the FURL read from it), the connector follows a
        # controller restarted without -r, which writes a new FURL there.
        options = self.options
        self.connector = EngineConnector(
            self.tub, self.service, str(self.furl_file), clock=self.reactor,
            register_timeout=options.register_timeout or None,
            reconnect_timeout=options.reconnect_timeout or None,
            stop_wait=options.stop_wait, on_gave_up=self._gave_up, credential=self.credential,
            unreachable_timeout=getattr(options, "unreachable_timeout", None) or None)
        log.info("connecting to the controller named in {path}", path=self.furl_file)
        try:
            engine_id = await self.connector.start()
        except (StaleFurl, RegistrationTimeout) as exc:
            raise AppError(str(exc)) from None
        log.info("{ready}: registered as engine {id} (pid {pid})", ready=READY, id=engine_id,
                 pid=os.getpid(), **{applog.ALWAYS: True})

    async def _start_pulse(self, furl):
        """Start the pulse process (see ipkernel.engine.pulse); a failure is only logged."""
        found = Pulse(bind_host(controller_hosts(furl)))
        try:
            await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                            found.start)
        except Exception as exc:
            log.warn("could not start the pulse process ({why}): code that holds the GIL "
                     "longer than the controller's heartbeat timeout will get this engine "
                     "dropped", why=exc)
            return
        self.service.pulse = found
        log.debug("pulse process {pid} listening on UDP {host}:{port}", pid=found.process.pid,
                  host=found.host, port=found.port)

    def _start_failed(self, failure):
        if failure.check(AppError):
            log.critical("ipengine: {error}", error=str(failure.value))
        else:
            log.failure("ipengine failed to start", failure)
        self.exit_code = 1
        self.executor.stop("start-up failed")

    def _gave_up(self, status, message):
        """The connector gave up on the controller (see EngineConnector): exit."""
        (log.info if status == 0 else log.error)("ipengine: {message}", message=message)
        self.exit_code = status
        self.executor.stop("the controller is gone")

    def _check_parent(self):
        if self.options.parent_pid:
            gone = not process_alive(self.options.parent_pid)
        else:
            gone = os.getppid() != self._parent
        if gone:
            log.warn("the parent process exited: stopping the engine")
            self.executor.stop("parent exited")

    def _on_kill(self):
        # The running command was interrupted and the executor is stopping: the
        # main thread ends the process once that command has returned.  Code
        # that does not return (it ignores KeyboardInterrupt) does not keep a
        # killed engine alive past KILL_FORCE.
        self.killed = True
        self._force = self.reactor.callLater(KILL_FORCE, self._force_exit)

    def _force_exit(self):
        log.warn("the running command did not stop within {t:g} s of kill: exiting anyway",
                 t=KILL_FORCE)
        for stream in (self.log_stream, sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        os._exit(0)

    def finish(self):
        """Stop the reactor (called once the main thread's job loop ended)."""
        if self._force is not None and self._force.active():
            self._force.cancel()
        self.reactor.callLater(KILL_GRACE if self.killed else 0, self.reactor.stop)

    def stop(self):
        """Stop connecting and stop the services (a "before shutdown" trigger)."""
        if self._stopping is None:
            if self._parent_watch is not None and self._parent_watch.running:
                self._parent_watch.stop()
            if self.connector is not None:
                self.connector.stop()
            pulse = getattr(self.service, "pulse", None)
            if pulse is not None:
                pulse.stop()
            self._stopping = defer.maybeDeferred(self.top.stopService)
            self._stopping.addErrback(lambda f: log.failure("while stopping the engine", f))
        return self._stopping


def main(argv=None):
    """Run an engine until it is stopped; return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    options = parser().parse_args(argv)
    if options.engines != 1:
        from ipkernel.engine import group
        return group.run(options, argv)
    applog.begin()
    stream = applog.open_log(options.logfile)
    globalLogPublisher.addObserver(applog.observer_for(stream, applog.level_of(options)))
    applog.bridge_foolscap()
    try:
        mpi = load_mpi(options.mpi)
        lines = startup_lines(options)
    except AppError as exc:
        log.critical("ipengine: {error}", error=str(exc))
        return 1

    from twisted.internet import reactor
    reactorloop.install(reactor)
    gate = ReactorGate(reactor, drive=drive_wanted())
    gate.install()
    executor = MainThreadExecutor(reactor, gate=gate)
    executor.install_signal_handlers()
    app = EngineApp(reactor, options, executor, mpi=mpi, exec_lines=lines)
    app.log_stream = stream
    reactor.callWhenRunning(app.launch)
    reactor.addSystemEventTrigger("before", "shutdown", app.stop)
    thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                              name="ipkernel-reactor", daemon=True)
    thread.start()
    reason = executor.run()
    log.info("ipengine stopping ({reason})", reason=reason)
    reactor.callFromThread(app.finish)
    thread.join(REACTOR_STOP_TIMEOUT)
    if thread.is_alive():
        log.error("the reactor did not stop within {t:g} s; exiting anyway", t=REACTOR_STOP_TIMEOUT)
        return app.exit_code or 1
    gate.close()
    log.info("ipengine stopped")
    return app.exit_code


def run():
    """Console entry point of ``ipengine``."""
    sys.exit(main())
