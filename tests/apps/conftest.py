"""Tier-3 fixtures: real ``ipcontroller`` and ``ipengine`` processes on loopback.

* ``cluster``: a :class:`Cluster` in a temporary cluster directory.  Tests
  start the processes they need (``await cluster.start()`` gives a
  controller, two engines and a connected client); whatever happens, every
  process is stopped afterwards (SIGTERM, SIGKILL after a timeout; its exit
  is awaited) and every client Tub is stopped.
* Waiting is by bounded polling (files, ``get_ids``) with short reactor
  delays, never by sleeping for a fixed time; a result that should come is
  awaited with ``cluster.within(d, seconds, what)`` so a broken program
  fails the test instead of hanging it.
"""
import os
import signal
import sys
from pathlib import Path

import pytest_twisted
from foolscap.eventual import flushEventualQueue
from twisted.internet import defer, error, protocol, reactor, task

import logsecrets
from ipkernel import asyncclient, fcutil
from ipkernel.clusterdir import ENGINE_FURL, MULTIENGINE_FURL
from ipkernel.error import ControllerError

#: Bound for anything that should happen soon (start-up, registration, exit).
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POLL = 0.1
#: Fast liveness settings for the tests that kill or freeze engines.
FAST_HEARTBEAT = ["--heartbeat-period", "0.5", "--heartbeat-timeout", "2"]


async def poll(check, what, timeout=START_TIMEOUT, interval=POLL):
    """Call ``check()`` (it may return a Deferred or coroutine) until it returns
    something true; return that.  Fails the test after ``timeout`` seconds."""
    deadline = reactor.seconds() + timeout
    while True:
        result = check()
        if isinstance(result, defer.Deferred) or hasattr(result, "__await__"):
            result = await result
        if result:
            return result
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await task.deferLater(reactor, interval, lambda: None)


def within(d, seconds, what):
    """Await ``d`` (a Deferred or coroutine), failing the test after ``seconds``."""
    d = defer.ensureDeferred(d) if not isinstance(d, defer.Deferred) else d

    def timed_out(failure):
        failure.trap(defer.TimeoutError)
        raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
    return d.addTimeout(seconds, reactor).addErrback(timed_out)


class Process(protocol.ProcessProtocol):
    """A child process whose output is kept and whose exit can be awaited."""

    def __init__(self, name):
        self.name = name
        self.chunks = []
        self.exit_code = None
        self.exit_signal = None
        self.ended = False
        self._waiters = []

    # -- ProcessProtocol --------------------------------------------------------
    def outReceived(self, data):
        self.chunks.append(data.decode("utf-8", "replace"))

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended = True
        self.exit_code = getattr(reason.value, "exitCode", None)
        self.exit_signal = getattr(reason.value, "signal", None)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(self.exit_code)

    # -- for tests -----------------------------------------------------------------
    @property
    def output(self):
        return "".join(self.chunks)

    @property
    def pid(self):
        return self.transport.pid

    def signal(self, name):
        """Send signal ``name`` ("TERM", "KILL", "STOP", ...); False if it already exited."""
        try:
            self.transport.signalProcess(getattr(signal, f"SIG{name}"))
        except error.ProcessExitedAlready:
            return False
        return True

    def wait(self, timeout=STOP_TIMEOUT):
        """Deferred firing with the exit code, or failing with TimeoutError."""
        if self.ended:
            return defer.succeed(self.exit_code)
        d = defer.Deferred()
        self._waiters.append(d)
        return d.addTimeout(timeout, reactor)

    async def stop(self, timeout=STOP_TIMEOUT):
        """TERM (and CONT, in case it is frozen), then KILL after ``timeout``; await the exit."""
        if self.ended:
            return self.exit_code
        self.signal("TERM")
        self.signal("CONT")
        try:
            return await self.wait(timeout)
        except defer.TimeoutError:
            self.signal("KILL")
            return await self.wait(timeout)


def child_env(pythonpath=(), **extra):
    """The environment for a child: ours (spawnProcess defaults to an empty
    one), without IPKERNEL_DIR, with ``pythonpath`` prepended."""
    env = dict(os.environ)
    env.pop("IPKERNEL_DIR", None)
    env["PYTHONUNBUFFERED"] = "1"
    paths = [str(p) for p in pythonpath]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


class Cluster:
    """Processes and clients of one test, all cleaned up by :meth:`cleanup`.

    The module's helpers are reachable from tests through it
    (``cluster.poll``, ``cluster.child_env``, ``cluster.FAST_HEARTBEAT``).
    """

    poll = staticmethod(poll)
    within = staticmethod(within)
    child_env = staticmethod(child_env)
    FAST_HEARTBEAT = FAST_HEARTBEAT
    START_TIMEOUT = START_TIMEOUT

    def __init__(self, root):
        self.root = Path(root)
        self.dir = self.root / "cluster"
        self.cwd = self.root / "cwd"  # an empty working directory for the children
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.processes = []
        self.tubs = []
        self.clients = []  # closed at cleanup (their data-channel sockets)
        self.controller = None
        self.engines = []

    @property
    def mec_furl_file(self):
        return str(self.dir / "security" / MULTIENGINE_FURL)

    @property
    def engine_furl_file(self):
        return str(self.dir / "security" / ENGINE_FURL)

    def spawn(self, name, module, args, env=None):
        proc = Process(name)
        argv = [sys.executable, "-m", module, *args]
        reactor.spawnProcess(proc, sys.executable, argv, env=env or child_env(), path=str(self.cwd))
        self.processes.append(proc)
        return proc

    def spawn_code(self, name, code, env=None):
        """Run ``python -c code`` as a child."""
        proc = Process(name)
        reactor.spawnProcess(proc, sys.executable, [sys.executable, "-c", code],
                             env=env or child_env(), path=str(self.cwd))
        self.processes.append(proc)
        return proc

    def start_controller(self, *args, env=None):
        self.controller = self.spawn("ipcontroller", "ipkernel.controller",
                                     ["--cluster-dir", str(self.dir), *args], env)
        return self.controller

    def start_engine(self, *args, env=None):
        engine = self.spawn(f"ipengine-{len(self.engines)}", "ipkernel.engine",
                            ["--cluster-dir", str(self.dir), "--exit-with-parent", *args], env)
        self.engines.append(engine)
        return engine

    def new_tub(self):
        tub = fcutil.make_tub()
        tub.startService()
        self.tubs.append(tub)
        return tub

    async def connect(self, timeout=START_TIMEOUT):
        """A client for the controller, retrying while it is still starting."""
        tub = self.new_tub()

        async def attempt():
            if self.controller is not None and self.controller.ended:
                raise AssertionError(f"ipcontroller exited:\n{self.controller.output}")
            if not os.path.exists(self.mec_furl_file):
                return None
            try:
                return await asyncclient.get_multiengine_client(self.mec_furl_file, tub=tub,
                                                                timeout=5)
            except ControllerError:
                return None
        client = await poll(attempt, "a connection to the controller", timeout)
        self.clients.append(client)
        return client

    async def wait_for_ids(self, mec, ids, timeout=START_TIMEOUT):
        """Poll ``get_ids`` until it equals ``ids``; return it."""
        ids = sorted(ids)

        async def check():
            for engine in self.engines:
                if engine.ended and engine.exit_code not in (0, None):  # it failed
                    raise AssertionError(f"{engine.name} exited:\n{engine.output}")
            return (await mec.get_ids()) == ids
        await poll(check, f"engines {ids} to be registered", timeout)
        return ids

    async def start(self, n_engines=2, controller_args=(), engine_args=(), engine_env=None,
                    controller_env=None):
        """Start a controller and ``n_engines`` engines; return a connected client
        once all engines are registered (ids 0..n-1)."""
        self.start_controller(*controller_args, env=controller_env)
        for _ in range(n_engines):
            self.start_engine(*engine_args, env=engine_env)
        mec = await self.connect()
        await self.wait_for_ids(mec, range(n_engines))
        return mec

    async def engine_pids(self, mec):
        """{engine id: pid} as the engines report it."""
        await mec.execute("import os as _os; _pid = _os.getpid()")
        ids = await mec.get_ids()
        return dict(zip(ids, await mec.pull("_pid", targets=ids)))

    def process_with_pid(self, pid):
        return next(p for p in self.processes if p.pid == pid)

    async def cleanup(self):
        tokens = logsecrets.client_tokens(self.clients)
        for client in self.clients:
            client.close()
        stops = [p.stop() for p in self.processes]
        results = await defer.DeferredList([defer.ensureDeferred(s) for s in stops],
                                           consumeErrors=True)
        await defer.DeferredList([t.stopService() for t in self.tubs], consumeErrors=True)
        await flushEventualQueue()
        for proc in self.processes:  # shown by pytest when the test failed
            print(f"----- {proc.name} (exit {proc.exit_code}, signal {proc.exit_signal})")
            print(proc.output[-6000:])
        # No FURL secret in what the programs logged (their output is their log).
        logsecrets.check_cluster_dir(
            self.dir, {f"the output of {p.name}": p.output for p in self.processes}, tokens)
        return results


@pytest_twisted.async_yield_fixture
async def cluster(tmp_path):
    """A :class:`Cluster` in ``tmp_path``; every process and Tub is stopped afterwards."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.cleanup()


@pytest_twisted.async_yield_fixture
async def client_tub():
    """A started client Tub, stopped after the test."""
    tub = fcutil.make_tub()
    tub.startService()
    yield tub
    await tub.stopService()
    await flushEventualQueue()

