"""A poison task on a LocalCluster that restarts its engines (issue 13).

Run by tests/cluster/test_restarts.py (this file is not a test module):
``python restarts_session.py``.  On two engines, a StringTask that kills
its engine must fail with TaskKilledEngines within a bound, the cluster
must have two registered engines again (restarted, under new ids) and run a
normal task; an engine killed from the client (mec.kill) and the engines
stopped with the cluster are not restarted.  Then ``ipcontroller
--task-max-engine-losses 0 --db sqlite``: a poison task fails at its first
loss, and the failure is still served after a controller restart.  Prints
``RESTARTS SESSION OK``.
"""
import re
import sys
import tempfile
import time

from ipkernel.cluster import LocalCluster
from ipkernel.error import TaskKilledEngines
from ipkernel.task import StringTask

DEADLINE = 60
#: The poison task must fail well within this (4 engine deaths, 2 restarts
#: at once and 2 after the 1 s back-off, each restart a fork of milliseconds).
POISON_BOUND = 20


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def wait_for(condition, what, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def lost_engines(message):
    """The engine ids a TaskKilledEngines message names."""
    found = re.search(r"\(engines ([\d, ]+)\)", message)
    return [int(i) for i in found.group(1).split(", ")] if found else []


def main():
    with LocalCluster(n=2, timeout=DEADLINE) as cluster:
        tc = cluster.task_client(timeout=DEADLINE)
        mec = cluster.multiengine_client(timeout=DEADLINE)
        first_pids = {e.pid for e in cluster.engines}
        check(mec.get_ids() == [0, 1], f"two engines: {mec.get_ids()}")

        started = time.monotonic()
        tid = tc.run(StringTask("import os; os._exit(3)"))
        try:
            tc.get_task_result(tid, block=True)
        except TaskKilledEngines as exc:
            message = str(exc)
        else:
            raise AssertionError("the poison task did not fail")
        took = time.monotonic() - started
        print(f"poison task failed after {took:.2f} s: {message}")
        check(took < POISON_BOUND, f"the poison task took {took:.1f} s to fail")
        check(f"task {tid} " in message and "4 times" in message, message)
        check("mec.execute" in message, message)
        check(len(set(lost_engines(message))) == 4, f"four different engines: {message}")

        ids = wait_for(lambda: len(mec.get_ids()) == 2 and mec.get_ids(),
                       "two engines registered again")
        check(not set(ids) & {0, 1}, f"restarted engines register under new ids: {ids}")
        pids = {e.pid for e in cluster.engines}
        check(not pids & first_pids, f"new engine processes: {first_pids} -> {pids}")
        exits = cluster.engine_exits
        check([(e.status, e.action) for e in exits] == [(3, "restart")] * 4,
              f"four crashes, each restarted: {exits}")
        check(sorted(e.delay for e in exits) == [0, 0, 1, 1], f"back-off: {exits}")
        check(all(e.new_pid for e in exits), f"every restart happened: {exits}")
        tr = tc.run(StringTask("import os; pid = os.getpid()", pull="pid"), block=True)
        check(tr.ns.pid in pids, f"a normal task runs on a restarted engine: {tr}")

        # a second poison task soon after: longer back-off, but no slot is given up
        second = tc.run(StringTask("import os; os._exit(4)"))
        try:
            tc.get_task_result(second, block=True)
        except TaskKilledEngines as exc:
            check(f"task {second} " in str(exc), str(exc))
            # each engine counted once, also one whose spare slot was free
            check(len(set(lost_engines(str(exc)))) == 4, f"four different engines: {exc}")
        else:
            raise AssertionError("the second poison task did not fail")
        # (the controller may see the last engine go before the cluster saw it exit)
        exits = cluster.wait_for_engine_exits(
            lambda ex: len(ex) >= 8 and all(e.new_pid for e in ex) and ex, DEADLINE)
        check(exits and [(e.status, e.action) for e in exits[4:]] == [(4, "restart")] * 4,
              f"four more crashes, each restarted: {cluster.engine_exits}")
        check(all(e.delay >= 2 for e in exits[4:]), f"longer back-off: {exits}")
        ids = wait_for(lambda: len(mec.get_ids()) == 2 and mec.get_ids(),
                       "two engines registered again after the second poison task")
        pids = {e.pid for e in cluster.engines}

        # an engine killed on purpose stays stopped
        victim = ids[0]
        mec.kill(targets=victim)
        stopped = cluster.wait_for_engine_exits(
            lambda ex: [e for e in ex if e.action == "stopped"], DEADLINE)
        check(stopped and len(stopped) == 1 and stopped[0].status == 0,
              f"the killed engine exited with status 0 and was left stopped: {stopped}")
        wait_for(lambda: mec.get_ids() == [ids[1]], "the killed engine to unregister")
        check(len(cluster.engine_exits) == 9, f"nothing was restarted: {cluster.engine_exits}")
        restarter = cluster._procs.restarter
    # stopping the cluster restarts nothing either
    check(len(restarter.exits) == 9, f"nothing restarted at the stop: {restarter.exits}")
    check(not any(e.is_alive() for e in cluster.engines), "every engine stopped")
    no_losses_allowed()
    print("RESTARTS SESSION OK")


def no_losses_allowed():
    with tempfile.TemporaryDirectory() as folder:
        cluster = LocalCluster(n=1, cluster_dir=folder, timeout=DEADLINE, controller_args=[
            "--task-max-engine-losses", "0", "--db", "sqlite"])
        with cluster:
            tc = cluster.task_client(timeout=DEADLINE)
            tid = tc.run(StringTask("import os; os._exit(5)"))
            try:
                tc.get_task_result(tid, block=True)
            except TaskKilledEngines as exc:
                message = str(exc)
            else:
                raise AssertionError("the poison task did not fail at its first loss")
            check(f"task {tid} was running on an engine that died or disconnected once "
                  f"(engine 0)" in message and "at most 0 times" in message, message)
            tc.close()
        with cluster:   # the same cluster directory: the controller reads its database
            tc = cluster.task_client(timeout=DEADLINE)
            try:
                tc.get_task_result(tid)
            except TaskKilledEngines as exc:
                check(str(exc) == message, f"the same error after the restart: {exc}")
            else:
                raise AssertionError("the stored failure was not served again")
            tc.close()


if __name__ == "__main__":
    sys.exit(main())
