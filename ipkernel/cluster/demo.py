"""The main job of ``python -m ipkernel.demo``: real parallel work on a local cluster.

It starts a controller and four engine processes with
:class:`~ipkernel.cluster.LocalCluster`, connects the blocking
:class:`~ipkernel.client.MultiEngineClient` and does what a user would: run
code on every engine, push and apply, a parallel map of CPU-bound work
(timed against the same work done here), scatter / compute / gather with
numpy, a non-blocking call fetched later, and a failure on every engine
reported as one CompositeError.  Then every process stops.
"""
import math
import os
import time

from ipkernel.cluster import LocalCluster
from ipkernel.demo import count_primes
from ipkernel.error import CompositeError


def show(title, value):
    print(f"{title:<40} {value}", flush=True)


def tour(mec):
    """Use a cluster through the blocking client ``mec``."""
    ids = mec.get_ids()
    show("engine ids", ids)
    print(mec.execute("import os\nprint('engine', id, 'is process', os.getpid())"))

    mec["scale"] = 10
    show("mec['scale'] = 10; apply scale * id", mec.apply(lambda: scale * id))  # noqa: F821

    hi, pieces = 240_000, 4 * len(ids)
    bounds = [(k * hi // pieces, (k + 1) * hi // pieces) for k in range(pieces)]
    started = time.perf_counter()
    counts = mec.map(count_primes, [b[0] for b in bounds], [b[1] for b in bounds])
    parallel = time.perf_counter() - started
    started = time.perf_counter()
    expected = count_primes(0, hi)
    serial = time.perf_counter() - started
    assert sum(counts) == expected
    show(f"primes below {hi} (parallel map)",
         f"{sum(counts)} in {parallel:.2f} s on {len(ids)} engines "
         f"({serial:.2f} s here in one process; {os.cpu_count()} CPUs)")

    try:
        import numpy as np
    except ImportError:
        show("scatter/compute/gather", "skipped (numpy is not installed)")
    else:
        x = np.linspace(0.0, 1.0, 1_000_001)
        mec.scatter("x", x)
        mec.execute("y = 4.0 / (1.0 + x * x)")
        y = mec.gather("y")
        trapezoid = getattr(np, "trapezoid", None) or np.trapz
        pi = float(trapezoid(y, x))
        show("pi by scatter / compute / gather", f"{pi:.10f} (error {abs(pi - math.pi):.1e})")

    pending = mec.execute("total = sum(range(10**7))", block=False)
    show("non-blocking execute", f"{pending!r}")
    pending.get_result()
    show("pull total once the result is in", mec.pull("total", targets=0))

    try:
        mec.execute("1 / (id - id)")
    except CompositeError as error:
        print("\na failure on every engine arrives as one CompositeError:")
        print(error)


def main(n_engines=4):
    """Start a LocalCluster, run the tour, stop the cluster; return the exit status."""
    print(f"ipkernel demo: starting a controller and {n_engines} engine processes ...",
          flush=True)
    started = time.perf_counter()
    with LocalCluster(n=n_engines) as cluster:
        show("cluster ready in", f"{time.perf_counter() - started:.1f} s ({cluster.cluster_dir})")
        with cluster.multiengine_client() as mec:
            tour(mec)
    print(f"\nthe controller and the {n_engines} engines have stopped", flush=True)
    return 0
