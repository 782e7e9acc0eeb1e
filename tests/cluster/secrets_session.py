"""A whole cluster session whose logs, reprs and tokens test_log_secrets.py scans.

Run by tests/cluster/test_log_secrets.py (this file is not a test module):
``python secrets_session.py CLUSTER_DIR OUT_JSON``.  It starts
LocalCluster(n=2) in CLUSTER_DIR and, through the blocking clients,
executes, pushes and pulls (also through the data channel), runs tasks,
makes a client disconnect and another connect, kills an engine with
SIGKILL and stops.  OUT_JSON gets the repr and str of every object that
knows a FURL, and the lane and data-channel tokens of this process and of
the engines.  Prints ``SECRETS SESSION OK`` at the end.
"""
import json
import os
import signal
import sys
import time

from ipkernel.cluster import LocalCluster
from ipkernel.task import MapTask, StringTask

DEADLINE = 60

#: Run on each engine (and here): the tokens of its lanes and data-channel peers.
TOKENS_CODE = """
import gc as _gc
from ipkernel.datachannel.peer import DataChannelPeer as _P
from ipkernel.lane.protocol import LaneProtocol as _L
_tokens = sorted({o.token.hex() for o in _gc.get_objects()
                  if isinstance(o, (_P, _L)) and isinstance(getattr(o, "token", None), bytes)})
"""


def tokens_here():
    namespace = {}
    exec(TOKENS_CODE, namespace)
    return namespace["_tokens"]


def shown(obj):
    return [repr(obj), str(obj)]


def main(cluster_dir, out):
    texts, tokens = [], set()
    with LocalCluster(n=2, cluster_dir=cluster_dir, timeout=DEADLINE) as cluster:
        texts += shown(cluster) + shown(cluster.controller) + [repr(cluster.engines)]
        mec = cluster.multiengine_client(timeout=DEADLINE)
        texts += shown(mec) + shown(mec._holder[0])   # and the async client inside
        mec.execute("a = 1")
        mec.push(dict(big=b"x" * 600_000, small=2))   # the big one on the data channel
        assert len(mec.pull("big")[0]) == 600_000
        pending = mec.execute("b = a + 1", block=False)
        texts += shown(pending)
        pending.get_result()
        tc = cluster.task_client(timeout=DEADLINE)
        texts += shown(tc) + shown(tc._holder[0])
        assert tc.get_task_result(tc.run(StringTask("c = 3", pull="c")), block=True).ns.c == 3
        assert tc.map(abs, [-1, -2]) == [1, 2]
        assert tc.get_task_result(tc.run(MapTask(pow, (2, 5))), block=True) == 32
        mec.execute(TOKENS_CODE)
        for engine_tokens in mec.pull("_tokens"):
            tokens.update(engine_tokens)
        tokens.update(tokens_here())
        tc.close()
        mec.close()                     # a client disconnects ...
        texts += shown(mec) + shown(tc)
        mec = cluster.multiengine_client(timeout=DEADLINE)   # ... and another comes
        tokens.update(tokens_here())
        ids = mec.get_ids()
        mec.execute("import os; _pid = os.getpid()", targets=ids)
        killed = dict(zip(mec.pull("_pid", targets=ids), ids))[cluster.engines[1].pid]
        os.kill(cluster.engines[1].pid, signal.SIGKILL)
        # the cluster restarts it under a new id, perhaps between two looks: wait for the old id
        deadline = time.monotonic() + DEADLINE
        while killed in mec.get_ids():
            if time.monotonic() > deadline:
                raise AssertionError("the killed engine was not unregistered")
            time.sleep(0.05)
        mec.execute("d = 4")
        mec.close()
    with open(out, "w") as f:
        json.dump({"texts": texts, "tokens": sorted(tokens)}, f)
    print("SECRETS SESSION OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
