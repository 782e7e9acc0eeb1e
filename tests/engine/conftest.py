"""Helpers shared by the engine tests.

* ``valid_command`` / ``invalid_command``: any test naming one of these
  arguments is parametrized over the command tables below (the acceptance
  commands of the 0.10 test suite, in Python 3 syntax).
* ``make_gate``: user code that tells the test it started and then blocks
  (or spins) until the test lets it go -- so tests wait for events, never for
  time.  Every gate is opened when the test ends, before the engines stop.
* ``make_remote_engine``: serves an EngineService on its own listening Tub
  (``FCEngineFromService``) and returns ``RemoteEngine(rref, decode=True)``
  seen from a second Tub (or, with ``lane=True``, calling on a lane) -- at once, so that test bodies can make engines
  without awaiting; calls made before the connection is up are sent, in
  order, when it is.
"""
import sys
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from ipkernel import fcutil
from ipkernel.controller.fc import RemoteEngine
from ipkernel.engine.fc import FCEngineFromService
from ipkernel.interfaces.remote import RIEngine
from ipkernel.lane import LaneServer, connect_lane
from ipkernel.transport.link import Link

CONNECT_TIMEOUT = 10

#: (id, source).  Each must run without error on a fresh interpreter.
VALID_COMMANDS = [
    ("assign", "a = 5"),
    ("assign-2", "b=10"),
    ("three-statements", "a=5; b=10; c=a+b"),
    ("displayed-value", "import math; 2.0*math.pi"),
    ("multi-line-def", "def total(n):\n    acc = 0.0\n    for i in range(n):\n        acc += i\n"
                       "    return acc\n"),
    ("one-line-if", "if 1 < 2: a = 5"),
    ("sleep", "import time\ntime.sleep(0.01)"),
    ("semicolon-at-line-end", "from math import cos;\nx = 1.0*cos(0.5)"),
    ("trailing-whitespace", "from collections import OrderedDict\ns = OrderedDict()\n        \n  "),
    ("method-call-value", "import math\nmath.cos(1.0)"),
    ("embedded-and-trailing-semicolons", "x=1.0; y=2.0;"),
    ("import-then-expression-with-semicolons", "from math import cos; x = 1.0*cos(0.5);"),
]

#: (id, source, exact exception type raised on a fresh interpreter)
INVALID_COMMANDS = [
    ("zero-division", "a=1/0", ZeroDivisionError),
    ("undefined-name", "print(v)", NameError),
    ("index", "l=[];l[0]", IndexError),
    ("key", "d={};d['a']", KeyError),
    ("assert", "assert 1==0", AssertionError),
    ("bogus-import", "import ipkernel_no_such_module_qzx", ModuleNotFoundError),
    ("raise-exception", "raise Exception()", Exception),
]


def pytest_generate_tests(metafunc):
    if "valid_command" in metafunc.fixturenames:
        metafunc.parametrize("valid_command", [src for _, src in VALID_COMMANDS],
                             ids=[name for name, _ in VALID_COMMANDS])
    if "invalid_command" in metafunc.fixturenames:
        metafunc.parametrize("invalid_command", [(src, exc) for _, src, exc in INVALID_COMMANDS],
                             ids=[name for name, _, _ in INVALID_COMMANDS])


class Gate:
    """A rendezvous between the test (reactor thread) and engine user code.

    Registered in ``sys.modules`` under ``name`` so user code reaches it with
    ``__import__(name)`` without leaving names in the user namespace.
    """

    def __init__(self, name):
        self.name = name
        self.release_event = threading.Event()
        self.started = defer.Deferred()

    # called by user code, in the engine's thread
    def notify(self):
        reactor.callFromThread(self._fire)

    def _fire(self):
        if not self.started.called:
            self.started.callback(None)

    # source text for execute()
    def hold_code(self):
        """User code that reports it started, then blocks until :meth:`open`."""
        return (f"__import__({self.name!r}).notify()\n"
                f"assert __import__({self.name!r}).release_event.wait(30)")

    def spin_code(self):
        """User code that reports it started, then runs a pure-Python loop until :meth:`open`."""
        return (f"__import__({self.name!r}).notify()\n"
                f"while not __import__({self.name!r}).release_event.is_set(): pass")

    async def wait_started(self, timeout=10):
        await self.started.addTimeout(timeout, reactor)

    def open(self):
        self.release_event.set()


@pytest.fixture
def make_gate(make_engine):
    """Return ``make() -> Gate``.  Depends on ``make_engine`` so that gates are
    opened before the engines are stopped."""
    gates = []

    def make():
        gate = Gate(f"_ipkernel_test_gate_{len(gates)}_{id(gates)}")
        sys.modules[gate.name] = gate
        gates.append(gate)
        return gate

    yield make
    for gate in gates:
        gate.open()
        sys.modules.pop(gate.name, None)


class PendingReference:
    """Stands in for a RemoteReference that is still being obtained.

    ``callRemote`` works at once: calls made before the reference arrives
    wait, and are sent in the order they were made when it does (or fail
    with the connection's failure).
    """

    def __init__(self, connecting):
        self.rref = None
        self._waiting = []
        self.ready = connecting.addCallbacks(self._arrived, self._failed)

    def callRemote(self, method, *args, **kwargs):
        if self.rref is not None:
            return self.rref.callRemote(method, *args, **kwargs)
        d = defer.Deferred()
        self._waiting.append((d, method, args, kwargs))
        return d

    def _arrived(self, rref):
        self.rref = rref
        waiting, self._waiting = self._waiting, []
        for d, method, args, kwargs in waiting:
            defer.maybeDeferred(rref.callRemote, method, *args, **kwargs).chainDeferred(d)
        return rref

    def _failed(self, failure):
        waiting, self._waiting = self._waiting, []
        for d, _, _, _ in waiting:
            d.errback(failure)
        return failure


@pytest_twisted.async_yield_fixture
async def make_remote_engine(make_tub):
    """``make(service, lane=False) -> RemoteEngine``: ``service`` served by
    FCEngineFromService on a Tub listening on 127.0.0.1, reached from another
    Tub (with ``lane``: its calls go on a lane to it instead).  Connections
    still being made are awaited before the Tubs stop."""
    pending = []
    closers = []

    async def connect(service, lane):
        server = make_tub()
        await fcutil.listen(server, reactor)
        local = FCEngineFromService(service)
        furl = fcutil.register(server, local)
        rref = await make_tub().getReference(furl).addTimeout(CONNECT_TIMEOUT, reactor)
        if not lane:
            return rref
        lanes = LaneServer()
        lanes.start()
        closers.append(lanes.stop)
        port, token, _, _ = lanes.offer(lambda joined: local)
        joined = await connect_lane(port, token, remote_interface=RIEngine)
        closers.append(joined.close)
        return Link(rref, joined)

    def make(service, lane=False):
        reference = PendingReference(defer.Deferred.fromCoroutine(connect(service, lane)))
        pending.append(reference.ready)
        return RemoteEngine(reference, decode=True)

    yield make
    await defer.DeferredList(pending, consumeErrors=True)
    for close in closers:
        close()
