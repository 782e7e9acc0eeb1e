"""The controller node: every service a controller runs, wired once.

:class:`ControllerNode` builds what ``ipcontroller`` runs (and so the
zygote, which runs ``ipcontroller``'s code), and what the tier-2 tests run
in one process: the :class:`~ipkernel.controller.ControllerService` with its
task farm and heart monitor, a Foolscap Tub per role (clients, engines)
listening on its port, the lane ports, the data channel, and the objects
published on the Tubs (multi-engine, task controller, engine registrar and
engine gate).  What only a program has (FURL and port files in a cluster
directory, the pid file, logging, signals) stays in
:mod:`ipkernel.controller.app`.

Tubs come from ``tub_factory(role, cert_file)``, so tests can give Tubs with
certificates made in advance; the lanes and the data channel present the
certificate of their role's Tub.
"""
import dataclasses
import os
import shutil
import tempfile

from twisted.application import internet as app_internet, service
from twisted.internet import defer, error as net_error
from twisted.logger import Logger

from ipkernel import credentials, fcutil, wire
from ipkernel.controller.fc import (FCEngineGate, FCEngineRegistrar, FCSynchronousMultiEngine,
                                   tell_engines_stopping)
from ipkernel.controller.heartbeat import DEFAULT_PERIOD, DEFAULT_TIMEOUT, HeartMonitor
from ipkernel.controller.pending import DEFAULT_MAX_BYTES, DEFAULT_TTL
from ipkernel.controller.service import ControllerService
from ipkernel.datachannel import DataChannelServer
from ipkernel.engine.queued import DEFAULT_HISTORY_BYTES
from ipkernel.interfaces.multiengine import IMultiEngine, ISynchronousMultiEngine
from ipkernel.interfaces.remote import RITaskController
from ipkernel.interfaces.task import ITaskController
from ipkernel.lane import LaneServer
from ipkernel.lane.protocol import FRAME_OVERHEAD, LANE_MAX_FRAME, MAX_FRAME
from ipkernel.task import fc as _task_fc  # noqa: F401  (registers ITaskController -> RITaskController)
from ipkernel.task.controller import TaskController
from ipkernel.task.store import open_store

log = Logger()

ROLES = ("client", "engine")
#: Bytes of large result values kept for all clients together (--unfetched-total).
DEFAULT_UNFETCHED_TOTAL = 4 << 30
#: Longest wait between two sweeps for unfetched results past --result-ttl.
EXPIRY_SWEEP = 30.0


class SetupError(Exception):
    """The node cannot start as asked (a port that cannot be opened, ...);
    the message says what to change."""


def lane_limits(payload_cap):
    """``(client, engine)``: the largest frame the controller reads from a
    client's lane and from an engine's.  A client's lane carries calls (at
    most LANE_MAX_FRAME; bigger ones go through Foolscap), an engine's its
    answers; with a payload cap neither reads more than the cap and a frame's
    overhead."""
    if payload_cap is None:
        return LANE_MAX_FRAME, MAX_FRAME
    return min(LANE_MAX_FRAME, payload_cap + FRAME_OVERHEAD), payload_cap + FRAME_OVERHEAD


@dataclasses.dataclass
class NodeSettings:
    """What a node is built from: ``ipcontroller``'s options, under the same
    names (:meth:`from_options`), with its defaults."""

    client_ip: str = "127.0.0.1"
    engine_ip: str = "127.0.0.1"
    client_port: int = 0
    engine_port: int = 0
    client_location: str = None
    engine_location: str = None
    #: role -> PEM file of the Tub's certificate (None or missing: the
    #: tub_factory makes the Tub, and its certificate is written to work_dir)
    cert_files: dict = dataclasses.field(default_factory=dict)
    #: a private folder for files the node makes (certificates written out)
    work_dir: str = None
    payload_cap: int = None
    lane: bool = True
    lane_tls: bool = False
    client_lane_port: int = 0
    engine_lane_port: int = 0
    data_channel: bool = True
    data_channel_tls: bool = False
    memory_reads: bool = True
    client_data_port: int = 0
    engine_data_port: int = 0
    max_engines: int = 511
    save_ids: bool = True
    heartbeat_period: float = DEFAULT_PERIOD
    heartbeat_timeout: float = DEFAULT_TIMEOUT
    history_bytes: int = DEFAULT_HISTORY_BYTES
    unfetched_bytes: int = DEFAULT_MAX_BYTES
    unfetched_total: int = DEFAULT_UNFETCHED_TOTAL
    result_ttl: float = DEFAULT_TTL
    db: str = "memory"
    db_dir: str = None
    task_scheduler: str = "fifo"
    task_timeout: float = 30.0
    task_max_results: int = 100_000
    task_max_engine_losses: int = 3
    task_failure_penalty: float = 0.0
    #: publish the engine registrar under an engine FURL (else only the gate)
    engine_furl: bool = True
    #: the key engine credentials are made from (None: no engine gate)
    engine_key: bytes = None
    #: serve the live dashboard (ipcontroller turns it on; see ipkernel.dashboard)
    dashboard: bool = False
    dashboard_ip: str = "127.0.0.1"
    dashboard_port: int = 0

    @classmethod
    def from_options(cls, options, **more):
        """Settings from an argparse Namespace of ``ipcontroller`` (names it
        lacks keep their defaults), then ``more``."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {name: getattr(options, name) for name in names if hasattr(options, name)}
        values.update(more)
        return cls(**values)


def _default_tub_factory(role, cert_file):
    return fcutil.make_tub(cert_file=cert_file)


class ControllerNode(service.MultiService):
    """A controller's services, Tubs, ports and published objects.

    Build it, then ``await start()``: the Tubs listen, the lanes and the
    data channel open, and ``furls`` holds the published FURLs
    (``mec``, ``tc``, ``engine`` unless ``engine_furl`` is off, ``gate``
    with an ``engine_key``).  ``furl_files`` (name -> path) writes them to
    files too (``reuse``: keep the names of FURLs already in those files).
    :meth:`shutdown` stops it all, once.

    ``shutdown_hook`` is called when a client asks the controller to stop
    (``kill(controller=True)``).
    """

    def __init__(self, settings=None, reactor=None, tub_factory=None, shutdown_hook=None,
                 furl_files=None, reuse=False):
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.settings = s = settings if settings is not None else NodeSettings()
        self.reactor = reactor
        self.tub_factory = tub_factory or _default_tub_factory
        self.furl_files = dict(furl_files or {})
        self.reuse = reuse
        self.controller = ControllerService(max_engines=s.max_engines, save_ids=s.save_ids,
                                            shutdown_hook=shutdown_hook)
        self.controller.setServiceParent(self)
        # The task farm, with its store, made before anything adapts the controller.
        self.task_store = open_store(s.db, s.db_dir)
        self.task_controller = TaskController(
            self.controller, store=self.task_store, scheduler=s.task_scheduler,
            timeout=s.task_timeout, max_results=s.task_max_results,
            max_engine_losses=s.task_max_engine_losses, failure_penalty=s.task_failure_penalty)
        self.controller._ipkernel_task_controller = self.task_controller
        self.heart = HeartMonitor(self.controller, period=s.heartbeat_period,
                                  timeout=s.heartbeat_timeout, clock=reactor)
        self.heart.setServiceParent(self)
        self.controller.on_register_engine_do(self._set_history_bytes, True, s.history_bytes)
        self.tubs = {}
        self.ports = {}
        self.cert_files = {}
        self.furls = {}
        self.data_server = None
        #: role -> the LaneServer its peers join (none with ``lane`` off)
        self.lane_servers = {}
        #: what is published: the multi-engine, the task controller, the registrar
        self.mec = self.tasks = self.registrar = None
        #: the live dashboard (``dashboard`` on), once started
        self.dashboard = None
        self._stopping = None
        self._closed = False
        self._own_dir = None  # a work_dir this node made

    def _set_history_bytes(self, engine_id, history_bytes):
        engine = self.controller.engines.get(engine_id)
        if hasattr(engine, "set_history_bytes"):
            engine.set_history_bytes(history_bytes)

    # -- start ------------------------------------------------------------------------

    async def start(self):
        """Start the services, listen, open lanes and data channel, publish.
        Fails with :class:`SetupError` naming what to change."""
        s = self.settings
        for role in ROLES:
            tub = self.tubs[role] = self.tub_factory(role, s.cert_files.get(role))
            tub.setServiceParent(self)
            self.cert_files[role] = s.cert_files.get(role) or self._write_cert(role, tub)
        self.startService()
        for role in ROLES:
            self.ports[role] = await self._listen(role)
        if s.data_channel:
            self.data_server = self._start_data_channel()
        if s.lane:
            self.lane_servers = self._start_lanes()
        self._publish()
        if s.dashboard:
            self._start_dashboard()

    def _start_dashboard(self):
        from ipkernel.dashboard import Dashboard

        s = self.settings
        self.dashboard = Dashboard(self, s.dashboard_ip, s.dashboard_port, self.reactor,
                                   cert_file=self.cert_files["client"])
        try:
            url = self.dashboard.start()
        except net_error.CannotListenError as exc:
            self.dashboard = None
            problem = fcutil.listen_problem(exc.socketError, s.dashboard_ip, s.dashboard_port,
                                            "dashboard", "--dashboard-port")
            raise SetupError(f"cannot serve the dashboard on {s.dashboard_ip}:"
                             f"{s.dashboard_port}: {problem} (--no-dashboard runs without "
                             f"it)") from None
        if self.dashboard.fingerprint:
            log.info("dashboard: {url} (TLS, certificate SHA-256 {fp}: the one a browser "
                     "shows should match)", url=url, fp=self.dashboard.fingerprint)
        else:
            log.info("dashboard: {url}", url=url)

    def _write_cert(self, role, tub):
        folder = self.settings.work_dir
        if folder is None:  # made here, so removed with the servers
            folder = self.settings.work_dir = self._own_dir = tempfile.mkdtemp(
                prefix="ipkernel-node-")
        path = os.path.join(folder, f"{role}-{id(self):x}.pem")
        cert = tub.getCertData()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert if isinstance(cert, bytes) else cert.encode())
        return path

    async def _listen(self, role):
        s = self.settings
        ip, port = getattr(s, f"{role}_ip"), getattr(s, f"{role}_port")
        try:
            return await fcutil.listen(self.tubs[role], self.reactor, ip, port,
                                       getattr(s, f"{role}_location"))
        except net_error.CannotListenError as exc:
            problem = fcutil.listen_problem(exc.socketError, ip, port, role)
            raise SetupError(f"cannot listen for {role}s on {ip}:{port}: {problem}") from None

    def _start_data_channel(self):
        s = self.settings
        server = DataChannelServer(
            dict(self.cert_files),
            interfaces={role: data_channel_interface(getattr(s, f"{role}_ip")) for role in ROLES},
            max_blob=s.payload_cap, ttl=s.result_ttl, tls_always=s.data_channel_tls,
            memory_reads=s.memory_reads)
        server.results.max_bytes = s.unfetched_total
        wanted = {role: getattr(s, f"{role}_data_port") or 0 for role in ROLES}
        try:
            ports = server.start(wanted)
        except OSError as exc:
            server.stop()
            role = next((r for r in ROLES if r not in server.ports), "engine")
            ip = server.interfaces.get(role, "127.0.0.1")
            problem = fcutil.listen_problem(exc, ip, wanted[role], role, f"--{role}-data-port")
            raise SetupError(f"cannot open the data channel for {role}s on {ip}:{wanted[role]}: "
                             f"{problem} (--no-data-channel runs without it: bulk data then "
                             f"goes through Foolscap)") from None
        log.info("data channel: client port {c}, engine port {e}", c=ports["client"],
                 e=ports["engine"])
        return server

    def _start_lanes(self):
        """A LaneServer per role, on the address its Foolscap port listens on,
        presenting the role's certificate to peers that join over TLS."""
        s = self.settings
        servers = {}
        for role in ROLES:
            ip = getattr(s, f"{role}_ip")
            wanted = getattr(s, f"{role}_lane_port") or 0
            server = LaneServer(self.reactor, max_frame=lane_limits(s.payload_cap)[0],
                                cert_file=self.cert_files[role], tls_always=s.lane_tls)
            try:
                server.start(wanted, interface=ip, local=True)
            except net_error.CannotListenError as exc:
                for started in servers.values():
                    started.stop()
                problem = fcutil.listen_problem(exc.socketError, ip, wanted, role,
                                                f"--{role}-lane-port")
                raise SetupError(f"cannot open the lane port for {role}s on {ip}:{wanted}: "
                                 f"{problem} (--no-lane runs without lanes: every call then "
                                 f"goes through Foolscap)") from None
            servers[role] = server
        log.info("lanes: port {c} for clients, {e} for engines ({how})",
                 c=servers["client"].port, e=servers["engine"].port,
                 how="TLS for every peer" if s.lane_tls
                 else "plain TCP on loopback, TLS for other hosts")
        return servers

    def _publish(self):
        s = self.settings
        sme = ISynchronousMultiEngine(IMultiEngine(self.controller))
        sme.max_bytes = s.unfetched_bytes
        sme.ttl = s.result_ttl
        # a value over the cap is refused on its header on Foolscap too (not buffered)
        wire.set_serialized_limit(s.payload_cap)
        self.mec = FCSynchronousMultiEngine(sme, payload_cap=s.payload_cap,
                                            data_server=self.data_server,
                                            lane_server=self.lane_servers.get("client"))
        sweeper = app_internet.TimerService(min(EXPIRY_SWEEP, max(sme.ttl / 4, 0.1)),
                                            self.mec.expire)
        sweeper.clock = self.reactor
        sweeper.setServiceParent(self)
        clients, engines = self.tubs["client"], self.tubs["engine"]
        self.furls["mec"] = self._register(clients, self.mec, "mec")
        # The task farm, on the same ControllerService as the multi-engine view.
        self.tasks = RITaskController(ITaskController(self.controller))
        self.tasks.lane_server = self.lane_servers.get("client")
        self.furls["tc"] = self._register(clients, self.tasks, "tc")
        self.registrar = FCEngineRegistrar(self.controller, data_server=self.data_server,
                                           lane_server=self.lane_servers.get("engine"),
                                           lane_max_frame=lane_limits(s.payload_cap)[1])
        if s.engine_furl:
            self.furls["engine"] = self._register(engines, self.registrar, "engine")
        if s.engine_key is not None:
            # The gate's FURL grants nothing without a credential made from the key.
            gate = FCEngineGate(self.registrar, credentials.CredentialChecker(s.engine_key))
            self.furls["gate"] = self._register(engines, gate, "gate")

    def _register(self, tub, obj, name):
        return fcutil.register(tub, obj, furl_file=self.furl_files.get(name), reuse=self.reuse)

    # -- stop -------------------------------------------------------------------------

    def shutdown(self):
        """Tell the engines the controller is stopping, stop every service and
        close the lanes, the data channel and the task store (once).  Returns
        a Deferred firing when done (every call gets its own)."""
        if self._stopping is None:
            # engines hear it is deliberate (they exit rather than reconnect for long)
            self._stopping = tell_engines_stopping(self.controller, self.reactor)
            self._stopping.addCallback(lambda _: self.stopService() if self.running else None)
            self._stopping.addErrback(lambda f: log.failure("while stopping", f))
            self._stopping.addBoth(lambda _: self.close_servers())
        d = defer.Deferred()
        self._stopping.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    def close_servers(self):
        """Close the data channel, the lanes and the task store (once); what
        :meth:`shutdown` does after stopping the services."""
        if self._closed:
            return
        self._closed = True
        if self.dashboard is not None:
            self.dashboard.stop()
        if self.data_server is not None:
            self.data_server.stop()
        for lanes in self.lane_servers.values():
            lanes.stop()
        try:
            self.task_controller.stop()
        except Exception:
            log.failure("while closing the task store")
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)


def data_channel_interface(ip):
    """Where the data channel listens, given a ``--ROLE-ip``: the same
    address, but ``::`` becomes ``0.0.0.0`` (the data channel's sockets are
    IPv4; a peer that reached Foolscap over IPv6 then sends bulk data through
    Foolscap)."""
    return "0.0.0.0" if ip == "::" else ip
