"""``python -m ipkernel.demo``: a local cluster of processes doing parallel work.

The main job is :mod:`ipkernel.cluster.demo` (a controller and four engine
processes).  ``--in-process`` runs the tour of the core in one process
instead (below).

The in-process tour starts a controller with four engines (each runs user code in its own
thread) and uses the multi-engine interface the way an interactive user
would: execute, push/pull, a parallel map, scatter/compute/gather with
numpy, a non-blocking call fetched later, and a failure on every engine
reported as one CompositeError.
"""
import argparse
import math
import sys
import time

from twisted.internet import defer, task

from ipkernel.controller import ControllerService
from ipkernel.engine import EngineService
from ipkernel.error import CompositeError
from ipkernel.interfaces.multiengine import IFullMultiEngine, IFullSynchronousMultiEngine


def count_primes(lo, hi):
    """Count the primes in [lo, hi) by trial division (deliberately CPU-bound)."""
    found = 0
    for n in range(max(lo, 2), hi):
        if all(n % d for d in range(2, math.isqrt(n) + 1)):
            found += 1
    return found


def show(title, value):
    print(f"{title:<38} {value}")


async def tour(reactor, n_engines):
    controller = ControllerService()
    engines = [EngineService() for _ in range(n_engines)]
    for engine in engines:
        engine.startService()
        controller.register_engine(engine)
    try:
        mec = IFullSynchronousMultiEngine(IFullMultiEngine(controller))
        print(f"ipkernel demo: a controller with {n_engines} in-process engines\n")
        show("engine ids", await mec.get_ids())

        results = await mec.execute("import os, threading\n"
                                    "where = threading.current_thread().name\n"
                                    "print('engine', id, 'ready')")
        show("execute -> stdout of each engine", [r["stdout"].strip() for r in results])

        await mec.push({"scale": 10})
        show("push scale=10, pull scale*id", await mec.apply(lambda: scale * id))  # noqa: F821

        started = time.perf_counter()
        bounds = [(k * 5000, (k + 1) * 5000) for k in range(8)]
        counts = await mec.map(count_primes, [b[0] for b in bounds], [b[1] for b in bounds])
        show("primes below 40000 (parallel map)", f"{sum(counts)} in {time.perf_counter() - started:.2f} s")
        assert sum(counts) == count_primes(0, 40000)

        try:
            import numpy as np
        except ImportError:
            show("scatter/compute/gather", "skipped (numpy is not installed)")
        else:
            x = np.linspace(0.0, 1.0, 1_000_001)
            await mec.scatter("x", x)
            await mec.execute("import numpy as np\ny = 4.0 / (1.0 + x * x)")
            y = await mec.gather("y")
            pi = float(np.trapezoid(y, x)) if hasattr(np, "trapezoid") else float(np.trapz(y, x))
            show("pi by scatter/compute/gather", f"{pi:.10f} (error {abs(pi - math.pi):.1e})")

        pending = await mec.execute("total = sum(range(10**6))", block=False)
        show("non-blocking execute -> deferred id", pending[:12] + "...")
        await mec.get_pending_deferred(pending, block=True)
        show("pull total after fetching the result", await mec.pull("total", targets=0))

        try:
            await mec.execute("1 / (id - id)")
        except CompositeError as error:
            print("\na failure on every engine arrives as one CompositeError:")
            print(error)
        return 0
    finally:
        for engine in engines:
            await engine.stopService()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--engines", type=int, default=4, help="number of engines (default 4)")
    parser.add_argument("--in-process", action="store_true",
                        help="engines in this process (the core alone, no network)")
    args = parser.parse_args(argv)
    if not args.in_process:
        from ipkernel.cluster.demo import main as cluster_main
        return cluster_main(args.engines)
    task.react(lambda reactor: defer.ensureDeferred(tour(reactor, args.engines)))


if __name__ == "__main__":
    sys.exit(main())
