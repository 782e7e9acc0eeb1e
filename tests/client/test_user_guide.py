"""Tier 2: the examples of the user guide (parallel_multiengine), in Python 3,
through the blocking client running in a worker thread."""
import io

import pytest
import pytest_twisted

from ipkernel.client import PendingResult, ResultList
from ipkernel.error import CompositeError

pytestmark = pytest.mark.tier2


@pytest_twisted.ensureDeferred
async def test_quick_start_ids_and_hello(blocking):
    await blocking.start(4)

    def user():
        mec = blocking.client()
        assert mec.get_ids() == [0, 1, 2, 3]
        results = mec.execute("print('Hello World')")
        assert isinstance(results, ResultList)
        assert [r["stdout"] for r in results] == ["Hello World\n"] * 4
        text = repr(results)
        assert text.splitlines()[0] == "<Results List>"
        assert "[3] In [1]: print('Hello World')" in text
        assert "[3] Out[1]: Hello World" in text
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_map_and_parallel_decorator(blocking):
    await blocking.start(4)

    def user():
        mec = blocking.client()
        serial = list(map(lambda x: x ** 10, range(32)))
        assert mec.map(lambda x: x ** 10, range(32)) == serial

        @mec.parallel()
        def f(x):
            return 10.0 * x ** 4
        assert f(range(32)) == [10.0 * x ** 4 for x in range(32)]
        assert f.__name__ == "f"
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_execute_targets_and_persistent_namespaces(blocking):
    await blocking.start(4)

    def user():
        mec = blocking.client()
        mec.execute("a = 5")
        mec.execute("b = 10")
        mec.execute("c = a + b")
        assert mec.pull("c") == [15] * 4

        only_zero = mec.execute("d = id * 100", targets=0)
        assert [r["id"] for r in only_zero] == [0]
        some = mec.execute("d = id * 100", targets=[1, 3])
        assert [r["id"] for r in some] == [1, 3]
        assert mec.pull("d", targets=[0, 1, 3]) == [0, 100, 300]

        result = mec.execute("print(c)", targets=2)[0]
        assert result["id"] == 2
        assert result["number"] == 4   # engine 2 ran three commands before
        assert result["input"]["translated"] == "print(c)"
        assert result["stdout"] == "15\n"
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_non_blocking_pending_results(blocking, gates):
    await blocking.start(4)
    gate = gates.new()

    def user():
        mec = blocking.client()
        pr = mec.execute(gate.code, block=False)
        assert isinstance(pr, PendingResult)
        assert pr.get_result(block=False) is None   # the engines wait at the gate
        assert pr.get_result("not yet", block=False) == "not yet"
        gate.open()
        results = pr.get_result()
        assert isinstance(results, ResultList) and len(results) == 4
        assert pr.get_result() is results            # kept
        assert pr.r is results

        pr2 = mec.execute("x = id ** 2", block=False)
        assert [r["id"] for r in pr2.r] == [0, 1, 2, 3]
        assert mec.pull("x", block=False).r == [0, 1, 4, 9]
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_barrier(blocking):
    await blocking.start(4)

    def user():
        mec = blocking.client()
        prs = [mec.execute(f"v{i} = {i}", block=False) for i in range(5)]
        failing = mec.execute("1/0", block=False)
        prs.append(failing)
        assert mec.barrier(prs) is None   # an engine error does not escape the barrier
        assert all(p.done for p in prs)
        with pytest.raises(CompositeError):
            failing.get_result()
        assert {f"v{i}" for i in range(5)} <= set(mec.keys()[0])
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_block_and_targets_attributes(blocking):
    await blocking.start(4)

    def user():
        mec = blocking.client()
        mec.block = False
        pr = mec.execute("a = 1")
        assert isinstance(pr, PendingResult)
        pr.get_result()
        assert isinstance(mec.execute("a = 2", block=True), ResultList)

        mec.block = True
        mec.targets = [0, 2]
        assert [r["id"] for r in mec.execute("b = id")] == [0, 2]
        assert mec.pull("b") == [0, 2]
        assert mec.pull("a", targets="all") == [2, 2, 2, 2]
        mec.targets = "all"
        assert len(mec.execute("pass")) == 4
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_push_pull_and_zip_pull(blocking):
    await blocking.start(4)

    def user():
        mec = blocking.client()
        assert mec.push(dict(a=1.03234, b=3453)) == [None] * 4
        assert mec.pull("a") == [1.03234] * 4
        assert mec.pull("b", targets=0) == [3453]
        assert mec.pull(("a", "b")) == [[1.03234, 3453]] * 4
        mec.push(dict(c="speed"))
        assert mec.zip_pull(("a", "b", "c")) == [(1.03234,) * 4, (3453,) * 4, ("speed",) * 4]
        mec.push(dict(a=1.03234, b=3453))
        pr = mec.pull(("a", "b"), block=False)
        assert pr.r == [[1.03234, 3453]] * 4
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_push_function(blocking):
    await blocking.start(4)

    def user():
        mec = blocking.client()

        def f(x):
            return 2.0 * x ** 4
        mec.push_function(dict(f=f))
        mec.execute("y = f(4)")
        assert mec.pull("y") == [512.0] * 4
        assert mec.map("f", range(3)) == [0.0, 2.0, 32.0]
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_dictionary_interface(blocking):
    await blocking.start(4)

    def user():
        mec = blocking.client()
        mec["a"] = ["foo", "bar"]
        assert mec["a"] == [["foo", "bar"]] * 4
        assert len(mec) == 4
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_scatter_gather_and_parallel_list_comprehension(blocking):
    await blocking.start(4)

    def user():
        mec = blocking.client()
        mec.scatter("a", range(16))
        assert [list(part) for part in mec.pull("a")] == [
            [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
        assert mec.gather("a") == list(range(16))

        mec.scatter("x", range(64))
        mec.execute("y = [i ** 10 for i in x]")
        assert mec.gather("y") == [i ** 10 for i in range(64)]
    await blocking.run(user)


@pytest_twisted.ensureDeferred
async def test_parallel_exceptions(blocking):
    await blocking.start(4)

    def user():
        mec = blocking.client()
        with pytest.raises(CompositeError) as info:
            mec.execute("1/0")
        error = info.value
        assert str(error).splitlines() == [
            "one or more exceptions from call to method: execute",
            "[0:execute]: ZeroDivisionError: division by zero",
            "[1:execute]: ZeroDivisionError: division by zero",
            "[2:execute]: ZeroDivisionError: division by zero",
            "[3:execute]: ZeroDivisionError: division by zero",
        ]
        with pytest.raises(ZeroDivisionError):
            error.raise_exception()
        with pytest.raises(ZeroDivisionError):
            error.raise_exception(3)
        out = io.StringIO()
        error.print_tracebacks(file=out)
        text = out.getvalue()
        assert text.count("ZeroDivisionError") == 4
        assert "[2:execute]" in text and "1/0" in text

        # the same through a PendingResult
        pr = mec.execute("1/0", block=False)
        with pytest.raises(CompositeError) as info:
            pr.r
        with pytest.raises(CompositeError) as again:
            pr.get_result()
        assert again.value is info.value   # the exception is kept
        with pytest.raises(ZeroDivisionError):
            info.value.raise_exception()
    await blocking.run(user)
