"""Progress bars: chunk planning, chunked maps (order, distribution, errors),
quiet unless standard error is a terminal, switchable off.  Tier 1 over the
fake async client, plus one tier-2 chunked map through real Tubs."""
import io

import pytest
import pytest_twisted

from ipkernel.client import progress
from ipkernel.controller import mapping


@pytest.mark.parametrize("n_items, n_engines, expected", [
    (32, 4, [(i, i + 4) for i in range(0, 32, 4)]),
    (10, 4, [(0, 5), (5, 10)]),
    (7, 4, [(0, 7)]),                 # fewer than two rounds: not split
    (3, 4, [(0, 3)]),
    (0, 4, [(0, 0)]),
    (100, 4, [(0, 13), (13, 26), (26, 39), (39, 52), (52, 64), (64, 76), (76, 88), (88, 100)]),
    (100, 0, [(0, 13), (13, 26), (26, 39), (39, 52), (52, 64), (64, 76), (76, 88), (88, 100)]),
])
def test_plan_chunks(n_items, n_engines, expected):
    assert progress.plan_chunks(n_items, n_engines) == expected


@pytest.mark.parametrize("n_items", range(0, 90, 7))
@pytest.mark.parametrize("n_engines", [1, 3, 4, 16])
def test_plan_chunks_cover_everything_in_order(n_items, n_engines):
    chunks = progress.plan_chunks(n_items, n_engines)
    assert chunks[0][0] == 0 and chunks[-1][1] == n_items
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert len(chunks) <= progress.MAX_CHUNKS
    if len(chunks) > 1:
        assert min(stop - start for start, stop in chunks) >= n_engines
        sizes = [stop - start for start, stop in chunks]
        assert max(sizes) - min(sizes) <= 1


def test_slice_sequences():
    assert progress.slice_sequences([range(10), "abcdefghij"], 2, 5) == [range(2, 5), "cde"]


def raw_maps(fc):
    return [c for c in fc.calls if c[0] == "raw_map"]


@pytest.mark.parametrize("dist", ["b", "r"])
def test_chunked_map_keeps_order_and_distribution(fake, tty_stderr, dist):
    fc, mec = fake
    xs, ys = list(range(50)), list(range(100, 150))
    assert mec.map(lambda x, y: (x, y), xs, ys, dist=dist) == list(zip(xs, ys))
    maps = raw_maps(fc)
    assert len(maps) == 8
    assert [m[1][0] for m in maps] == [xs[a:b] for a, b in progress.plan_chunks(50, 4)]
    assert [m[1][1] for m in maps] == [ys[a:b] for a, b in progress.plan_chunks(50, 4)]
    assert all(m[2:] == (dist, "all", False) for m in maps)   # each chunk: all targets, dist
    fetched = [c[1] for c in fc.calls if c[0] == "get_pending_deferred"]
    assert len(fetched) == 8 and not fc.pending                # every chunk fetched, in order
    assert "map" in tty_stderr.getvalue() and "50/50" in tty_stderr.getvalue()


def test_chunk_size_follows_the_targets(fake, tty_stderr):
    fc, mec = fake
    assert mec.map(abs, range(-20, 0), targets=[0, 1]) == list(range(20, 0, -1))
    assert len(raw_maps(fc)) == 8
    assert "get_ids" not in fc.methods_called()     # explicit targets: no need to ask
    fc.calls.clear()
    mec.map(abs, range(12), targets=3)
    assert len(raw_maps(fc)) == 8


def test_small_maps_are_not_split(fake, tty_stderr):
    fc, mec = fake
    assert mec.map(abs, range(-5, 0)) == [5, 4, 3, 2, 1]
    assert len(raw_maps(fc)) == 1 and raw_maps(fc)[0][4] is True


def test_quiet_and_unsplit_when_stderr_is_not_a_terminal(fake, monkeypatch):
    fc, mec = fake
    stream = io.StringIO()
    monkeypatch.setattr(progress, "stream", lambda: stream)
    monkeypatch.setattr(progress, "DELAY", 0)
    assert mec.map(abs, range(-100, 0)) == list(range(100, 0, -1))
    assert len(raw_maps(fc)) == 1
    prs = [mec.pull("k", block=False) for _ in range(3)]
    mec.barrier(prs)
    assert stream.getvalue() == ""


def test_switched_off_by_the_environment(fake, tty_stderr, monkeypatch):
    fc, mec = fake
    monkeypatch.setenv(progress.ENV_VAR, "0")
    mec.map(abs, range(100))
    assert len(raw_maps(fc)) == 1
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
    mec.map(abs, range(100))
    assert len(raw_maps(fc)) == 1
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
    assert len(raw_maps(fc)) == 8        # split, in case it takes long ...
    assert tty_stderr.getvalue() == ""   # ... but quick: no bar drawn


def test_a_failing_chunk_discards_the_rest(fake, tty_stderr):
    fc, mec = fake
    original = fc.raw_map

    def failing_third(func, seqs, **kwargs):
        d = original(func, seqs, **kwargs)
        if len(raw_maps(fc)) == 3:
            result_id = d.result
            fc.pending[result_id] = ZeroDivisionError("in chunk 3")
        return d
    fc.raw_map = failing_third
    with pytest.raises(ZeroDivisionError, match="chunk 3"):
        mec.map(abs, range(40))
    aborted = [c[1] for c in fc.calls if c[0] == "abort"]
    assert len(aborted) == 5 and not fc.pending     # chunks 4..8 aborted and dropped


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
    assert len(raw_maps(fc)) == 8
    assert "64/64" in tty_stderr.getvalue()


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
        assert mec.map(lambda x: x ** 3, xs) == [x ** 3 for x in xs]
        assert mec.map(lambda x, y: x - y, xs, xs[::-1], dist="r") == \
            [x - y for x, y in zip(xs, xs[::-1])]
        assert len(calls) == 16 and all(c["block"] is False for c in calls)
        return tty_stderr.getvalue()
    drawn = await blocking.run(user)
    assert "100/100" in drawn
    assert mapping.DISTRIBUTIONS == ("b", "r")


def test_a_jupyter_kernel_counts_as_interactive(monkeypatch):
    import sys
    import types

    from ipkernel.client import progress

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
