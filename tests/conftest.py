"""Shared fixtures for every tier.

* ``clean_reactor`` (autouse): fails a test that leaves delayed calls,
  listening ports or open connections behind, and drains Foolscap's
  eventual-send queue.
* ``reactor_signals_intact`` (autouse): fails a test that leaves the signal
  wakeup fd or the SIGCHLD handler changed (the reactor would stop seeing its
  child processes exit); ``foreign_event_loop`` puts them back for a test
  that runs another event loop in this process (nbclient's asyncio).
* a time bound on every Deferred-returning test (``pytest_runtest_call``):
  pytest-timeout's alarm cannot end a test that awaits a Deferred that
  never fires (it goes off inside the reactor's loop, which logs it and
  waits on), so the test's Deferred is cancelled first, at nine tenths of
  its timeout, and the test fails naming what happened.
* ``make_engine``: builds in-process EngineServices and stops them (and their
  user-code threads) after the test.
* ``make_controller``: a ControllerService with ``n`` in-process queued engines.
* ``cert_pool`` / ``make_tub``: started Foolscap Tubs with pre-generated
  certificates (distinct within a test), all stopped after the test.
* ``gates``: barriers that engine code can wait at until the test opens them,
  so a test can hold an engine busy (and learn when the command started)
  without sleeping.  Engines live in this process, so engine code reaches a
  gate through a module registered in ``sys.modules`` for the test.
* ``make_fc_cluster``: the controller node ``ipcontroller`` runs
  (:class:`~ipkernel.controller.node.ControllerNode`: Tubs listening on
  127.0.0.1, lanes and the data channel on unless asked otherwise), ``n``
  in-process engines each with its own Tub (registered through
  EngineConnector), and a multi-engine client on its own Tub.

An unmarked test counts as tier 1.
"""
import signal
import sys
import threading
import time
import types
import uuid

import pytest
import pytest_twisted
from foolscap.api import flushEventualQueue
from twisted.internet import defer, reactor

from ipkernel import asyncclient, fcutil
from ipkernel.controller import ControllerService
from ipkernel.controller.node import ControllerNode, NodeSettings
from ipkernel.engine import EngineService, QueuedEngine
from ipkernel.engine.connector import EngineConnector

import timebound

STOP_TIMEOUT = 10
#: How long a test's connections and ports may take to close after it ends.
CLEANUP_TIMEOUT = 2.0
#: Upper bound for connecting and registering during fixture setup.
CONNECT_TIMEOUT = 10


def _leftover_delayed_calls():
    return [dc for dc in reactor.getDelayedCalls()
            if dc.active() and not getattr(dc.func, "__module__", "").startswith("pytest_twisted")]


def _turn(delay=0):
    """A Deferred firing after one reactor turn (or ``delay`` seconds)."""
    d = defer.Deferred()
    reactor.callLater(delay, d.callback, None)
    return d


def _open_selectables(baseline):
    return [s for s in set(reactor.getReaders()) | set(reactor.getWriters()) if s not in baseline]


def _close(selectable):
    for name in ("stopListening", "abortConnection", "loseConnection"):
        method = getattr(selectable, name, None)
        if method is not None:
            try:
                method()
            except Exception:
                pass
            return


@pytest_twisted.async_yield_fixture(autouse=True)
async def clean_reactor():
    """Fail the test if it leaves active delayed calls, listening ports or
    open connections in the reactor."""
    baseline = set(reactor.getReaders()) | set(reactor.getWriters())
    yield
    await flushEventualQueue()
    # give calls scheduled for "now" (callLater(0)) a chance to run
    for _ in range(3):
        await _turn()
    # closing connections takes a few turns; wait for it, within bounds
    deadline = time.monotonic() + CLEANUP_TIMEOUT
    open_now = _open_selectables(baseline)
    while open_now and time.monotonic() < deadline:
        await _turn(0.005)
        open_now = _open_selectables(baseline)
    await flushEventualQueue()
    leftovers = _leftover_delayed_calls()
    for dc in leftovers:
        dc.cancel()
    for selectable in open_now:
        _close(selectable)
    assert not open_now, f"test left listening ports or connections open: {open_now!r}"
    assert not leftovers, f"test left delayed calls behind: {leftovers!r}"


def _signal_state():
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    return wakeup, signal.getsignal(signal.SIGCHLD)


def _restore_signal_state(state):
    wakeup, sigchld = state
    signal.set_wakeup_fd(wakeup)
    signal.signal(signal.SIGCHLD, sigchld)


@pytest.fixture(autouse=True)
def reactor_signals_intact():
    """Fail (and repair) a test that changed how the reactor hears signals:
    without its wakeup fd a child's exit goes unnoticed, and a process
    protocol waits for ever."""
    before = _signal_state()
    yield
    after = _signal_state()
    if after != before:
        _restore_signal_state(before)
        pytest.fail(f"the test changed the reactor's signal handling (wakeup fd, SIGCHLD "
                    f"handler) from {before} to {after}; use the foreign_event_loop fixture")


@pytest.fixture
def foreign_event_loop():
    """For a test that runs another event loop in this process (an asyncio
    one, as nbclient does), which takes the signal wakeup fd and SIGCHLD
    from the reactor: they are given back afterwards."""
    before = _signal_state()
    yield
    _restore_signal_state(before)


@pytest_twisted.async_yield_fixture
async def make_engine():
    """Return ``make(**kwargs) -> EngineService``; every engine made is stopped afterwards."""
    engines = []

    def make(**kwargs):
        engine = EngineService(**kwargs)
        engine.startService()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        if engine.running:
            await engine.stopService().addTimeout(STOP_TIMEOUT, reactor)


@pytest_twisted.async_yield_fixture
async def make_controller(make_engine):
    """Return ``make(n=0, **controller_kwargs) -> ControllerService`` with ``n``
    in-process engines registered (ids 0..n-1)."""

    def make(n=0, **kwargs):
        controller = ControllerService(**kwargs)
        for _ in range(n):
            controller.register_engine(QueuedEngine(make_engine()))
        return controller

    yield make


# How long engine code waits at a gate before giving up (so a broken test can
# never wedge an engine thread forever); stays below the 60 s test timeout.
GATE_TIMEOUT = 20
# How long a test waits for something that should happen soon.
EVENT_TIMEOUT = 10


class Gate:
    """A barrier for engine code.

    ``code`` is a one-line engine expression that reports its arrival, then
    blocks until :meth:`open` is called; ``notify_code`` only reports the
    arrival.  Both evaluate to None and define no names.
    """

    def __init__(self, module_name, key):
        self.key = key
        self.arrivals = 0
        self._opened = threading.Event()
        self._waiters = []
        prefix = f"__import__({module_name!r}).gates[{key!r}]"
        self.code = f"{prefix}.pass_through()"
        self.notify_code = f"{prefix}.arrive()"

    # --- called from engine threads -------------------------------------
    def arrive(self):
        reactor.callFromThread(self._arrived)

    def pass_through(self):
        self.arrive()
        if not self._opened.wait(GATE_TIMEOUT):
            raise RuntimeError(f"gate {self.key!r} was never opened")

    # --- called from the reactor thread ---------------------------------
    def _arrived(self):
        self.arrivals += 1
        ready = [(n, d) for n, d in self._waiters if self.arrivals >= n]
        self._waiters = [(n, d) for n, d in self._waiters if self.arrivals < n]
        for _, d in ready:
            d.callback(self.arrivals)

    def wait_arrivals(self, n=1):
        """Deferred firing once ``n`` engine threads reached the gate."""
        if self.arrivals >= n:
            return defer.succeed(self.arrivals)
        d = defer.Deferred()
        self._waiters.append((n, d))
        return d.addTimeout(EVENT_TIMEOUT, reactor)

    def open(self):
        self._opened.set()


class Gates:
    def __init__(self):
        self.module_name = f"_ipkernel_test_gates_{uuid.uuid4().hex}"
        self.module = types.ModuleType(self.module_name)
        self.module.gates = {}
        sys.modules[self.module_name] = self.module

    def new(self):
        key = f"g{len(self.module.gates)}"
        gate = Gate(self.module_name, key)
        self.module.gates[key] = gate
        return gate

    def close(self):
        for gate in self.module.gates.values():
            gate.open()
        sys.modules.pop(self.module_name, None)


@pytest.fixture
def gates(make_engine):
    """A factory of :class:`Gate` objects; every gate is opened after the test,
    before the engines are stopped."""
    registry = Gates()
    yield registry
    registry.close()


class CertPool:
    """Certificates (PEM, with key) made once per session and handed out by
    index: a test's n-th Tub gets certificate n, so Tubs of one test never
    share an identity while Tub creation stays cheap."""

    def __init__(self):
        self._pems = []

    def get(self, index):
        while len(self._pems) <= index:
            self._pems.append(fcutil.make_tub().getCertData())
        return self._pems[index]


@pytest.fixture(scope="session")
def cert_pool():
    return CertPool()


async def stop_tubs(tubs):
    """Stop the running ``tubs`` in parallel, then drain the eventual queue."""
    running = [tub for tub in tubs if tub.running]
    if running:
        results = await defer.DeferredList(
            [defer.maybeDeferred(tub.stopService) for tub in running],
            consumeErrors=True).addTimeout(STOP_TIMEOUT, reactor)
        failures = [value for ok, value in results if not ok]
        if failures:
            failures[0].raiseException()
    await flushEventualQueue()


@pytest_twisted.async_yield_fixture
async def make_tub(cert_pool):
    """Return ``make(started=True, **options) -> Tub``: a Tub with ipkernel's
    options (plus ``options``) and a certificate from the pool, started unless
    ``started`` is False (for a parent service to start); every Tub made is
    stopped (in parallel) after the test, if it still runs."""
    tubs = []

    def make(started=True, **options):
        tub = fcutil.make_tub(cert_data=cert_pool.get(len(tubs)), options=options)
        if started:
            tub.startService()
        tubs.append(tub)
        return tub

    make.tubs = tubs
    yield make
    await stop_tubs(tubs)


class FCCluster:
    """A controller node (the one ``ipcontroller`` runs), engines with their
    own Tubs, a client.

    ``node`` is the :class:`~ipkernel.controller.node.ControllerNode`
    (``controller`` its ControllerService, ``tub`` its client Tub,
    ``engine_furl`` / ``mec_furl`` / ``tc_furl`` its FURLs);
    ``services[i]``, ``engine_tubs[i]`` and ``connectors[i]`` belong to the
    i-th engine added; ``client`` is an FCFullSynchronousMultiEngineClient on
    ``client_tub`` (after :meth:`connect_client`).
    """

    def __init__(self, make_tub, make_engine, node):
        self._make_tub = make_tub
        self._make_engine = make_engine
        self.node = node
        self.controller = node.controller
        self.services = []
        self.engine_tubs = []
        self.connectors = []
        self.client = None
        self.client_tub = None

    async def start(self):
        await self.node.start()
        node = self.node
        self.tub, self.port = node.tubs["client"], node.ports["client"]
        self.data_server, self.lane_servers = node.data_server, node.lane_servers
        self.lane_server = node.lane_servers.get("client")
        self.registrar, self.fc_sme, self.sme = node.registrar, node.mec, node.mec.sme
        self.engine_furl, self.mec_furl = node.furls["engine"], node.furls["mec"]
        self.tc_furl = node.furls["tc"]
        return self

    async def add_engine(self, service=None, **engine_kwargs):
        """Start an engine (``service``, or a new EngineService) with its own
        Tub and register it; return its id."""
        if service is None:
            service = self._make_engine(**engine_kwargs)
        tub = self._make_tub()
        connector = EngineConnector(tub, service, self.engine_furl)
        self.services.append(service)
        self.engine_tubs.append(tub)
        self.connectors.append(connector)
        return await connector.start().addTimeout(CONNECT_TIMEOUT, reactor)

    async def connect_client(self):
        self.client_tub = self._make_tub()
        self.client = await asyncclient.get_multiengine_client(
            self.mec_furl, tub=self.client_tub, timeout=CONNECT_TIMEOUT)
        return self.client

    async def close(self):
        """Close the client's and engines' lanes and data channels, then stop
        the node's services, lanes, data channel and task store (without
        telling the engines: their Tubs are stopped by make_tub)."""
        if self.client is not None:
            self.client.close()
        for connector in self.connectors:
            connector.close_link()
        if self.node.running:
            await self.node.stopService()
        self.node.close_servers()


@pytest_twisted.async_yield_fixture
async def make_fc_cluster(make_tub, make_engine, tmp_path):
    """Return ``async make(n=0, payload_cap=None, data_channel=True, lane=True,
    shutdown_hook=None, **settings) -> FCCluster`` with ``n`` engines
    registered (ids 0..n-1) and a connected client: the node ``ipcontroller``
    builds, on loopback, with lanes and the data channel as it has them by
    default (``lane="tls"``: lanes over TLS on loopback too, as with
    ``--lane-tls``; False: no lanes, or no data channel, every call and value
    on Foolscap).  ``settings`` are more
    :class:`~ipkernel.controller.node.NodeSettings` (``max_engines``, ...)."""
    made = []

    async def make(n=0, payload_cap=None, data_channel=True, lane=True, shutdown_hook=None,
                   **settings):
        work = tmp_path / f"node{len(made)}"
        work.mkdir()
        node = ControllerNode(
            NodeSettings(payload_cap=payload_cap, data_channel=bool(data_channel),
                         lane=bool(lane), lane_tls=(lane == "tls"), work_dir=str(work),
                         **settings),
            reactor, tub_factory=lambda role, cert_file: make_tub(started=False),
            shutdown_hook=shutdown_hook)
        cluster = FCCluster(make_tub, make_engine, node)
        made.append(cluster)
        await cluster.start()
        for _ in range(n):
            await cluster.add_engine()
        await cluster.connect_client()
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


def pytest_runtest_setup(item):
    item.ipkernel_started = time.monotonic()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item):
    limit = timebound.timeout_of(item)
    original = getattr(item, "obj", None)
    if limit > 0 and callable(original):
        started = getattr(item, "ipkernel_started", time.monotonic())
        item.obj = timebound.bounded(original, started + timebound.BOUND_SHARE * limit, limit)
    try:
        yield
    finally:
        if limit > 0 and callable(original):
            item.obj = original


def pytest_collection_modifyitems(config, items):
    tier1 = pytest.mark.tier1
    for item in items:
        if not any(item.get_closest_marker(name) for name in ("tier1", "tier2", "tier3", "tier4")):
            item.add_marker(tier1)


def pytest_configure(config):
    # pyOpenSSL deprecations raised by Twisted's TLS layer for every Tub and
    # handshake (foolscap 24.9 still uses those APIs); not ours to fix.
    for module in ("OpenSSL", r"twisted\.internet\._sslverify", "foolscap"):
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:{module}")
    # The repository root must never be importable as a package root: the
    # top-level interfaces/ folder is only ever ipkernel.interfaces.
    root = str(config.rootpath)
    sys.path[:] = [p for p in sys.path if p not in ("", ".", root)]
