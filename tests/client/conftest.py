"""Fixtures for the blocking client.

* ``blocking``: a :class:`Harness` for tier-2 tests.  ``await
  blocking.start(n)`` makes an in-process cluster (``make_fc_cluster``);
  ``blocking.client()`` (called from a worker thread) connects a
  :class:`MultiEngineClient` through the test's running reactor (calls are
  handed over with ``reactor.callFromThread``, so no reactor thread is
  started); ``await blocking.run(f)`` runs the user-side code ``f`` in a
  worker thread while the test keeps the reactor turning.  Every client is
  closed after the test.
* ``fake``: a :class:`FakeAsyncClient` and a client over it whose calls run
  inline (tier 1: no network, no reactor thread).
* ``jupyter_kernel``: a kernelspec of this Python for nbclient tests.
* ``processes``: the tier-3 process cluster of ``tests/apps`` (real
  ``ipcontroller``/``ipengine`` in a temporary cluster directory, always
  stopped).
"""
import ctypes
import importlib.util
import io
import itertools
import json
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads

from ipkernel.client import MultiEngineClient
from ipkernel.client.output import OutputListener
from ipkernel.client.reactor import ReactorBridge
from ipkernel import mapping
from ipkernel.error import ResultNotCompleted

#: Bound for user-side code run in a worker thread.
THREAD_TIMEOUT = 30
#: The blocking clients' own timeout in tier-2 tests (a hang fails the call, not the run).
CLIENT_TIMEOUT = 10


class Harness:
    """``lane``: whether clusters offer lanes (blocking calls then take the
    direct path of :mod:`ipkernel.client.direct`)."""

    def __init__(self, make_fc_cluster, lane=False):
        self._make_fc_cluster = make_fc_cluster
        self.lane = lane
        self.cluster = None
        self.clients = []

    async def start(self, n=4, **kwargs):
        kwargs.setdefault("lane", self.lane)
        self.cluster = await self._make_fc_cluster(n, **kwargs)
        return self.cluster

    def client(self, **kwargs):
        """A connected MultiEngineClient (call from a worker thread)."""
        kwargs.setdefault("timeout", CLIENT_TIMEOUT)
        mec = MultiEngineClient(self.cluster.mec_furl, tub=self.cluster.client_tub,
                                call_in_reactor=reactor.callFromThread, **kwargs)
        self.clients.append(mec)
        return mec

    def run(self, func, *args, **kwargs):
        """Deferred: ``func(*args, **kwargs)`` run in a worker thread."""
        return threads.deferToThread(func, *args, **kwargs).addTimeout(THREAD_TIMEOUT, reactor)

    async def close(self):
        clients, self.clients = self.clients, []
        if clients:
            await self.run(lambda: [c.close() for c in clients])


@pytest.fixture
def jupyter_kernel(tmp_path, monkeypatch, foreign_event_loop):
    """The name of a Jupyter kernelspec that runs this Python, found before
    any other (whatever kernels are installed), for nbclient; the reactor
    gets its signal handling back afterwards."""
    name = "ipkernel-test-python"
    spec = tmp_path / "jupyter" / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": name, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipythondir"))
    return name


@pytest.fixture
def raise_in_thread():
    """``raise_in_thread(ident, exc_type)``: make ``exc_type`` be raised in the
    thread ``ident`` (as Ctrl-C would in the main thread)."""
    def raise_in(ident, exc_type):
        count = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                           ctypes.py_object(exc_type))
        assert count == 1
    return raise_in


@pytest_twisted.async_yield_fixture
async def lane_blocking(make_fc_cluster):
    """Like ``blocking``, with lanes always (not parametrized)."""
    harness = Harness(make_fc_cluster, lane=True)
    yield harness
    await harness.close()


@pytest_twisted.async_yield_fixture(params=["foolscap", "lane"])
async def blocking(make_fc_cluster, request):
    harness = Harness(make_fc_cluster, lane=request.param == "lane")
    yield harness
    await harness.close()


class TTY(io.StringIO):
    """A text stream that claims to be a terminal."""

    def isatty(self):
        return True


class FakeAsyncClient:
    """An in-memory stand-in for FCFullSynchronousMultiEngineClient: every
    Deferred it returns has already fired.  Records the calls it gets."""

    def __init__(self, ids=(0, 1, 2, 3)):
        self.ids = list(ids)
        self.calls = []
        self.pending = {}
        self.not_ready = set()
        self._serial = itertools.count()
        self.furl = "pb://fake"
        self.output = OutputListener()   # (nothing arrives: the fake engines print nothing)

    def _answer(self, value, block):
        if block:
            return defer.succeed(value)
        result_id = f"{next(self._serial):040x}"
        self.pending[result_id] = value
        return defer.succeed(result_id)

    def get_ids(self):
        self.calls.append(("get_ids",))
        return defer.succeed(list(self.ids))

    def raw_map(self, func, seqs, dist="b", targets="all", *, block=True):
        self.calls.append(("raw_map", [list(s) for s in seqs], dist, targets, block))
        n = len(self.ids) if targets == "all" else 1 if isinstance(targets, int) else len(targets)
        parts = mapping.partitions(list(zip(*seqs)), n, dist)
        results = mapping.join([[func(*args) for args in part] for part in parts], dist)
        return self._answer(results, block)

    def execute(self, lines, targets="all", *, block=True):
        self.calls.append(("execute", lines, targets, block))
        if isinstance(lines, Exception):
            return defer.fail(lines)
        ids = self.ids if targets == "all" else [targets] if isinstance(targets, int) else targets
        return self._answer([{"id": i, "number": 1, "input": {"raw": lines, "translated": lines}}
                             for i in ids], block)

    def push(self, namespace, targets="all", *, block=True):
        self.calls.append(("push", namespace, targets, block))
        return self._answer([None] * len(self.ids), block)

    def pull(self, keys, targets="all", *, block=True):
        self.calls.append(("pull", keys, targets, block))
        return self._answer([keys] * len(self.ids), block)

    def get_pending_deferred(self, result_id, block=True):
        self.calls.append(("get_pending_deferred", result_id, block))
        if result_id in self.not_ready:
            return defer.fail(ResultNotCompleted("not yet"))
        value = self.pending.pop(result_id)
        if isinstance(value, Exception):
            return defer.fail(value)
        return defer.succeed(value)

    def abort(self, result_id):
        self.calls.append(("abort", result_id))
        return defer.succeed(result_id in self.pending)

    def clear_pending_deferreds(self):
        self.calls.append(("clear_pending_deferreds",))
        self.pending.clear()
        return defer.succeed(None)

    def methods_called(self):
        return [c[0] for c in self.calls]


def inline_bridge():
    """A bridge whose calls run at once in the calling thread (fake clients only)."""
    return ReactorBridge(call_in_reactor=lambda f: f(), in_reactor_thread=lambda: False)


@pytest.fixture
def fake():
    """``(fake_async_client, MultiEngineClient over it)``."""
    fc = FakeAsyncClient()
    mec = MultiEngineClient._over(fc, inline_bridge(), timeout=None)
    yield fc, mec
    mec.close()


@pytest.fixture
def tty_stderr(monkeypatch):
    """Make standard error a (fake) terminal and draw bars at once; returns the stream."""
    from ipkernel.client import progress

    stream = TTY()
    # (pytest's capture replaces sys.stderr itself at each test phase)
    monkeypatch.setattr(progress, "stream", lambda: stream)
    monkeypatch.setattr(progress, "DELAY", 0)
    monkeypatch.setattr(progress, "MIN_INTERVAL", 0)
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    return stream


# -- tier 3: the process cluster of tests/apps ------------------------------------------------

def _load_apps_conftest():
    path = Path(__file__).resolve().parent.parent / "apps" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_ipkernel_tests_apps_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_apps = _load_apps_conftest()


@pytest_twisted.async_yield_fixture
async def processes(tmp_path):
    """A tests/apps ``Cluster`` in ``tmp_path``; every process and Tub is stopped afterwards."""
    cluster = _apps.Cluster(tmp_path)
    try:
        yield cluster
    finally:
        await cluster.cleanup()
