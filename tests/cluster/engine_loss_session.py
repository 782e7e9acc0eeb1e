"""Engines that die in the middle of calls to 'all' (issue 13), for
test_engine_loss_reported.py.

Run by tests/cluster/test_engine_loss_reported.py (this file is not a test
module): ``python engine_loss_session.py OUT_JSON``.  It starts
LocalCluster(n=3) and, each time on the engines there are then, makes one
engine ``os._exit()`` inside an execute, a push (while unpickling one of the
pushed values, next to a large value that goes on the data channel), an
apply and a non-blocking execute fetched later.  OUT_JSON gets, per call,
the engine ids of the call, which one died, and what the CompositeError
said (its failed positions, error types and messages, and successes).
Prints ``ENGINE LOSS SESSION OK`` at the end.
"""
import json
import os
import sys
import time

from ipkernel.cluster import LocalCluster
from ipkernel.error import CompositeError

DEADLINE = 60
BIG = 2_000_000


class ExitOn:
    """Unpickling it ends the process whose pid is ``pid`` (and gives 7 elsewhere)."""

    def __init__(self, pid):
        self.pid = pid

    def __reduce__(self):
        return (eval, (f"__import__('os')._exit(3) if __import__('os').getpid() == {self.pid} "
                       f"else 7",))


def die_if(pid):
    import os as _os
    if _os.getpid() == pid:
        _os._exit(3)
    return _os.getpid()


def described(call, ids, victim):
    try:
        value = call()
        return {"ids": ids, "victim": victim, "raised": False, "value": repr(value)}
    except CompositeError as err:
        return {"ids": ids, "victim": victim, "raised": True, "engine_ids": err.engine_ids,
                "failed": err.failed,
                "errors": [[type(e).__name__, str(e)] for e in err.exceptions],
                "successes": {str(k): repr(v) for k, v in err.successes.items()},
                "text": str(err)}


def settled(mec, n):
    """The engine ids once ``n`` engines are registered (restarted ones count)."""
    deadline = time.monotonic() + DEADLINE
    while len(mec.get_ids()) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {n} engines came back")
        time.sleep(0.05)
    return mec.get_ids()


def main(out):
    report = {}
    with LocalCluster(n=3, timeout=DEADLINE) as cluster:
        mec = cluster.multiengine_client(timeout=DEADLINE)

        def victim_of(ids, k):
            mec.execute("import os; pid = os.getpid()", targets=ids)
            pids = dict(zip(ids, mec.pull("pid", targets=ids)))
            return ids[k], pids[ids[k]], pids

        ids = settled(mec, 3)
        victim, pid, _ = victim_of(ids, 1)
        report["execute"] = described(
            lambda: mec.execute(f"import os\nif os.getpid() == {pid}: os._exit(3)\nx = 5"),
            ids, victim)

        ids = settled(mec, 3)
        victim, pid, _ = victim_of(ids, len(ids) - 1)
        report["push"] = described(
            lambda: mec.push({"big": b"b" * BIG, "bomb": ExitOn(pid)}), ids, victim)

        ids = settled(mec, 3)
        victim, pid, pids = victim_of(ids, 0)
        report["apply"] = described(lambda: mec.apply(die_if, (pid,)), ids, victim)
        report["apply_pids"] = {str(k): v for k, v in pids.items()}

        ids = settled(mec, 3)
        victim, pid, _ = victim_of(ids, 1)
        pending = mec.execute(f"import os\nif os.getpid() == {pid}: os._exit(3)", block=False)
        report["pending"] = described(pending.get_result, ids, victim)
        mec.close()
    with open(out, "w") as f:
        json.dump(report, f)
    print("ENGINE LOSS SESSION OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
