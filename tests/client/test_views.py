"""Views: ``mec[0]``, ``mec[[0, 2]]``, ``mec[1:3]``, ``mec[:]`` bind the client's
methods to engines; names still index the client.  Tier 1 over the fake async
client, tier 2 against an in-process cluster."""
import inspect

import pytest
import pytest_twisted

from ipkernel import client as client_package
from ipkernel.client import CompositeError, MultiEngineClient, PendingResult, View
from ipkernel.error import InvalidEngineID


def test_indexing_gives_views(fake):
    fc, mec = fake               # engines 0..3
    assert mec[0].targets == 0 and mec[3].targets == 3
    assert mec[[0, 2]].targets == [0, 2]
    assert mec[(3, 1)].targets == [3, 1]
    assert mec[range(2)].targets == [0, 1]
    assert mec[1:3].targets == [1, 2]
    assert mec[:].targets == [0, 1, 2, 3]
    assert mec[::2].targets == [0, 2]
    assert mec[-1].targets == 3 and mec[-2:].targets == [2, 3]
    assert isinstance(mec[0], View)
    assert len(mec[0]) == 1 and len(mec[1:]) == 3 and len(mec[:]) == 4


def test_a_slice_is_over_the_ids_registered_when_indexing(fake):
    fc, mec = fake
    fc.ids = [2, 5, 9]
    everyone = mec[:]
    assert everyone.targets == [2, 5, 9] and mec[1:].targets == [5, 9]
    fc.ids = [2, 5, 9, 10]
    assert everyone.targets == [2, 5, 9]     # a fixed list
    assert mec[5].targets == 5


@pytest.mark.parametrize("key, message", [
    (4, r"no engine 4: the registered engines are \[0, 1, 2, 3\]"),
    (-5, "no engine -5"),
    ([0, 7], "no engine 7"),
    ([1, 1], "named twice"),
    ([], "selects no engine"),
    (slice(10, None), r"the slice \[10:\] selects no engine"),
])
def test_unknown_engines_are_refused(fake, key, message):
    _, mec = fake
    with pytest.raises(InvalidEngineID, match=message):
        mec[key]


@pytest.mark.parametrize("key", [1.5, True, None, [0, "a"], b"a"])
def test_other_keys_are_type_errors(fake, key):
    _, mec = fake
    with pytest.raises(TypeError, match="index a client|engine ids are ints"):
        mec[key]


def test_names_still_pull_and_push(fake):
    fc, mec = fake
    assert mec["a"] == ["a"] * 4
    assert fc.calls[-1] == ("pull", "a", "all", True)
    mec["b"] = 5
    assert fc.calls[-1] == ("push", {"b": 5}, "all", True)
    with pytest.raises(TypeError, match="engine variable names are str"):
        mec[0] = 5


def test_view_methods_use_the_views_targets(fake):
    fc, mec = fake
    view = mec[[0, 2]]
    view.execute("x = 1")
    assert fc.calls[-1] == ("execute", "x = 1", [0, 2], True)
    assert view.pull("x") == ["x"] * 4      # (the fake answers for every engine)
    assert fc.calls[-1] == ("pull", "x", [0, 2], True)
    view.push({"y": 2})
    assert fc.calls[-1] == ("push", {"y": 2}, [0, 2], True)
    view["z"] = 3
    assert fc.calls[-1] == ("push", {"z": 3}, [0, 2], True)
    view["z"]
    assert fc.calls[-1] == ("pull", "z", [0, 2], True)
    assert view.map(abs, [-1, -2, -3]) == [1, 2, 3]
    assert fc.calls[-1][3:] == ([0, 2], True)
    assert view.mapper(dist="r").map(abs, [-4]) == [4]
    assert fc.calls[-1][2:] == ("r", [0, 2], True)

    @view.parallel()
    def neg(x):
        return -x
    assert neg([1, 2]) == [-1, -2]
    assert fc.calls[-1][3:] == ([0, 2], True)
    assert mec[1].execute("w = 0")[0]["id"] == 1
    assert fc.calls[-1] == ("execute", "w = 0", 1, True)


def test_view_map_takes_chunksize(fake):
    fc, mec = fake
    assert mec[1:].map(abs, range(-30, 0), chunksize=4) == list(range(30, 0, -1))
    maps = [c for c in fc.calls if c[0] == "raw_map"]
    assert len(maps) == 3 and all(m[3] == [1, 2, 3] for m in maps)


def test_a_view_has_its_own_block(fake):
    fc, mec = fake
    mec.block = False
    view = mec[0]
    assert view.block is False
    mec.block = True                        # the view keeps what it started with
    pending = view.execute("x = 1")
    assert isinstance(pending, PendingResult)
    assert view.execute("x = 1", block=True)[0]["id"] == 0
    view.block = True
    assert view.pull("x") == ["x"] * 4
    view.barrier([pending])
    with pytest.raises(TypeError, match="block must be True or False"):
        view.block = "yes"
    with pytest.raises(AttributeError):
        view.targets = [1]


def test_targets_on_a_view_method_is_refused(fake):
    fc, mec = fake
    view = mec[[0, 2]]
    with pytest.raises(TypeError, match=r"View.pull\(\) takes no targets: this view is bound "
                                        r"to \[0, 2\]; use another view"):
        view.pull("a", targets=1)
    with pytest.raises(TypeError):         # block is keyword-only: nothing shifts place
        view.execute("x = 1", True)
    assert not [c for c in fc.calls if c[0] in ("pull", "execute")]


def test_a_view_has_every_client_method_that_takes_targets(fake):
    _, mec = fake
    expected = {name for name in dir(MultiEngineClient)
                if not name.startswith("_") and inspect.isfunction(getattr(MultiEngineClient, name))
                and "targets" in inspect.signature(getattr(MultiEngineClient, name)).parameters}
    assert expected >= {"execute", "push", "pull", "apply", "map", "scatter", "gather",
                        "push_function", "pull_function", "get_result", "reset", "keys", "kill",
                        "interrupt", "clear_queue", "queue_status", "set_properties",
                        "get_properties", "has_properties", "del_properties",
                        "clear_properties", "zip_pull", "run", "mapper", "parallel",
                        "raw_map", "sync_imports"}
    view = mec[0]
    for name in expected:
        method = getattr(view, name)
        assert method.__doc__ == getattr(MultiEngineClient, name).__doc__, name
        params = inspect.signature(method).parameters
        assert "targets" not in params, name
    assert callable(view.barrier) and callable(view.abort)
    assert str(inspect.signature(View.scatter)) == \
        "(self, /, key, seq, dist='b', flatten=False, *, block=None, timeout=CLIENT_DEFAULT)"


def test_repr_and_export(fake):
    _, mec = fake
    assert repr(mec[[0, 2]]) == f"<View targets=[0, 2] of {mec!r}>"
    assert repr(mec[1]).startswith("<View targets=1 of <MultiEngineClient pb://fake")
    assert "View" in client_package.__all__ and client_package.View is View
    with pytest.raises(TypeError, match="a view is indexed by variable names"):
        mec[0][0]
    assert bool(mec[0]) is True
    with pytest.raises(TypeError):
        iter(mec[0])


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_views_on_a_cluster(blocking):
    await blocking.start(3)

    def user():
        mec = blocking.client()
        assert mec[:].targets == [0, 1, 2]
        first, rest = mec[0], mec[1:]
        first["a"] = 10
        rest["a"] = 20
        assert mec.pull("a") == [10, 20, 20]
        assert first["a"] == [10] and rest["a"] == [20, 20]
        assert [r["id"] for r in rest.execute("b = a + id")] == [1, 2]
        assert rest.pull("b") == [21, 22]
        assert rest.apply(lambda x: x * 2, (21,)) == [42, 42]
        assert rest.zip_pull(["a", "b"]) == [(20, 20), (21, 22)]
        rest.scatter("part", list(range(10)))
        assert rest.gather("part") == list(range(10))
        assert mec.pull("part", targets=[1, 2]) == [list(range(5)), list(range(5, 10))]
        assert first.map(lambda x: x * 2, range(40), chunksize=7) == [x * 2 for x in range(40)]

        def triple(x):
            return 3 * x
        rest.push_function({"triple": triple})
        assert [f(2) for f in rest.pull_function("triple")] == [6, 6]
        assert rest.get_result()[0]["id"] == 1
        rest.set_properties({"colour": "red"})
        assert mec.get_properties() == [{}, {"colour": "red"}, {"colour": "red"}]
        assert "a" in first.keys()[0] and "b" not in first.keys()[0]
        assert [engine for engine, _ in rest.queue_status()] == [1, 2]
        assert rest.clear_queue() == [None, None] and rest.interrupt() == [False, False]
        pending = rest.execute("c = 1", block=False)
        rest.barrier([pending])
        assert [r["id"] for r in pending.r] == [1, 2]
        assert mec[2].reset() == [None]
        with pytest.raises(CompositeError, match="NameError"):
            mec[2].pull("a")
        assert mec.pull("a", targets=[0, 1]) == [10, 20]
        with pytest.raises(InvalidEngineID, match="no engine 3"):
            mec[3]
    await blocking.run(user)
