"""The task farm against real processes, in a fresh Python process.

Run by tests/cluster/test_task_cluster.py (this file is not a test module):
``python task_session.py WORKDIR``.  It starts LocalCluster(n=2), runs 50
MapTasks and a StringTask through the blocking TaskClient, then kills
(SIGKILL) the engine running a long task and checks the task completes on
the other engine exactly once.  Prints ``TASK SESSION OK`` at the end.
"""
import os
import signal
import sys
import time
from pathlib import Path

from ipkernel.cluster import LocalCluster
from ipkernel.task import MapTask, StringTask

DEADLINE = 60


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def square(x):
    return x * x


def long_job(path, seconds):
    import os
    import time
    with open(path, "a") as f:
        f.write(f"start {os.getpid()}\n")
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(f"done {os.getpid()}\n")
    return os.getpid()


def lines(path):
    return path.read_text().split() if path.exists() else []


def wait_for(condition, what):
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def main(workdir):
    marker = Path(workdir) / "long_job.txt"
    with LocalCluster(n=2, timeout=DEADLINE) as cluster:
        tc = cluster.task_client(timeout=DEADLINE)
        engine_pids = {e.pid for e in cluster.engines}
        ids = [tc.run(MapTask(square, (i,))) for i in range(50)]
        check(ids == list(range(50)), f"task ids 0..49, got {ids}")
        results = [tc.get_task_result(i, block=True) for i in ids]
        check(results == [i * i for i in range(50)], "50 MapTask results")
        tr = tc.run(StringTask("import os; pid = os.getpid(); z = 6 * 7", pull=["z", "pid"]),
                    block=True)
        check(tr.ns.z == 42 and tr.ns.pid in engine_pids, "StringTask result from an engine")
        check(tc.queue_status()["succeeded"] == 51, "51 tasks succeeded")

        tid = tc.run(MapTask(long_job, (str(marker), 3.0)))
        wait_for(lambda: len(lines(marker)) == 2, "the long task to start")
        victim = int(lines(marker)[1])
        check(victim in engine_pids, "the long task runs in an engine")
        os.kill(victim, signal.SIGKILL)
        survivor = tc.get_task_result(tid, block=True)
        check(survivor in engine_pids and survivor != victim, "completed on the other engine")
        words = lines(marker)
        check(words == ["start", str(victim), "start", str(survivor), "done", str(survivor)],
              f"started twice, completed once: {words}")
        status = tc.queue_status(verbose=True)
        check(status["succeeded"].count(tid) == 1 and tid not in status["failed"],
              f"the task finished exactly once: {status}")
        check(tc.get_task_result(tid) == survivor, "the result stays retrievable")
        tc.close()
    print("TASK SESSION OK")


if __name__ == "__main__":
    main(sys.argv[1])
