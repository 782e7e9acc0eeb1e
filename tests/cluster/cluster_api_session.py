"""The Cluster API on local engines (issue 14): start, add, remove, restart.

Run by tests/cluster/test_cluster_api.py and test_ipcluster_launchers.py
(this file is not a test module): ``python cluster_api_session.py [MODE
[CLUSTER_DIR]]`` (default ``local``).  ``Cluster(n=2, engines=MODE)``
starts two engines;
``add_engines(1)`` gives a third id; ``remove_engines`` takes one away for
good; ``restart_engine(0)`` brings engine 0 back as a new process under the
same id; the ``with`` block stops every process.  Prints ``CLUSTER API
SESSION OK`` and the pids it saw (for the test to check they are gone).
"""
import json
import os
import sys
import urllib.request

from ipkernel.cluster import Cluster


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def main(mode="local", cluster_dir=None):
    seen = set()
    timeout = 60 if mode == "local" else 240
    with Cluster(n=2, cluster_dir=cluster_dir, engines=mode, timeout=timeout) as cluster:
        mec = cluster.multiengine_client(progress=False)
        check(mec.get_ids() == [0, 1], f"two engines: {mec.get_ids()}")
        pids = dict(zip(mec.get_ids(), mec.apply(os.getpid)))
        seen.update(pids.values())
        added = cluster.add_engines(1)
        check(added == [2], f"add_engines(1) gave {added}")
        check(sorted(mec.get_ids()) == [0, 1, 2], f"three engines: {mec.get_ids()}")
        check(mec.execute("x = id", targets=2) is not None, "the new engine runs code")
        cluster.remove_engines([1])
        check(sorted(mec.get_ids()) == [0, 2], f"engine 1 removed: {mec.get_ids()}")
        cluster.restart_engine(0)
        check(sorted(mec.get_ids()) == [0, 2], f"engine 0 back: {mec.get_ids()}")
        new_pid = mec.apply(os.getpid, targets=0)
        new_pid = new_pid[0] if isinstance(new_pid, list) else new_pid
        check(new_pid != pids[0], f"engine 0 is a new process ({new_pid} vs {pids[0]})")
        seen.add(new_pid)
        seen.update(mec.apply(os.getpid))
        check(mec.map(lambda x: x * 3, range(12)) == [x * 3 for x in range(12)], "map works")
        url = cluster.dashboard_url   # the controller's page, with its token
        check(url is not None and url.startswith("http://127.0.0.1:") and "?token=" in url,
              f"a dashboard URL: {url}")
        base, token = url.split("?token=")
        request = urllib.request.Request(base + "api/engines",
                                         headers={"Authorization": "token " + token})
        shown = {e["id"]: e["state"]
                 for e in json.load(urllib.request.urlopen(request, timeout=30))}
        check(shown == {0: "idle", 1: "dead", 2: "idle"},
              f"the dashboard shows engines 0 and 2, and 1 as gone: {shown}")
        if mode == "local":
            seen.add(cluster.controller.pid)
        else:
            jobs = {row["job"] for row in cluster.describe()}
            check(len(jobs) == 3, f"a job each for the start, the added and the restarted "
                                  f"engine: {cluster.describe()}")
        mec.close()
    print("pids", " ".join(map(str, sorted(seen))))
    print("CLUSTER API SESSION OK")


if __name__ == "__main__":
    main(*sys.argv[1:])
