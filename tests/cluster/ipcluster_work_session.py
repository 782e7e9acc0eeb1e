"""Real work on a cluster that ``ipcluster MODE --daemon`` started (issue 14).

Run by tests/cluster/test_ipcluster_launchers.py (not a test module):
``python ipcluster_work_session.py FURL_FILE N ENV_VAR [mpi]``.  Waits
(bounded) until N engines registered, runs a parallel map, prints the
value of ENV_VAR in every engine (``-`` for none: e.g. SLURM_JOB_ID, the
job the engine runs in) as ``env ...``, the engines' pids as ``pids ...``
and their hosts' network namespaces as ``netns ...``; with ``mpi``, checks
that the engine ids are the MPI ranks and that an allreduce over all
engines works.  Prints ``WORK SESSION OK``.
"""
import os
import sys
import time

from ipkernel.client import MultiEngineClient

TIMEOUT = 240.0


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def engine_facts(name):
    import os
    try:
        netns = os.readlink("/proc/self/ns/net")
    except OSError:
        netns = "?"
    return os.getpid(), os.environ.get(name, "-") if name != "-" else "-", netns


def main(furl_file, n, env_var, *flags):
    n = int(n)
    deadline = time.monotonic() + TIMEOUT
    with MultiEngineClient(furl_file, timeout=60, progress=False) as mec:
        while len(mec.get_ids()) < n:
            check(time.monotonic() < deadline, f"only {mec.get_ids()} after {TIMEOUT:g} s")
            time.sleep(0.2)
        ids = sorted(mec.get_ids())
        check(len(ids) == n, f"{n} engines, not {ids}")
        check(mec.map(lambda x: x * x, range(4 * n)) == [x * x for x in range(4 * n)],
              "the parallel map")
        facts = mec.apply(engine_facts, (env_var,))
        if "mpi" in flags:
            mec.execute("from mpi4py import MPI\nrank = MPI.COMM_WORLD.rank\n"
                        "total = MPI.COMM_WORLD.allreduce(rank)", targets="all")
            check(mec.pull("rank") == ids, f"engine ids are the ranks: {mec.pull('rank')}")
            check(mec.pull("total") == [n * (n - 1) // 2] * n, "the allreduce")
    print("pids", " ".join(str(f[0]) for f in facts))
    print("env", " ".join(str(f[1]) for f in facts))
    print("netns", " ".join(str(f[2]) for f in facts))
    print("WORK SESSION OK")


if __name__ == "__main__":
    main(*sys.argv[1:])
