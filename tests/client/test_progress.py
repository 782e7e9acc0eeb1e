"""Progress bars: chunked maps advance a bar per chunk, task maps and task
barriers per batch; the chunking never depends on whether a bar is shown;
quiet unless standard error is a terminal (or Jupyter), switchable off; the
widget-or-text choice in Jupyter.  Tier 1 over the fake async client, plus
tier-2 maps through real Tubs (engines held at gates to watch a bar move)."""
import io
import sys
import threading
import warnings

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from ipkernel.client import TaskClient, progress
from ipkernel import mapping

from .conftest import THREAD_TIMEOUT


def raw_maps(fc):
    return [c for c in fc.calls if c[0] == "raw_map"]


class RecordingBar:
    """Stands in for a tqdm class: records the bars made and their updates;
    ``when(n)`` is a Deferred firing (in the reactor thread) once ``n`` steps
    were counted."""

    made = []
    _made_waiters = []   # (k, Deferred) of made_number(k)

    def __init__(self, total=None, desc=None, **kwargs):
        self.total, self.desc, self.kwargs = total, desc, kwargs
        self.updates = []
        self.closed = False
        self._waiters = []
        RecordingBar.made.append(self)
        k = len(RecordingBar.made)
        for waited, d in [w for w in RecordingBar._made_waiters if w[0] == k]:
            RecordingBar._made_waiters.remove((waited, d))
            reactor.callFromThread(d.callback, self)

    @classmethod
    def made_number(cls, k):
        """A Deferred of the k-th bar made (1-based), once it is made."""
        d = defer.Deferred()
        if len(cls.made) >= k:
            d.callback(cls.made[k - 1])
        else:
            cls._made_waiters.append((k, d))
        return d.addTimeout(THREAD_TIMEOUT, reactor)

    @property
    def count(self):
        return sum(self.updates)

    def update(self, n=1):
        self.updates.append(n)
        ready = [(k, d) for k, d in self._waiters if self.count >= k]
        self._waiters = [(k, d) for k, d in self._waiters if self.count < k]
        for _, d in ready:
            reactor.callFromThread(d.callback, self.count)

    def when(self, n):
        d = defer.Deferred()
        if self.count >= n:
            d.callback(self.count)
        else:
            self._waiters.append((n, d))
        return d.addTimeout(THREAD_TIMEOUT, reactor)

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


@pytest.fixture
def recorded(monkeypatch, tty_stderr):
    """Bars are RecordingBars (and may be shown: stderr is a terminal)."""
    RecordingBar.made = []
    RecordingBar._made_waiters = []
    monkeypatch.setattr(progress, "bar_class", lambda: RecordingBar)
    return RecordingBar.made


# -- chunked maps --------------------------------------------------------------------------

@pytest.mark.parametrize("dist", ["b", "r"])
def test_chunked_map_keeps_order_and_each_engines_items(fake, tty_stderr, dist):
    fc, mec = fake
    xs, ys = list(range(200)), list(range(1000, 1200))
    assert mec.map(lambda x, y: (x, y), xs, ys, dist=dist, chunksize=20) == list(zip(xs, ys))
    maps = raw_maps(fc)
    assert len(maps) == len(progress.plan_map(200, 4, 20)) == 3
    assert all(m[2] == dist and m[4] is False for m in maps)
    # each engine got exactly its part of the unchunked split, in order
    per_engine = [[] for _ in range(4)]
    for _, (chunk_xs, _ys), _, targets, _ in maps:
        for engine, part in zip(targets, mapping.partitions(chunk_xs, len(targets), dist)):
            per_engine[engine].extend(part)
    assert per_engine == mapping.partitions(xs, 4, dist)
    fetched = [c for c in fc.calls if c[0] == "get_pending_deferred"]
    assert len(fetched) == 3 and not fc.pending          # every chunk fetched
    assert "map" in tty_stderr.getvalue() and "200/200" in tty_stderr.getvalue()


def test_chunks_follow_the_targets(fake, tty_stderr):
    fc, mec = fake
    assert mec.map(abs, range(-400, 0), targets=[0, 1], chunksize=50) == list(range(400, 0, -1))
    assert len(raw_maps(fc)) == len(progress.plan_map(400, 2, 50)) == 4
    assert {tuple(m[3]) for m in raw_maps(fc)} == {(0, 1)}
    assert "get_ids" not in fc.methods_called()     # explicit targets: no need to ask
    fc.calls.clear()
    assert mec.map(abs, range(100), targets=3, chunksize=50) == list(range(100))
    assert len(raw_maps(fc)) == len(progress.plan_map(100, 1, 50)) == 2
    assert {tuple(m[3]) for m in raw_maps(fc)} == {(3,)}


def test_small_maps_are_not_split(fake, tty_stderr):
    fc, mec = fake
    assert mec.map(abs, range(-5, 0)) == [5, 4, 3, 2, 1]
    assert len(raw_maps(fc)) == 1
    assert "get_ids" not in fc.methods_called()     # too small to split on any cluster


def test_the_chunks_do_not_depend_on_the_terminal(fake, monkeypatch):
    """The same parts go to the same engines whether or not a bar may be
    shown (a terminal, none, the client's progress off, the environment's
    off): one call per engine, unless chunksize= says otherwise.  (With a bar
    the call is made non-blocking and waited for: the engines report how far
    they got.)"""
    fc, mec = fake
    stream = io.StringIO()
    monkeypatch.setattr(progress, "stream", lambda: stream)
    monkeypatch.setattr(progress, "DELAY", 0)
    monkeypatch.setattr(progress, "MIN_INTERVAL", 0)
    monkeypatch.delenv(progress.ENV_VAR, raising=False)

    def calls_of_a_map():
        fc.calls.clear()
        assert mec.map(abs, range(-100, 0)) == list(range(100, 0, -1))
        return [m[1:4] for m in raw_maps(fc)]      # the parts, dist and targets
    not_a_terminal = calls_of_a_map()
    assert len(raw_maps(fc)) == 1 and stream.getvalue() == ""
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    assert calls_of_a_map() == not_a_terminal and "100/100" in stream.getvalue()
    mec.progress = False
    assert calls_of_a_map() == not_a_terminal
    mec.progress = True
    monkeypatch.setenv(progress.ENV_VAR, "0")
    assert calls_of_a_map() == not_a_terminal


def test_quiet_when_stderr_is_not_a_terminal(fake, monkeypatch):
    fc, mec = fake
    stream = io.StringIO()
    monkeypatch.setattr(progress, "stream", lambda: stream)
    monkeypatch.setattr(progress, "DELAY", 0)
    assert mec.map(abs, range(-100, 0)) == list(range(100, 0, -1))
    prs = [mec.pull("k", block=False) for _ in range(3)]
    mec.barrier(prs)
    assert stream.getvalue() == ""


def test_switched_off_by_the_environment(fake, tty_stderr, monkeypatch):
    fc, mec = fake
    monkeypatch.setenv(progress.ENV_VAR, "0")
    mec.map(abs, range(100))
    mec.barrier([mec.pull("k", block=False)])
    assert tty_stderr.getvalue() == ""
    for word in ("off", "False", "no"):
        monkeypatch.setenv(progress.ENV_VAR, word)
        assert not progress.enabled_by_environment()
    monkeypatch.setenv(progress.ENV_VAR, "1")
    assert progress.enabled_by_environment()


def test_switched_off_on_the_client(fake, tty_stderr):
    fc, mec = fake
    mec.progress = False
    assert mec.map(abs, range(100)) == list(range(100))
    assert tty_stderr.getvalue() == ""


def test_non_blocking_map_is_one_call(fake, tty_stderr):
    fc, mec = fake
    pr = mec.map(abs, range(100), block=False)
    assert pr.r == list(range(100))
    assert len(raw_maps(fc)) == 1


def test_bar_waits_for_the_delay(fake, tty_stderr, monkeypatch):
    fc, mec = fake
    monkeypatch.setattr(progress, "DELAY", 3600)
    assert mec.map(abs, range(100)) == list(range(100))
    assert len(raw_maps(fc)) == 1        # one call per engine; quick: no bar drawn
    assert tty_stderr.getvalue() == ""


def test_the_bar_advances_per_chunk(fake, recorded):
    _, mec = fake
    mec.map(abs, range(203), chunksize=10)
    bar, = recorded
    assert bar.total == 203 and bar.desc == "map" and bar.closed
    assert bar.updates == [40] * 5 + [3]   # 4 engines x 10 items per chunk; then the rest
    assert bar.kwargs["delay"] == progress.DELAY and bar.kwargs["leave"] is True


def test_a_failing_chunk_stops_the_map(fake, tty_stderr):
    fc, mec = fake
    original = fc.raw_map

    def failing_third(func, seqs, **kwargs):
        d = original(func, seqs, **kwargs)
        if len(raw_maps(fc)) == 3:
            fc.pending[d.result] = ZeroDivisionError("in chunk 3")
        return d
    fc.raw_map = failing_third
    with pytest.raises(ZeroDivisionError, match="chunk 3"):
        mec.map(abs, range(400), chunksize=10)
    # every chunk is sent before any answer is seen (the fake answers at once);
    # none is left pending (see test_map_chunks for chunks in flight being aborted)
    assert len(raw_maps(fc)) == 10 and not fc.pending


def test_barrier_bar_counts_results(fake, tty_stderr):
    _, mec = fake
    prs = [mec.pull("k", block=False) for _ in range(5)]
    mec.barrier(prs)
    assert "barrier" in tty_stderr.getvalue() and "5/5" in tty_stderr.getvalue()


def test_parallel_functions_show_progress(fake, tty_stderr):
    fc, mec = fake

    @mec.parallel()
    def inc(x):
        return x + 1
    assert inc(range(64)) == list(range(1, 65))
    assert len(raw_maps(fc)) == 1
    assert "64/64" in tty_stderr.getvalue()


# -- which bar --------------------------------------------------------------------------

def test_a_jupyter_kernel_counts_as_interactive(monkeypatch):
    import types

    class FakeShell:
        kernel = object()

    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = lambda: FakeShell()
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: False)
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    assert progress.in_notebook()
    assert progress.wanted(True)
    assert not progress.wanted(False)

    monkeypatch.delitem(sys.modules, "ipykernel")
    assert not progress.in_notebook()
    assert not progress.wanted(True)


def test_jupyter_gets_widgets_only_with_ipywidgets(monkeypatch):
    import tqdm.notebook
    import tqdm.std

    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    assert progress.widgets_available()
    assert progress.bar_class() is tqdm.notebook.tqdm
    monkeypatch.setitem(sys.modules, "ipywidgets", None)   # its import now fails
    assert not progress.widgets_available()
    assert progress.bar_class() is tqdm.std.tqdm


def test_a_notebook_without_ipywidgets_gets_a_text_bar_and_no_warning(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    monkeypatch.setattr(progress, "stream", lambda: stream)
    monkeypatch.setattr(progress, "DELAY", 0)
    monkeypatch.setattr(progress, "MIN_INTERVAL", 0)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with progress.bar(3, "map", True) as shown:
            shown.update(3)
    assert "3/3" in stream.getvalue()


def test_outside_jupyter_the_bar_is_text(monkeypatch):
    import tqdm.std

    monkeypatch.setattr(progress, "in_notebook", lambda: False)
    assert progress.bar_class() is tqdm.std.tqdm


# -- through a cluster --------------------------------------------------------------------

@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_chunked_map_through_a_cluster(blocking, tty_stderr):
    await blocking.start(3)

    def user():
        mec = blocking.client()
        fc = mec._holder[0]
        calls = []
        original = fc.raw_map

        def counting(*args, **kwargs):
            calls.append(kwargs)
            return original(*args, **kwargs)
        fc.raw_map = counting
        xs = list(range(100))
        assert mec.map(lambda x: x ** 3, xs, chunksize=10) == [x ** 3 for x in xs]
        assert mec.map(lambda x, y: x - y, xs, xs[::-1], dist="r", chunksize=10) == \
            [x - y for x, y in zip(xs, xs[::-1])]
        chunks = len(progress.plan_map(100, 3, 10))
        assert chunks == 4 and len(calls) == 2 * chunks
        assert all(c["block"] is False and c["targets"] == [0, 1, 2] for c in calls)
        return tty_stderr.getvalue()
    drawn = await blocking.run(user)
    assert "100/100" in drawn


def gated(gates, first_gated):
    """A function returning its argument that waits at a new gate for items
    >= ``first_gated``; and the gate."""
    gate = gates.new()
    module, key = gates.module_name, gate.key

    def f(x):
        if x >= first_gated:
            __import__(module).gates[key].pass_through()
        return x
    return f, gate


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_a_map_bar_moves_while_the_map_runs(blocking, gates, recorded):
    await blocking.start(4)
    # 80 items, 20 per engine, 5 per call: the last chunk holds the items
    # at offsets 15..19 of each engine's part; only those wait at the gate
    gate = gates.new()
    module, key = gates.module_name, gate.key

    def f(x):
        if x % 20 >= 15:
            __import__(module).gates[key].pass_through()
        return x
    done = blocking.run(lambda: blocking.client().map(f, range(80), chunksize=5))
    await gate.wait_arrivals(4)              # every engine is held in the last chunk ...
    bar, = recorded
    assert await bar.when(60) == 60          # ... and the first three chunks are counted
    assert not done.called
    gate.open()
    assert await done == list(range(80))
    assert bar.count == 80 and bar.updates == [20, 20, 20, 20]


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_an_unchunked_map_bar_follows_the_engines_reports(blocking, gates, recorded,
                                                                 monkeypatch):
    from ipkernel.engine import service

    monkeypatch.setattr(service, "PROGRESS_EVERY", 0)   # report after every slice ...
    monkeypatch.setattr(service, "PROGRESS_SLICE", 5)   # ... of 5 items
    await blocking.start(4)
    gate = gates.new()
    module, key = gates.module_name, gate.key

    def f(x):   # 20 items per engine; the last 5 of each part wait at the gate
        if x % 20 >= 15:
            __import__(module).gates[key].pass_through()
        return x
    calls = []

    def user():
        mec = blocking.client()
        fc = mec._holder[0]
        original = fc.raw_map
        fc.raw_map = lambda *a, **k: calls.append(k) or original(*a, **k)
        return mec.map(f, range(80))
    done = blocking.run(user)
    await gate.wait_arrivals(4)
    bar, = recorded
    assert await bar.when(60) == 60          # 15 items of each engine reported done
    assert not done.called
    gate.open()
    assert await done == list(range(80))
    assert bar.count == 80 and len(calls) == 1   # one call: not chunked


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_task_map_and_barrier_bars_move_per_batch(blocking, gates, recorded):
    await blocking.start(4)
    cluster = blocking.cluster

    def task_client():
        return TaskClient(cluster.tc_furl, tub=cluster.client_tub,
                          call_in_reactor=reactor.callFromThread, timeout=THREAD_TIMEOUT)
    # The last task waits at a gate.  (The task controller may batch it with a
    # few tasks before it on its engine; the first tasks always run alone.)
    f, gate = gated(gates, 39)
    done = blocking.run(lambda: task_client().map(f, range(40)))
    await gate.wait_arrivals(1)
    bar, = recorded
    assert bar.desc == "map" and bar.total == 40
    assert await bar.when(2) >= 2               # the first batch is counted ...
    assert not done.called                      # ... while the map still runs
    gate.open()
    assert await done == list(range(40))
    assert bar.updates == [2] * 20              # plan_batches(40): 20 batches of 2

    g, gate2 = gated(gates, 59)

    def barrier():
        tc = task_client()
        try:
            ids = tc.mapper(block=False).map(g, range(60))
            tc.barrier(ids)
            return tc.get_task_results(ids)
        finally:
            tc.close()
    done = blocking.run(barrier)
    await gate2.wait_arrivals(1)
    barrier_bar = await RecordingBar.made_number(2)   # the task may reach the gate first
    assert barrier_bar.desc == "barrier" and barrier_bar.total == 60
    assert await barrier_bar.when(3) >= 3
    assert not done.called
    gate2.open()
    assert await done == [(True, x) for x in range(60)]
    assert barrier_bar.updates == [3] * 20


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_an_interrupted_task_map_aborts_its_unfinished_tasks(blocking, gates,
                                                                   raise_in_thread):
    await blocking.start(2)
    cluster = blocking.cluster
    f, gate = gated(gates, 0)               # every task waits
    fetching = defer.Deferred()
    seen = {}

    def user():
        tc = TaskClient(cluster.tc_furl, tub=cluster.client_tub,
                        call_in_reactor=reactor.callFromThread, timeout=THREAD_TIMEOUT)
        seen["tc"], seen["thread"] = tc, threading.get_ident()
        fc = tc._holder[0]
        original = fc.get_task_results

        def fetch(*args, **kwargs):          # (reactor thread) the map waits for results
            if not fetching.called:
                fetching.callback(None)
            return original(*args, **kwargs)
        fc.get_task_results = fetch
        try:
            tc.map(f, range(10))
        except KeyboardInterrupt:
            return "interrupted"
    done = blocking.run(user)
    await fetching
    await gate.wait_arrivals(2)
    raise_in_thread(seen["thread"], KeyboardInterrupt)
    assert await done == "interrupted"
    tc = seen["tc"]
    # (asked after the aborts, on the same connection: they were done first)
    status = await blocking.run(tc.queue_status, True)
    assert status["pending"] == status["scheduled"] == [] and len(status["failed"]) == 10
    gate.open()
    assert await blocking.run(tc.map, abs, [-1, -2]) == [1, 2]
    await blocking.run(tc.close)


def test_task_batches():
    assert progress.plan_batches(0) == []
    assert progress.plan_batches(3) == [(0, 1), (1, 2), (2, 3)]
    assert progress.plan_batches(40) == [(k, k + 2) for k in range(0, 40, 2)]
    big = progress.plan_batches(10 ** 6)
    assert {b - a for a, b in big} == {progress.MAX_BATCH}
    for n in (1, 19, 20, 21, 999, 12345):
        batches = progress.plan_batches(n)
        assert batches[0][0] == 0 and batches[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(batches, batches[1:]))
        assert len(batches) <= progress.TASK_BATCHES
