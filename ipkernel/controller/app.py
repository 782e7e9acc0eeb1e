"""The ``ipcontroller`` program: a controller on the network.

It listens with two Foolscap Tubs (TLS, each with a certificate kept in
the cluster directory's ``security/`` folder): one for clients, serving
the multi-engine interface (``ipcontroller-mec.furl``), and one for
engines, serving registration (``ipcontroller-engine.furl``).  Those
services, Tubs, lanes and the data channel are one
:class:`~ipkernel.controller.node.ControllerNode` (the same node the tier-2
tests build in one process); this module adds what a program has: the
cluster directory's files, the pid file, logging and signals.

* Without ``-r`` the old FURL files are deleted at start and new FURLs
  written.  With ``-r`` the certificates, the ports (remembered in
  ``security/ipcontroller-{client,engine}.port``) and the FURL names are
  reused, so clients and engines holding the old FURLs reconnect; engines
  get their old ids back (ids of departed engines are kept for them).
* A pid file ``pid/ipcontroller.pid`` exists while it runs; a second
  controller on the same cluster directory refuses to start.
* It stops cleanly on SIGINT/SIGTERM and on ``kill(controller=True)`` from a
  client.  Once the FURL files are written it logs one line starting with
  ``ipcontroller ready:`` (at every ``--log-level``; see
  :func:`ipkernel.applog.add_arguments`).

:func:`main` ``(reactor, argv)`` is the program (it returns once the
controller has stopped); :func:`run` is the console entry point.
"""
import argparse
import functools
import os
import signal
import sqlite3
import sys

from twisted.internet import defer, error as net_error, task
from twisted.logger import Logger, globalLogPublisher

from ipkernel import applog, credentials, fcutil, hostaddrs, reactorloop, sizes
from ipkernel.pids import process_alive, watch_parent
from ipkernel.clusterdir import (DASHBOARD_URL, ENGINE_FURL, MULTIENGINE_FURL, TASK_FURL, ClusterDir,
                                 write_private_file)
from ipkernel.controller.heartbeat import DEFAULT_PERIOD, DEFAULT_TIMEOUT
from ipkernel.controller.node import (DEFAULT_UNFETCHED_TOTAL, ControllerNode, NodeSettings,
                                      SetupError)
from ipkernel.controller.pending import DEFAULT_MAX_BYTES, DEFAULT_TTL
from ipkernel.engine.queued import DEFAULT_HISTORY_BYTES
from ipkernel.error import SecurityError
from ipkernel.task.controller import loss_count

log = Logger()

READY = "ipcontroller ready"
#: How long after answering ``kill(controller=True)`` the controller stops.
KILL_GRACE = 0.25

class AppError(Exception):
    """A start-up problem to report in one line (the program exits with 1)."""


def build_parser():
    p = argparse.ArgumentParser(
        prog="ipcontroller",
        description="Start an ipkernel controller: engines register with it, clients "
                    "connect to it with the FURL files it writes.")
    p.add_argument("--cluster-dir", help="cluster directory (default $IPKERNEL_DIR or ~/.ipkernel)")
    p.add_argument("-r", "--reuse-furls", action="store_true",
                   help="keep the FURLs of the previous run (same certificates, ports and names)")
    p.add_argument("--logfile", help="append the log here (default: stderr)")
    for role, who in (("client", "clients"), ("engine", "engines")):
        p.add_argument(f"--{role}-ip", default="127.0.0.1",
                       help=f"address to listen on for {who} (default 127.0.0.1: this host "
                            f"only); 0.0.0.0 (IPv4) or :: (IPv6 and IPv4) listens on every "
                            f"address, and the FURL then names this host's addresses, "
                            f"loopback last")
        p.add_argument(f"--{role}-port", type=int, default=0,
                       help=f"port for {who} (default 0: pick one, or the previous one with -r)")
        p.add_argument(f"--{role}-data-port", type=int, default=0,
                       help=f"port of the data channel for {who}, on the same address "
                            f"(default 0: pick one; fix it to open it in a firewall)")
        p.add_argument(f"--{role}-lane-port", type=int, default=0,
                       help=f"port of the lanes for {who}, on the same address (default 0: "
                            f"pick one; fix it to open it in a firewall)")
        p.add_argument(f"--{role}-location",
                       help=f"host name or address {who} should dial, written into the "
                            f"FURL (default: the listening ip, or this host's addresses "
                            f"when it is 0.0.0.0 or ::)")
        p.add_argument(f"--{role}-cert-file",
                       help=f"certificate of the {role} Tub (default security/ipcontroller-{role}.pem)")
    p.add_argument("--engine-furl-file", help=f"where to write the engine FURL "
                   f"(default security/{ENGINE_FURL})")
    p.add_argument("--no-engine-furl", dest="engine_furl", action="store_false",
                   help="offer no engine FURL (and write no engine FURL file): engines "
                        "register only through the gate, with a one-time credential made "
                        f"from the key in ${credentials.KEY_ENV} (LocalCluster and ipcluster "
                        "start the controller so)")
    p.add_argument("--multiengine-furl-file", help=f"where to write the multi-engine client "
                   f"FURL (default security/{MULTIENGINE_FURL})")
    p.add_argument("--heartbeat-period", type=float, default=DEFAULT_PERIOD,
                   help=f"seconds between pings of each engine (default {DEFAULT_PERIOD:g})")
    p.add_argument("--heartbeat-timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"an engine silent this long is dropped, unless its pulse process "
                        f"says it is busy (in code that holds the GIL) (default "
                        f"{DEFAULT_TIMEOUT:g})")
    p.add_argument("--payload-cap", type=int, default=None,
                   help="refuse client payloads bigger than this many bytes, on every "
                        "transport (Foolscap, lanes, data channel; default: no cap)")
    p.add_argument("--db", choices=("memory", "sqlite"), default="memory",
                   help="where the task farm keeps tasks and results: 'memory' (default; "
                        "lost when the controller stops) or 'sqlite' (the file "
                        "db/tasks.sqlite in the cluster directory: task ids continue, tasks "
                        "queued or running at a stop run again and finished results stay "
                        "retrievable across controller and client restarts, until cleared)")
    p.add_argument("--no-data-channel", dest="data_channel", action="store_false",
                   help="send bulk data (large pushes, pulls, scatters) through Foolscap "
                        "instead of the data channel (a TLS socket beside it, authenticated "
                        "through Foolscap; much faster for large arrays)")
    p.add_argument("--no-lane", dest="lane", action="store_false",
                   help="carry every call through Foolscap (by default the calls of engines "
                        "and clients go on lanes: sockets beside Foolscap, plain on loopback "
                        "and TLS to other hosts, joined with a token given over Foolscap; "
                        "much faster per call)")
    p.add_argument("--no-dashboard", dest="dashboard", action="store_false",
                   help="do not serve the live dashboard (by default it is served on "
                        "loopback; its URL, with its token, is written to "
                        f"security/{DASHBOARD_URL})")
    p.add_argument("--dashboard-ip", default="127.0.0.1", metavar="IP",
                   help="address the dashboard listens on (default 127.0.0.1; any other "
                        "address serves it over HTTPS with the client certificate)")
    p.add_argument("--dashboard-port", type=int, default=0, metavar="PORT",
                   help="port of the dashboard (default 0: a free one)")
    p.add_argument("--lane-tls", action="store_true",
                   help="encrypt lanes also for peers on this host (they always are for "
                        "other hosts); costs some speed per call")
    p.add_argument("--data-channel-tls", action="store_true",
                   help="encrypt the data channel also for peers on this host (it always "
                        "is for other hosts); costs about two thirds of its speed")
    p.add_argument("--no-memory-reads", dest="memory_reads", action="store_false",
                   help="never read a big push of a client on this host straight from the "
                        "client's memory (Linux process_vm_readv; by default it is, instead "
                        "of the bytes crossing the loopback socket)")
    memory = p.add_argument_group(
        "memory budgets", "sizes are bytes, or with K, M, G (binary: 64M is 64 MiB)")
    memory.add_argument("--history-bytes", type=sizes.option_size, metavar="SIZE",
                        default=DEFAULT_HISTORY_BYTES,
                        help="execute results (output included) kept per engine for "
                             "get_result; the oldest are evicted first (default 64M)")
    memory.add_argument("--unfetched-bytes", type=sizes.option_size, metavar="SIZE",
                        default=DEFAULT_MAX_BYTES,
                        help="finished results of non-blocking calls one client may leave "
                             "unfetched; the oldest are discarded first (default 1G)")
    memory.add_argument("--unfetched-total", type=sizes.option_size, metavar="SIZE",
                        default=DEFAULT_UNFETCHED_TOTAL,
                        help="large result values (data channel) waiting for their clients, "
                             "all clients together (default 4G)")
    memory.add_argument("--result-ttl", type=float, metavar="SECONDS", default=DEFAULT_TTL,
                        help="an unfetched result is discarded after this long "
                             "(default 600)")
    task = p.add_argument_group("task farm")
    task.add_argument("--task-scheduler", choices=("fifo", "lifo"), default="fifo",
                      help="which queued task runs next: oldest (fifo, default) or newest")
    task.add_argument("--task-timeout", type=float, default=30.0, metavar="SECONDS",
                      help="a task every engine rejected fails with TaskTimeout when no "
                           "new engine takes it within this time (default 30)")
    task.add_argument("--task-max-results", type=int, default=100_000, metavar="N",
                      help="finished results kept until cleared; older ones are evicted "
                           "(default 100000)")
    task.add_argument("--task-max-engine-losses", type=loss_count, default=3, metavar="N",
                      help="a task whose engine dies or disconnects while running it is "
                           "queued again at most N times (default 3); the next loss fails "
                           "it with TaskKilledEngines (independent of the task's retries)")
    task.add_argument("--task-failure-penalty", type=float, default=0.0, metavar="SECONDS",
                      help="an engine whose task failed rests this long before it gets "
                           "more tasks (default 0)")
    p.add_argument("--max-engines", type=int, default=511, help="highest engine id (default 511)")
    p.add_argument("--parent-pid", type=int, metavar="PID",
                   help="stop when process PID exits (launchers pass their own pid, so a "
                        "killed launcher leaves no controller behind)")
    applog.add_arguments(p, "ipcontroller")
    return p


#: The argument parser, made once per process (the zygote makes it before it forks).
parser = functools.cache(build_parser)


def claim_pid_file(path):
    """Write our pid to ``path``; refuse if it names another live process."""
    if path.exists():
        try:
            other = int(path.read_text().strip())
        except ValueError:
            other = None
        if other is not None and other != os.getpid() and process_alive(other):
            raise AppError(f"another ipcontroller (pid {other}) is running with this cluster "
                           f"directory ({path}); stop it, or delete the pid file if it is stale")
    write_private_file(path, f"{os.getpid()}\n", durable=False)


class ControllerApp:
    """One controller process: a :class:`~ipkernel.controller.node.ControllerNode`
    and the files of its cluster directory.  See the module doc."""

    def __init__(self, reactor, options, cluster):
        self.reactor = reactor
        self.options = options
        self.cluster = cluster
        self.engine_furl_file = options.engine_furl_file or str(cluster.furl_file(ENGINE_FURL))
        self.gate_furl_file = str(cluster.furl_file(credentials.GATE_FURL))
        try:
            self.engine_key = credentials.key_from_env()
        except ValueError as exc:
            raise AppError(str(exc)) from None
        self.engine_furl = getattr(options, "engine_furl", True)
        if not self.engine_furl and self.engine_key is None:
            raise AppError(f"--no-engine-furl needs a key in ${credentials.KEY_ENV} (no engine "
                           f"could register); leave the option out to start a controller by hand")
        self.mec_furl_file = (options.multiengine_furl_file
                              or str(cluster.furl_file(MULTIENGINE_FURL)))
        self.tc_furl_file = str(cluster.furl_file(TASK_FURL))
        cert_files = {
            "client": options.client_cert_file or str(cluster.cert_file("client")),
            "engine": options.engine_cert_file or str(cluster.cert_file("engine")),
        }
        settings = NodeSettings.from_options(
            options, cert_files=cert_files, db_dir=str(cluster.path),
            engine_key=self.engine_key, engine_furl=self.engine_furl)
        self.node = ControllerNode(
            settings, reactor, shutdown_hook=self._kill_requested, reuse=options.reuse_furls,
            furl_files={"mec": self.mec_furl_file, "tc": self.tc_furl_file,
                        "engine": self.engine_furl_file, "gate": self.gate_furl_file})
        self.controller = self.node.controller
        self.finished = defer.Deferred()
        self._stopping = None

    # -- start ------------------------------------------------------------------------

    async def start(self):
        stale = [] if self.options.reuse_furls else [
            self.engine_furl_file, self.mec_furl_file, self.tc_furl_file, self.gate_furl_file]
        if not self.engine_furl:
            stale.append(self.engine_furl_file)   # an old one must not be taken for ours
        for path in stale:
            if os.path.exists(path):
                os.unlink(path)
        for role in ("client", "engine"):
            setattr(self.node.settings, f"{role}_port", self._wanted_port(role))
        try:
            await self.node.start()
        except (SetupError, SecurityError) as exc:
            raise AppError(str(exc)) from None
        for role in ("client", "engine"):
            write_private_file(self.cluster.port_file(role), f"{self.node.ports[role]}\n",
                               durable=False)
            self._warn_if_exposed(role)
        url_file = self.cluster.dashboard_url_file()
        if self.node.dashboard is not None:
            write_private_file(url_file, self.node.dashboard.url + "\n", durable=False)
        else:
            url_file.unlink(missing_ok=True)
        engine_file = self.engine_furl_file if self.engine_furl else "none (--no-engine-furl)"
        if self.engine_key is not None:
            engine_file += f", engine gate FURL file {self.gate_furl_file}"
        log.info("{ready}: engine FURL file {engine}, client FURL file {client} "
                 "(pid {pid}, client port {cport}, engine port {eport})",
                 ready=READY, engine=engine_file, client=self.mec_furl_file,
                 pid=os.getpid(), cport=self.node.ports["client"],
                 eport=self.node.ports["engine"],
                 **{applog.ALWAYS: True})

    def _wanted_port(self, role):
        port = getattr(self.options, f"{role}_port")
        port_file = self.cluster.port_file(role)
        if port == 0 and self.options.reuse_furls and port_file.exists():
            try:
                port = int(port_file.read_text().strip())
            except ValueError:
                raise AppError(f"{port_file} does not hold a port number; delete it") from None
        return port

    def _warn_if_exposed(self, role):
        """Say so (a warning) when ``role``'s port listens beyond loopback."""
        ip = getattr(self.options, f"{role}_ip")
        if hostaddrs.is_loopback(ip):
            return
        ports = [str(self.node.ports[role])]
        if self.node.data_server is not None:
            ports.append(f"{self.node.data_server.ports[role]} (its data channel)")
        if role in self.node.lane_servers:
            ports.append(f"{self.node.lane_servers[role].port} (its lanes)")
        hints = ", ".join(fcutil.furl_locations(
            "pb://x@" + ",".join(getattr(self.node.tubs[role], "locationHints", ())) + "/x"))
        if role == "engine":
            keys = [self.engine_furl_file] if self.engine_furl else []
            if self.engine_key is not None:
                keys.append(self.gate_furl_file)
            extra = (" Engines on other hosts also need this host's UDP datagrams to reach "
                     "their pulse ports (ipengine --no-pulse needs none).")
        else:
            keys = [self.mec_furl_file, self.tc_furl_file]
            extra = ""
        where = "every address" if fcutil.is_wildcard(ip) else "an address"
        numbers = " and ".join(p.split()[0] for p in ports)
        flags = [f"--{role}-port"] + ([f"--{role}-data-port"] if self.node.data_server else [])
        flags += [f"--{role}-lane-port"] if role in self.node.lane_servers else []
        if len(flags) > 1:
            numbers += f" ({' and '.join(flags)} fix them)"
        text = (f"listening for {role}s beyond loopback: on {where} ({ip}), TCP ports "
                f"{' and '.join(ports)}; the FURLs name {hints}. Anyone who can reach these "
                f"ports can connect, but only a holder of a FURL file can do anything (TLS, "
                f"the FURL's secret): the FURL files are the keys ({', '.join(keys)}); copy "
                f"them only to machines and accounts you trust. Open TCP ports {numbers} in "
                f"the firewall for the {role}s' hosts only.{extra}")
        log.warn("{text}", text=text)
        if getattr(self.options, "logfile", None) and sys.stderr.isatty():
            print(f"ipcontroller: warning: {text}", file=sys.stderr, flush=True)

    # -- stop -------------------------------------------------------------------------

    def _kill_requested(self):
        log.info("kill(controller=True) received: stopping in {grace:g} s", grace=KILL_GRACE)
        self.reactor.callLater(KILL_GRACE, self.shutdown)

    def shutdown(self):
        """Stop the node (once); fires ``finished``.  Returns a Deferred."""
        if self._stopping is None:
            log.info("ipcontroller stopping")
            self._stopping = self.node.shutdown()
            self._stopping.addBoth(self._stopped)
        d = defer.Deferred()
        self._stopping.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    def _stopped(self, _):
        self.cluster.dashboard_url_file().unlink(missing_ok=True)
        log.info("ipcontroller stopped")
        if not self.finished.called:
            self.finished.callback(None)


async def main(reactor, argv):
    """Run the controller until it is stopped; ``argv`` excludes the program name."""
    options = parser().parse_args(argv)
    cluster = ClusterDir(options.cluster_dir).create()
    stream = applog.open_log(options.logfile)
    observer = applog.observer_for(stream, applog.level_of(options))
    globalLogPublisher.addObserver(observer)
    applog.bridge_foolscap()
    pid_path = cluster.pid_file("ipcontroller")
    trigger = None
    app = None
    parent_watch = None
    reactor_stopping = []

    def on_reactor_shutdown():  # SIGINT, SIGTERM or reactor.stop()
        reactor_stopping.append(True)
        return app.shutdown()

    try:
        claim_pid_file(pid_path)
        try:
            try:
                app = ControllerApp(reactor, options, cluster)
            except ValueError as exc:
                raise AppError(str(exc)) from None
            except sqlite3.Error as exc:
                raise AppError(f"cannot open the task database: {exc}") from None
            trigger = reactor.addSystemEventTrigger("before", "shutdown", on_reactor_shutdown)
            await app.start()
            if options.parent_pid:
                def parent_gone():
                    log.warn("the parent process {pid} exited: stopping", pid=options.parent_pid)
                    app.shutdown()
                parent_watch = watch_parent(reactor, options.parent_pid, parent_gone)
            await app.finished
        finally:
            if parent_watch is not None and parent_watch.running:
                parent_watch.stop()
            if app is not None:
                await app.shutdown()
            pid_path.unlink(missing_ok=True)
    except AppError as exc:
        log.critical("ipcontroller: {error}", error=str(exc))
        raise SystemExit(1) from None
    except Exception:
        # not a problem of the set-up we can name: a bug, shown whole (its log
        # observer goes below, so nothing later would show it)
        log.failure("ipcontroller failed unexpectedly (a bug in ipkernel: please report it "
                    "with this traceback)")
        raise SystemExit(1) from None
    finally:
        if trigger is not None and not reactor_stopping:
            reactor.removeSystemEventTrigger(trigger)
        globalLogPublisher.removeObserver(observer)
        if stream is not sys.stderr:
            stream.close()


def handle_stop_signals(reactor):
    """SIGINT and SIGTERM stop the reactor (and so the controller) once; a
    signal that comes while it stops is only logged.

    Twisted's own handlers would stop it again, which fails with a
    ReactorNotRunning traceback (a signal sent to the controller and to its
    process group, or Ctrl-C twice).  Call it in the main thread once the
    reactor runs (it installs its handlers as it starts).
    """
    def stop(name):
        try:
            reactor.stop()
        except net_error.ReactorNotRunning:
            log.info("{name} received while stopping", name=name)
        else:
            log.info("{name} received: stopping", name=name)

    def received(signum, frame):
        reactor.callFromThread(stop, signal.Signals(signum).name)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, received)


def run(argv=None):
    """Console entry point of ``ipcontroller``."""
    argv = sys.argv[1:] if argv is None else argv
    parser().parse_args(argv)   # --help, --version and usage errors: before the reactor runs
    applog.begin()

    def start(reactor):
        reactorloop.install(reactor)
        # once running: the reactor installs its own handlers as it starts
        reactor.callWhenRunning(handle_stop_signals, reactor)
        return defer.ensureDeferred(main(reactor, argv))
    task.react(start)
