"""Engines as one real mpiexec job (issue 14), with the blocking client.

Run by tests/cluster/test_mpi.py (this file is not a test module):
``python mpi_session.py CLUSTER_DIR work|leave [PARENT_PID]``.  Both start a
controller (engine FURL file, loopback) and an :class:`MPIEngineSet` and
wait, with a deadline, until its engines registered.

* ``work``: three engines; each engine's id is its MPI rank, an
  ``allreduce`` executed on all engines at once gives every engine the
  sum, ``stop()`` ends the job.  Prints the pids of the job and ``MPI
  SESSION OK``.
* ``leave``: two engines, the set's record saved; the session then exits
  without stopping anything, as a crashed ``ipcluster`` would (the
  controller lives on until process PARENT_PID exits).  Prints the pids of
  the job and ``MPI SESSION LEFT``.
"""
import sys
import time

from ipkernel.client import MultiEngineClient
from ipkernel.cluster.launcher import ControllerLauncher
from ipkernel.cluster.mpi import MPIEngineSet
from ipkernel.clusterdir import ClusterDir, MULTIENGINE_FURL

from sessionkit import check, wait_registered

TIMEOUT = 120.0

ALLREDUCE = """
from mpi4py import MPI
comm = MPI.COMM_WORLD
rank = comm.rank
total = comm.allreduce(rank)
part = sum(x * x for x in range(rank, 30000, comm.size))
squares = comm.allreduce(part)
"""


def work(mec, engine_set):
    check(wait_registered(mec, engine_set, 3, TIMEOUT) == [0, 1, 2], f"ids: {mec.get_ids()}")
    row = engine_set.describe()
    check(row[0]["job"] == engine_set.pid and row[0]["state"] == "running", f"row {row}")
    mec.execute(ALLREDUCE, targets="all")
    for engine_id in range(3):
        rank = mec.pull("rank", targets=[engine_id])
        check(rank == [engine_id], f"engine {engine_id} has rank {rank}")
    check(mec.pull("total") == [3, 3, 3], f"allreduce of the ranks: {mec.pull('total')}")
    squares = sum(x * x for x in range(30000))
    check(mec.pull("squares") == [squares] * 3, f"sum of squares: {mec.pull('squares')}")
    engine_pids = mec.apply(__import__("os").getpid)
    job = engine_set.job_pids()
    check(engine_set.pid in job and set(engine_pids) <= set(job),
          f"the job's pids {job} hold mpiexec {engine_set.pid} and the engines {engine_pids}")
    print("pids", *job, flush=True)
    engine_set.stop(timeout=60)
    check(engine_set.job_pids() == [], f"left running: {engine_set.job_pids()}")
    ended = engine_set.poll()
    check(ended is not None and "exited with status" in ended, f"poll after stop: {ended}")
    engine_set.stop()   # again: nothing to do
    deadline = time.monotonic() + TIMEOUT
    while mec.get_ids():
        check(time.monotonic() < deadline, f"engines {mec.get_ids()} still registered")
        time.sleep(0.1)
    print("MPI SESSION OK")


def leave(mec, engine_set):
    check(wait_registered(mec, engine_set, 2, TIMEOUT) == [0, 1], f"ids: {mec.get_ids()}")
    print("pids", *engine_set.job_pids(), flush=True)
    print("MPI SESSION LEFT")


def main(path, scenario, parent_pid=None):
    cluster = ClusterDir(path).create()
    controller = ControllerLauncher(cluster, parent_pid=parent_pid, engine_furl=True)
    controller.start()
    print("controller", controller.pid, flush=True)
    controller.wait_ready(TIMEOUT)
    n = 3 if scenario == "work" else 2
    # (left behind, the engines must outlive the controller's going)
    keep = [] if scenario == "work" else ["--stop-wait", "600", "--reconnect-timeout", "600"]
    engine_set = MPIEngineSet(cluster, n, engine_args=keep, name=f"session-{scenario}")
    engine_set.save()
    engine_set.start()
    engine_set.save()
    print("mpiexec", engine_set.pid, flush=True)
    mec = MultiEngineClient(str(cluster.furl_file(MULTIENGINE_FURL)), timeout=60,
                            progress=False)
    try:
        if scenario == "work":
            work(mec, engine_set)
            engine_set.forget()
        else:
            leave(mec, engine_set)
    finally:
        mec.close()
        if scenario == "work":
            engine_set.stop()
            controller.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:]))
