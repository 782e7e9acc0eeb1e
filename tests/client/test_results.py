"""Tier 1: ResultList display, PendingResult, argument handling and the
mapper/parallel objects, over an in-memory fake of the async client."""
import sys
import traceback

import pytest

from ipkernel.client import (CLIENT_DEFAULT, MultiEngineMapper, ParallelFunction, PendingResult,
                             ResultList)
from ipkernel.error import KernelError, NotAPendingResult

from .conftest import TTY


def result(engine, number, source, **extra):
    return {"id": engine, "number": number, "input": {"raw": source, "translated": source},
            **extra}


@pytest.fixture
def plain_stdout(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys, "stdout", __import__("io").StringIO())


def test_result_list_repr(plain_stdout):
    results = ResultList([
        result(0, 1, "print('hi')\nx = 1", stdout="hi\n"),
        result(1, 3, "import sys; sys.stderr.write('oops\\n')", stderr="oops\n"),
        result(2, 2, "x", display={"pprint": "5", "repr": "5"}),
        result(3, 4, "pass"),
    ])
    assert repr(results) == "\n".join([
        "<Results List>",
        "[0] In [1]: print('hi')",
        "            x = 1",
        "[0] Out[1]: hi",
        "[1] In [3]: import sys; sys.stderr.write('oops\\n')",
        "[1] Err[3]: oops",
        "[2] In [2]: x",
        "[2] Out[2]: 5",
        "[3] In [4]: pass",
    ])
    assert str(results) == repr(results)
    assert results[0]["stdout"] == "hi\n"     # still a list of dicts
    assert isinstance(results, list)


def test_result_list_multiline_output_is_aligned(plain_stdout):
    text = repr(ResultList([result(12, 7, "for i in range(2): print(i)", stdout="0\n1\n")]))
    assert text.splitlines()[2:] == ["[12] Out[7]: 0", "             1"]


def test_result_list_empty_and_odd_items(plain_stdout):
    assert repr(ResultList()) == "<Results List>"
    assert repr(ResultList([None, {"id": 1}])) == "<Results List>\nNone\n[1] In [?]:"


def test_result_list_colour_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    rl = ResultList([result(0, 1, "print(1)", stdout="1\n")])
    monkeypatch.setattr(sys, "stdout", TTY())
    coloured = repr(rl)
    assert "\x1b[" in coloured
    assert coloured.replace("\x1b[32m", "").replace("\x1b[31m", "").replace("\x1b[0m", "") == \
        "<Results List>\n[0] In [1]: print(1)\n[0] Out[1]: 1"
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in repr(rl)
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(sys, "stdout", __import__("io").StringIO())
    assert "\x1b[" not in repr(rl)


def test_result_list_pretty_printer_hook(plain_stdout):
    rl = ResultList([result(0, 1, "pass")])

    class Printer:
        text_out = ""

        def text(self, s):
            self.text_out += s
    printer = Printer()
    rl._repr_pretty_(printer, False)
    assert printer.text_out == repr(rl)


# -- PendingResult ---------------------------------------------------------------------


def test_pending_result_callbacks_and_caching(fake):
    fc, mec = fake
    pr = mec.execute("a = 1", block=False)
    assert isinstance(pr, PendingResult)
    pr.add_callback(lambda rl, n: [len(rl), n], 10)
    pr.add_callback(lambda v, extra=0: v + [extra], extra=3)
    assert pr.get_result() == [4, 10, 3]
    fetches = fc.methods_called().count("get_pending_deferred")
    assert pr.r == [4, 10, 3]
    assert fc.methods_called().count("get_pending_deferred") == fetches  # cached
    pr.add_callback(len)   # applied at once to the kept value
    assert pr.r == 3
    assert pr.done and "done" in repr(pr)


def test_pending_result_exception_is_kept(fake):
    fc, mec = fake
    pr = mec.pull("k", block=False)
    fc.pending[pr.result_id] = KeyError("gone")
    depths = []
    for _ in range(3):
        with pytest.raises(KeyError) as info:
            pr.get_result()
        depths.append(len(traceback.extract_tb(info.value.__traceback__)))
        assert info.value.args == ("gone",)
    with pytest.raises(KeyError) as again:
        pr.r
    assert again.value is info.value
    assert depths[0] == depths[1] == depths[2]   # re-raising does not grow the traceback


def test_pending_result_callback_error_becomes_the_outcome(fake):
    _, mec = fake
    pr = mec.pull("k", block=False)
    pr.add_callback(lambda v: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        pr.get_result()
    with pytest.raises(ZeroDivisionError):
        pr.get_result()


def test_pending_result_not_ready_gives_default(fake):
    fc, mec = fake
    pr = mec.pull("k", block=False)
    fc.not_ready.add(pr.result_id)
    assert pr.get_result(block=False) is None
    assert pr.get_result("later", block=False) == "later"
    assert not pr.done and "pending" in repr(pr)
    fc.not_ready.clear()
    assert pr.get_result(block=False) == ["k"] * 4
    with pytest.raises(TypeError):
        pr.get_result(block="no")


def test_pending_results_sort_in_creation_order(fake):
    _, mec = fake
    prs = [mec.pull("k", block=False) for _ in range(12)]
    assert sorted(reversed(prs)) == prs
    assert prs[0] < prs[1]


def test_barrier_takes_only_pending_results(fake):
    fc, mec = fake
    from ipkernel.client import MultiEngineClient
    from .conftest import inline_bridge

    other = MultiEngineClient._over(fc, inline_bridge())
    pr = other.pull("k", block=False)
    with pytest.raises(NotAPendingResult):
        mec.barrier([pr, "x"])
    mec.barrier([pr])   # each is fetched through its own client
    assert pr.done


def test_barrier_keeps_outcomes_and_fetches_in_order(fake):
    fc, mec = fake
    prs = [mec.pull(f"k{i}", block=False) for i in range(3)]
    fc.pending[prs[1].result_id] = RuntimeError("engine trouble")
    mec.barrier(reversed(prs))
    fetched = [c[1] for c in fc.calls if c[0] == "get_pending_deferred"]
    assert fetched == [p.result_id for p in prs]
    assert prs[0].r == ["k0"] * 4
    with pytest.raises(RuntimeError):
        prs[1].r


# -- arguments, attributes, objects ----------------------------------------------------


def test_defaults_and_overrides(fake):
    fc, mec = fake
    mec.execute("x")
    assert fc.calls[-1] == ("execute", "x", "all", True)
    mec.targets = (1, 2)
    mec.block = False
    assert mec.targets == [1, 2]
    assert isinstance(mec.execute("y"), PendingResult)
    assert fc.calls[-1] == ("execute", "y", [1, 2], False)
    mec.execute("z", targets=3, block=True)
    assert fc.calls[-1] == ("execute", "z", 3, True)
    mec["a"] = 5
    assert fc.calls[-1] == ("push", {"a": 5}, [1, 2], False)


def test_bad_attribute_values(fake):
    _, mec = fake
    with pytest.raises(TypeError, match="block must be True or False, not 'yes'"):
        mec.block = "yes"
    with pytest.raises(ValueError, match="targets"):
        mec.targets = "some"
    with pytest.raises(ValueError, match="timeout"):
        mec.timeout = 0
    with pytest.raises(ValueError, match="timeout"):
        mec.timeout = "long"
    mec.timeout = None
    assert repr(CLIENT_DEFAULT) == "CLIENT_DEFAULT"


def test_closed_client(fake):
    fc, mec = fake
    mec.close()
    assert ("clear_pending_deferreds",) in fc.calls
    with pytest.raises(KernelError, match="closed"):
        mec.get_ids()
    mec.close()


def test_mapper_and_parallel_objects(fake):
    fc, mec = fake
    mapper = mec.mapper(dist="r", targets=[0, 1])
    assert isinstance(mapper, MultiEngineMapper)
    assert "dist='r'" in repr(mapper)
    assert mapper.map(lambda x: x + 1, range(5)) == [1, 2, 3, 4, 5]
    assert fc.calls[-1][2:] == ("r", [0, 1], True)

    mec.targets = [2]
    decorator = mec.parallel()
    assert isinstance(decorator, ParallelFunction)
    mec.targets = "all"   # resolved when decorating

    @decorator
    def square(x):
        """Square x."""
        return x * x
    assert square.__doc__ == "Square x." and square.__name__ == "square"
    assert square([1, 2, 3]) == [1, 4, 9]
    assert fc.calls[-1][2:] == ("b", [2], True)

    mec.block = False
    pr = mec.map(abs, [-1, -2])   # map follows the client's block, but uses all engines
    assert isinstance(pr, PendingResult) and pr.r == [1, 2]
    assert fc.calls[-2][3:] == ("all", False)

    named = mec.parallel(block=True)("enginefunc")
    assert named.__name__ == "enginefunc"
    with pytest.raises(TypeError):
        mec.parallel()(42)
    with pytest.raises(TypeError):
        mec.map(42, [1])
    with pytest.raises(TypeError, match="at least one"):
        mec.map(abs)


def test_map_accepts_iterables_without_len(fake):
    _, mec = fake
    assert mec.map(lambda a, b: a * b, (i for i in range(4)), iter([1, 1, 2, 2])) == [0, 1, 4, 6]


def test_dictionary_interface_and_len(fake):
    fc, mec = fake
    assert mec["a"] == ["a"] * 4
    assert len(mec) == 4
    fc.ids = []
    assert len(mec) == 0 and bool(mec) is True
