"""The user guide's examples, typed as a user would, in a fresh Python process.

Run by tests/cluster/test_user_guide.py (this file is not a test module):

    python user_guide_session.py local            # starts its own LocalCluster(n=4)
    python user_guide_session.py CLUSTER_DIR      # uses a running 4-engine cluster

It exercises the real blocking client (reactor in a lazily started thread)
and prints ``USER GUIDE OK`` at the end; any failed check raises.
"""
import io
import os
import sys
import tempfile

from ipkernel import client
from ipkernel.cluster import LocalCluster
from ipkernel.error import CompositeError


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def quick_start(mec):
    # parallel_intro.txt: the quick start
    check(mec.get_ids() == [0, 1, 2, 3], "get_ids on a 4-engine cluster")
    results = mec.execute('print("Hello World")')
    check(repr(results).startswith("<Results List>"), "execute returns a <Results List>")
    check([r["stdout"] for r in results] == ["Hello World\n"] * 4, "Hello World on every engine")
    check("[0] In [" in repr(results) and "[3] Out[" in repr(results), "the In/Out view")


def multiengine_guide(mec):
    # parallel_multiengine.txt, in Python 3 syntax
    serial = list(map(lambda x: x ** 10, range(32)))
    check(mec.map(lambda x: x ** 10, range(32)) == serial, "map equals the serial map")

    @mec.parallel()
    def f(x):
        return 10.0 * x ** 4
    check(f(range(32)) == [10.0 * x ** 4 for x in range(32)], "@mec.parallel()")

    mec.execute("a = 5")
    mec.execute("b = 10", targets=0)
    mec.execute("c = a + b", targets=[0])
    check(mec.pull("c", targets=0) == [15], "persistent namespaces and targets")
    result = mec.execute("d = 10; print(d)", targets=[1, 2])
    check([r["id"] for r in result] == [1, 2] and result[0]["stdout"] == "10\n", "result dicts")

    # non-blocking
    pr = mec.execute("import time; time.sleep(0.2); e = 2", block=False)
    value = pr.get_result()
    check(len(value) == 4, "PendingResult.get_result()")
    pr2 = mec.pull("e", block=False)
    check(pr2.r == [2, 2, 2, 2], "PendingResult.r")
    pending = [mec.execute(f"x{i} = {i}", block=False) for i in range(3)]
    mec.barrier(pending)
    check(all(p.get_result(block=False) is not None for p in pending), "barrier")

    # block and targets attributes
    mec.block = False
    pr = mec.execute("z = id")
    check(isinstance(pr, client.PendingResult), "mec.block = False gives PendingResults")
    pr.get_result()
    mec.block = True
    mec.targets = [0, 2]
    check(mec.pull("z") == [0, 2], "mec.targets as default")
    check(mec.pull("z", targets="all") == [0, 1, 2, 3], "keyword overrides the default")
    mec.targets = "all"

    # push / pull / zip_pull
    check(mec.push(dict(a=1.03234, b=3453)) == [None] * 4, "push")
    check(mec.pull("a") == [1.03234] * 4, "pull")
    check(mec.pull("b", targets=0) == [3453], "pull from one engine")
    check(mec.pull(("a", "b")) == [[1.03234, 3453]] * 4, "pull of two keys")
    check(list(mec.zip_pull(("a", "b"))) == [(1.03234,) * 4, (3453,) * 4], "zip_pull")

    def g(x):
        return 2.0 * x ** 4
    mec.push_function(dict(g=g))
    mec.execute("y = g(4.0)")
    check(mec.pull("y") == [512.0] * 4, "push_function")

    # dictionary interface
    mec["w"] = ["foo", "bar"]
    check(mec["w"] == [["foo", "bar"]] * 4, "mec[key] = value / mec[key]")

    # scatter / gather, and a parallel list comprehension
    mec.scatter("a", list(range(16)))
    check(mec["a"] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]],
          "scatter gives blocks of 4")
    check(mec.gather("a") == list(range(16)), "gather")
    mec.scatter("x", list(range(64)))
    mec.execute("y = [i ** 10 for i in x]")
    check(mec.gather("y") == [i ** 10 for i in range(64)], "parallel list comprehension")

    # parallel exceptions
    try:
        mec.execute("1/0")
    except CompositeError as error:
        lines = str(error).splitlines()
        check(lines[0] == "one or more exceptions from call to method: execute", "message")
        check(lines[1].startswith("[0:execute]: ZeroDivisionError"), "engine labels")
        out = io.StringIO()
        error.print_tracebacks(file=out)
        check("ZeroDivisionError" in out.getvalue(), "print_tracebacks")
        try:
            error.raise_exception()
        except ZeroDivisionError:
            pass
        else:
            raise AssertionError("raise_exception re-raises the original type")
    else:
        raise AssertionError("1/0 must raise CompositeError")
    pr = mec.execute("1/0", block=False)
    try:
        pr.r
    except CompositeError:
        pass
    else:
        raise AssertionError("pr.r re-raises the CompositeError")


def main(where):
    if where == "local":
        with LocalCluster(n=4) as cluster:
            mec = cluster.multiengine_client()
            quick_start(mec)
            multiengine_guide(mec)
            mec.close()
    else:
        furl_file = os.path.join(where, "security", "ipcontroller-mec.furl")
        mec = client.MultiEngineClient(furl_file)
        quick_start(mec)
        multiengine_guide(mec)
        mec.close()
    print("USER GUIDE OK")


if __name__ == "__main__":
    os.chdir(tempfile.gettempdir())
    main(sys.argv[1])
