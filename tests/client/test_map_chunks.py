"""``map(..., chunksize=)`` and the chunk plan of blocking maps: each engine
gets exactly its part of the unchunked split, results identical and in order;
the chunk runner aborts what is left on a failure or a cancel.  Tier 1 (the
plan, the fake async client, the runner over hand-fired Deferreds) and tier 2
(real Tubs)."""
import itertools

import numpy
import pytest
import pytest_twisted
from twisted.internet import defer

from ipkernel.client import CompositeError, MultiEngineMapper, progress
from ipkernel.client.blocking import _run_chunks
from ipkernel import mapping


def raw_maps(fc):
    return [c for c in fc.calls if c[0] == "raw_map"]


def engine_items(n_items, n_engines, dist, plan):
    """What each engine computes under ``plan``: its pieces, chunk after chunk."""
    got = [[] for _ in range(n_engines)]
    for chunk in filter(None, plan):   # (no items: one empty chunk)
        where = progress.chunk_positions(n_items, n_engines, dist, chunk)
        for engine, part in enumerate(mapping.partitions(where, len(chunk), dist)):
            got[engine].extend(part)
    return got


# -- the plan -------------------------------------------------------------------------------

@pytest.mark.parametrize("dist", ["b", "r"])
@pytest.mark.parametrize("n_engines", [1, 2, 3, 4, 7, 16])
@pytest.mark.parametrize("n_items", [0, 1, 15, 16, 17, 63, 64, 100, 333, 1000])
@pytest.mark.parametrize("chunksize", [1, 3, 8, 50])
def test_every_engine_gets_its_unchunked_part(n_items, n_engines, dist, chunksize):
    plan = progress.plan_map(n_items, n_engines, chunksize)
    expected = mapping.partitions(list(range(n_items)), n_engines, dist)
    assert engine_items(n_items, n_engines, dist, plan) == expected
    positions = [p for chunk in filter(None, plan)
                 for p in progress.chunk_positions(n_items, n_engines, dist, chunk)]
    assert sorted(positions) == list(range(n_items))       # every item once
    for chunk in plan:
        sizes = [stop - start for start, stop in chunk]
        assert all(sizes) and sizes == sorted(sizes, reverse=True)  # larger first ...
        assert not sizes or sizes[0] - sizes[-1] <= 1               # ... as a split makes
        if sizes:
            assert sizes[0] <= chunksize
    if not progress.may_chunk(n_items, chunksize):
        assert len(plan) == 1


def test_plans():
    assert progress.plan_map(15, 1, 15) == [[(0, 15)]]
    assert progress.plan_map(16, 1, 8) == [[(0, 8)], [(8, 16)]]
    assert progress.plan_map(63, 4, 16) == [[(0, 16), (0, 16), (0, 16), (0, 15)]]
    assert progress.plan_map(10, 4, chunksize=2) == [[(0, 2)] * 4, [(2, 3)] * 2]
    assert progress.plan_map(0, 4, chunksize=3) == [[]]


def test_take():
    assert progress.take([5, 6, 7], [2, 0]) == [7, 5]
    assert progress.take((5, 6, 7), [1]) == [6]
    assert progress.take("abc", [2, 1]) == ["c", "b"]
    assert progress.take(range(10, 20), [0, 9]) == [10, 19]
    array = numpy.arange(10) * 2
    taken = progress.take(array, [3, 1])
    assert isinstance(taken, numpy.ndarray) and taken.tolist() == [6, 2]

    class Labelled:   # indexing by label, iterating by position
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {10: "x", 11: "y"}[i]

        def __iter__(self):
            return iter(["x", "y"])
    assert progress.take(Labelled(), [1, 0]) == ["y", "x"]


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                        (True, TypeError), ("3", TypeError)])
def test_chunksize_is_checked(fake, bad, error):
    _, mec = fake
    with pytest.raises(error, match="chunksize must be a positive int"):
        mec.map(abs, range(10), chunksize=bad)
    with pytest.raises(error, match="chunksize"):
        mec.mapper(chunksize=bad)
    with pytest.raises(error, match="chunksize"):
        mec.parallel(chunksize=bad)


# -- maps over the fake async client -----------------------------------------------------------

@pytest.mark.parametrize("dist", ["b", "r"])
def test_chunksize_sets_the_items_per_engine_call(fake, dist):
    fc, mec = fake
    xs = list(range(-50, 50))
    assert mec.map(abs, xs, dist=dist, chunksize=7) == [abs(x) for x in xs]
    maps = raw_maps(fc)
    assert len(maps) == 4                                  # 25 items per engine, 7 a call
    for _, (chunk,), _, targets, block in maps:
        assert block is False
        parts = mapping.partitions(chunk, len(targets), dist)
        assert all(len(part) <= 7 for part in parts)
    assert [len(m[1][0]) for m in maps] == [28, 28, 28, 16]
    fc.calls.clear()
    assert mec.map(abs, xs, chunksize=25) == [abs(x) for x in xs]   # one call per engine
    assert len(raw_maps(fc)) == 1 and raw_maps(fc)[0][4] is True


def test_several_sequences_and_arrays(fake):
    fc, mec = fake
    xs = numpy.arange(60)
    assert mec.map(lambda a, b, c: (int(a), b, c), xs, "x" * 60, range(60), chunksize=4) == \
        [(i, "x", i) for i in range(60)]
    assert len(raw_maps(fc)) == 4


def test_chunksize_on_mappers_and_parallel_functions(fake):
    fc, mec = fake
    mapper = mec.mapper(dist="r", targets=[0, 1], chunksize=5)
    assert isinstance(mapper, MultiEngineMapper) and mapper.chunksize == 5
    assert "chunksize=5" in repr(mapper)
    assert mapper.map(lambda x: -x, range(20)) == [-x for x in range(20)]
    assert len(raw_maps(fc)) == 2 and all(m[2:4] == ("r", [0, 1]) for m in raw_maps(fc))
    fc.calls.clear()

    @mec.parallel(chunksize=2)
    def double(x):
        return 2 * x
    assert double(range(16)) == [2 * x for x in range(16)]
    assert len(raw_maps(fc)) == 2
    assert double.mapper.chunksize == 2


def test_a_non_blocking_map_takes_no_chunksize(fake):
    fc, mec = fake
    with pytest.raises(ValueError, match="chunksize= is for blocking maps"):
        mec.map(abs, range(40), block=False, chunksize=4)
    assert raw_maps(fc) == []


def test_a_map_over_no_items_or_no_engines(fake):
    fc, mec = fake
    assert mec.map(abs, [], chunksize=3) == []
    fc.ids = []
    with pytest.raises(ValueError):   # (the fake's; a controller's is NoEnginesRegistered)
        mec.map(abs, range(100))
    assert len(raw_maps(fc)) == 2 and raw_maps(fc)[-1][3] == "all"   # one call, no chunks


# -- the chunk runner (reactor side) -------------------------------------------------------------

class HeldClient:
    """An async client whose answers the test gives by hand."""

    def __init__(self):
        self.submitted = []   # (Deferred of the pending id, seqs, targets)
        self.fetches = {}     # pending id -> Deferred of its result
        self.aborted = []
        self._ids = (f"id{k}" for k in itertools.count())

    def raw_map(self, func, seqs, dist="b", targets="all", *, block=True):
        assert block is False
        d = defer.Deferred()
        self.submitted.append((d, seqs, targets))
        return d

    def accept(self, k):
        result_id = next(self._ids)
        self.submitted[k][0].callback(result_id)
        return result_id

    def get_pending_deferred(self, result_id, block=True):
        if result_id in self.fetches:   # a second fetch: the drain after an abort
            return defer.succeed(None)
        self.fetches[result_id] = defer.Deferred()
        return self.fetches[result_id]

    def abort(self, result_id):
        self.aborted.append(result_id)
        return defer.succeed(True)


def run(fc, n):
    landed = []
    calls = [([[k]], [0]) for k in range(n)]
    d = _run_chunks(fc, abs, calls, "b", landed.append)
    outcome = []
    d.addBoth(outcome.append)
    return landed, outcome, d


def test_all_chunks_are_sent_before_any_answer_and_land_in_any_order():
    fc = HeldClient()
    landed, outcome, _ = run(fc, 3)
    assert len(fc.submitted) == 3                     # pipelined
    ids = [fc.accept(k) for k in range(3)]
    assert set(fc.fetches) == set(ids)                # each fetched once submitted
    fc.fetches[ids[2]].callback(["c"])
    fc.fetches[ids[0]].callback(["a"])
    assert landed == [2, 0] and outcome == []
    fc.fetches[ids[1]].callback(["b"])
    assert landed == [2, 0, 1] and outcome == [[["a"], ["b"], ["c"]]]
    assert fc.aborted == []


def test_a_failing_chunk_aborts_the_others():
    fc = HeldClient()
    landed, outcome, _ = run(fc, 4)
    ids = [fc.accept(k) for k in range(3)]            # chunk 3 not accepted yet
    fc.fetches[ids[0]].callback(["a"])
    fc.fetches[ids[1]].errback(ZeroDivisionError("chunk 1"))
    assert outcome[0].check(ZeroDivisionError)
    assert fc.aborted == [ids[2]]                     # the one still running
    late = fc.accept(3)                               # accepted after the end ...
    assert fc.aborted == [ids[2], late]               # ... aborted, and drained
    fc.fetches[ids[2]].errback(RuntimeError("aborted"))   # late outcomes are dropped
    assert landed == [0] and len(outcome) == 1


def test_a_refused_chunk_stops_the_submissions():
    fc = HeldClient()
    _, outcome, _ = run(fc, 3)
    first = fc.accept(0)
    fc.submitted[1][0].errback(ValueError("refused"))
    assert outcome[0].check(ValueError) and fc.aborted == [first]


def test_a_cancelled_run_aborts_what_is_left():
    fc = HeldClient()
    landed, outcome, d = run(fc, 3)
    ids = [fc.accept(k) for k in range(2)]
    fc.fetches[ids[0]].callback(["a"])
    d.cancel()                                        # a timeout, or Ctrl-C
    assert outcome[0].check(defer.CancelledError)
    assert fc.aborted == [ids[1]]
    fc.fetches[ids[1]].callback(["b"])                # dropped
    assert landed == [0]


def test_no_chunks():
    fc = HeldClient()
    assert run(fc, 0)[1] == [[]]


# -- through a cluster ------------------------------------------------------------------------

@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_chunked_maps_compute_the_same_on_the_same_engines(blocking):
    await blocking.start(3)

    def user():
        mec = blocking.client()
        mec.execute("def whoami(x, y=0):\n    return (x, y, id)")
        xs = list(range(250))
        for dist in ("b", "r"):
            whole = mec.raw_map("whoami", [xs], dist=dist)
            assert {engine for _, _, engine in whole} == {0, 1, 2}
            for chunksize in (None, 1, 7, 100):
                assert mec.map("whoami", xs, dist=dist, chunksize=chunksize) == whole
        two = mec.map("whoami", numpy.arange(90), list(range(90, 180)), chunksize=4)
        assert [(int(x), y) for x, y, _ in two] == list(zip(range(90), range(90, 180)))
        assert mec.map("whoami", range(60), targets=[2, 0], chunksize=5) == \
            mec.raw_map("whoami", [range(60)], targets=[2, 0])
    await blocking.run(user)


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_a_failing_chunked_map_raises(blocking):
    await blocking.start(2)

    def user():
        mec = blocking.client()

        def f(x):
            if x == 33:
                raise ZeroDivisionError(f"item {x}")
            return x
        with pytest.raises(CompositeError, match="item 33"):
            mec.map(f, range(200), chunksize=5)
        assert mec.map(f, range(20), chunksize=5) == list(range(20))   # the engines go on
    await blocking.run(user)
