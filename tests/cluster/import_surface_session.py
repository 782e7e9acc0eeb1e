"""IPython 0.10's import surface, typed as a 0.10 user would, in a fresh process.

Run by tests/cluster/test_import_surface.py (this file is not a test module):
``IPKERNEL_DIR=DIR python import_surface_session.py``.  It starts
LocalCluster(n=2) in ``$IPKERNEL_DIR`` (so the clients' default FURL files
are that cluster's), then goes through the task guide with ``from ipkernel
import client``, the 0.10 factories and positional task arguments, any
picklable callable (defined here, in ``__main__``, so shipped by value), and
the 0.10 script pattern of ``adapt_to_blocking_client``: an async client made
in the blocking clients' reactor thread, used blocking from the main thread.
Prints ``IMPORT SURFACE OK`` at the end; any failed check raises.
"""
import functools
import os
import sys

import ipkernel
from ipkernel import client
from ipkernel.cluster import LocalCluster

DEADLINE = 60


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def power(x, n=2):
    return x ** n


class Scale:
    def __init__(self, factor):
        self.factor = factor

    def times(self, x):
        return self.factor * x

    def __call__(self, x):
        return self.factor * x + 1


def only_on_engine_1(x):
    import ipkernel
    if my_id != 1:  # noqa: F821 - pushed to each engine below
        raise ipkernel.TaskRejectError(f"engine {my_id} does not take this task")  # noqa: F821
    return (my_id, x)  # noqa: F821


def task_guide():
    # parallel_task.txt: TaskClient, StringTask/MapTask, run, get_task_result
    tc = client.TaskClient()
    tid = tc.run(client.StringTask("b = a * 2", push={"a": 21}, pull="b"))
    check(tc.get_task_result(tid, block=True).ns.b == 42, "a StringTask through TaskClient()")
    tr = tc.run(client.StringTask("c = 5", "c", None, False, True), block=True)  # clear_after
    check(tr.ns.c == 5, "StringTask with 0.10 positional arguments")
    mapped = tc.run(client.MapTask(power, (2,), {"n": 5}, False, False, 1), block=True)
    check(mapped == 32, "MapTask with 0.10 positional arguments")
    check(tc.map(lambda x: x ** 2, range(8)) == [x ** 2 for x in range(8)], "tc.map")

    @tc.parallel()
    def f(x):
        return 10.0 * x ** 4
    check(f(range(6)) == [10.0 * x ** 4 for x in range(6)], "@tc.parallel()")
    for func, expected in ((functools.partial(power, n=3), [0, 1, 8, 27]),
                           (Scale(2), [1, 3, 5, 7]), (Scale(2).times, [0, 2, 4, 6])):
        check(tc.map(func, range(4)) == expected, f"tc.map of {func!r}")
        check(tc.parallel()(func)(range(4)) == expected, f"tc.parallel of {func!r}")
        check(tc.run(client.MapTask(func, (3,)), block=True) == expected[3],
              f"MapTask of {func!r}")
    tc.close()


def factories():
    # client.py of 0.10: get_multiengine_client / get_task_client ('' = default FURL file)
    mec = client.get_multiengine_client()
    check(isinstance(mec, client.MultiEngineClient), "get_multiengine_client() gives a client")
    check(mec.get_ids() == [0, 1], "the default cluster's engines")
    for engine_id in mec.get_ids():
        mec.push({"my_id": engine_id}, targets=engine_id)
    tc = client.get_task_client("")
    check(isinstance(tc, client.TaskClient), "get_task_client('') gives a client")
    # the taskreject example: TaskRejectError from the package, plus retries
    ids = [tc.run(client.MapTask(only_on_engine_1, (k,), retries=4)) for k in range(4)]
    results = [tc.get_task_result(i, block=True) for i in ids]
    check(results == [(1, k) for k in range(4)], f"rejected tasks ran on engine 1: {results}")
    check(mec.map(Scale(5).times, range(4)) == [0, 5, 10, 15], "mec.map of a bound method")
    tc.close()
    mec.close()


def script_adapts_an_async_client():
    # the 0.10 pattern: an async client made in the blocking clients' reactor
    # thread, adapted, then used with plain calls from this thread
    from ipkernel import asyncclient
    from ipkernel.client.fcmultiengine import FCFullSynchronousMultiEngineClient
    from ipkernel.client.fctask import FCTaskClient
    from ipkernel.client.reactor import blocking_call

    fc = blocking_call(asyncclient.get_multiengine_client)
    mec = fc.adapt_to_blocking_client()
    check(isinstance(mec, client.MultiEngineClient), "adapted to a MultiEngineClient")
    check(mec.get_ids() == [0, 1], "the adapted client's calls")
    check(mec.map(power, range(5)) == [x * x for x in range(5)], "the adapted client's map")
    try:
        blocking_call(lambda: mec.get_ids())   # a blocking call inside the reactor thread
    except client.ReactorThreadError:
        pass
    else:
        raise AssertionError("a blocking call from the reactor thread must fail")
    mec.close()
    # the async client is still there, with its Deferred-based mapper and parallel
    check(blocking_call(fc.mapper(dist="r").map, power, range(5)) == [x * x for x in range(5)],
          "the async client's mapper after the blocking one closed")
    check(blocking_call(fc.parallel(targets=0)(power), [3]) == [9], "the async parallel")

    ftc = blocking_call(asyncclient.get_task_client)
    tc = ftc.adapt_to_blocking_client()
    check(isinstance(tc, client.TaskClient), "adapted to a TaskClient")
    check(tc.map(Scale(3), [1, 2]) == [4, 7], "the adapted task client's map")
    tc.close()
    check(blocking_call(ftc.map, power, [4]) == [16], "the async task client after close")

    any_tc = blocking_call(asyncclient.get_client,
                           os.path.join(os.environ["IPKERNEL_DIR"], "security",
                                        "ipcontroller-tc.furl"))
    check(isinstance(any_tc, FCTaskClient), "get_client of the task FURL file")
    any_mec = blocking_call(asyncclient.get_client,
                            os.path.join(os.environ["IPKERNEL_DIR"], "security",
                                         "ipcontroller-mec.furl"))
    check(isinstance(any_mec, FCFullSynchronousMultiEngineClient),
          "get_client of the multi-engine FURL file")
    for async_client in (fc, ftc, any_tc, any_mec):
        blocking_call(async_client.close)


def main():
    check(ipkernel.TaskRejectError is client.TaskRejectError, "ipkernel.TaskRejectError")
    with LocalCluster(n=2, cluster_dir=os.environ["IPKERNEL_DIR"], timeout=DEADLINE):
        task_guide()
        factories()
        script_adapts_an_async_client()
    print("IMPORT SURFACE OK")


if __name__ == "__main__":
    if not os.environ.get("IPKERNEL_DIR"):
        sys.exit("set IPKERNEL_DIR to the cluster directory to use")
    main()
