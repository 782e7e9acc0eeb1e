"""Fixtures shared by the controller-side tier-1 tests.

* ``gates``: barriers that engine code can wait at until the test opens them,
  so a test can hold an engine busy (and learn when the command started)
  without sleeping.  Engines live in this process, so engine code reaches a
  gate through a module registered in ``sys.modules`` for the test.
* ``log_events``: every twisted.logger event emitted during the test.
* ``controller4``: a ControllerService with four in-process engines (ids 0-3).
* ``script``: writes a Python file and returns its path.
* ``make_sme`` / ``sme`` and ``make_me`` / ``me``: the multi-engine under
  test, two-phase (IFullSynchronousMultiEngine) or plain (IFullMultiEngine),
  parametrized over two modes: ``local`` (the in-process adapters of a
  ControllerService, tier 1) and ``foolscap`` (a client of a controller
  listening on 127.0.0.1, every engine an in-process EngineService with its
  own Tub, tier 2).  Over Foolscap both are the same client object: its
  methods with the default ``block=True`` behave as IFullMultiEngine's.
"""
import sys
import threading
import types
import uuid

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher

from ipkernel.interfaces.multiengine import IFullMultiEngine, IFullSynchronousMultiEngine

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
def gates(make_controller):
    """A factory of :class:`Gate` objects; every gate is opened after the test,
    before the engines are stopped."""
    registry = Gates()
    yield registry
    registry.close()


@pytest.fixture
def log_events():
    """The list of twisted.logger events published while the test runs."""
    events = []
    observer = events.append
    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def controller4(make_controller):
    """A ControllerService with four in-process engines, ids 0, 1, 2, 3."""
    return make_controller(4)


@pytest.fixture
def script(tmp_path):
    """``script(text) -> path`` of a new Python file holding ``text``."""
    counter = iter(range(1000))

    def write(text):
        path = tmp_path / f"script_{next(counter)}.py"
        path.write_text(text)
        return str(path)

    return write


MODES = [pytest.param("local", marks=pytest.mark.tier1),
         pytest.param("foolscap", marks=pytest.mark.tier2)]


@pytest.fixture(params=MODES)
def multiengine_mode(request):
    """``'local'`` or ``'foolscap'``: how the multi-engine under test is reached."""
    return request.param


def _factory(mode, make_controller, make_fc_cluster, adapt):
    async def make(n=4, **controller_kwargs):
        if mode == "local":
            return adapt(make_controller(n, **controller_kwargs))
        cluster = await make_fc_cluster(n, **controller_kwargs)
        make.clusters.append(cluster)
        return cluster.client

    make.mode = mode
    make.clusters = []
    return make


@pytest.fixture
def make_sme(multiengine_mode, make_controller, make_fc_cluster):
    """``async make(n=4, **controller_kwargs)`` -> an IFullSynchronousMultiEngine
    over ``n`` engines (ids 0..n-1)."""
    return _factory(multiengine_mode, make_controller, make_fc_cluster,
                    lambda c: IFullSynchronousMultiEngine(IFullMultiEngine(c)))


@pytest.fixture
def make_me(multiengine_mode, make_controller, make_fc_cluster):
    """``async make(n=4, **controller_kwargs)`` -> an IFullMultiEngine (a
    two-phase client used with ``block=True`` in foolscap mode)."""
    return _factory(multiengine_mode, make_controller, make_fc_cluster, IFullMultiEngine)


@pytest_twisted.async_fixture
async def sme(make_sme):
    """The two-phase multi-engine over four engines, ids 0-3."""
    return await make_sme(4)


@pytest_twisted.async_fixture
async def me(make_me):
    """The plain multi-engine over four engines, ids 0-3."""
    return await make_me(4)
