"""The cluster the browser test looks at (run by test_dashboard_browser.py;
not a test module): ``python browser_work.py URL_FILE RELEASE_FILE``.

Starts a LocalCluster of two engines, writes its dashboard URL to URL_FILE,
runs 30 tasks and one that fails, then keeps both engines busy with a
command that waits for RELEASE_FILE to appear (printing ``BUSY`` first);
then stops the cluster once RELEASE_FILE.stop appears.
"""
import sys
import time
from pathlib import Path

from ipkernel.cluster import LocalCluster
from ipkernel.task import StringTask

HOLD = """
import os, time
deadline = time.monotonic() + 120
while not os.path.exists({release!r}) and time.monotonic() < deadline:
    time.sleep(0.05)
"""


def main(url_file, release_file):
    with LocalCluster(n=2) as cluster:
        tc = cluster.task_client()
        ids = [tc.run(StringTask("x = sum(range(1000))")) for _ in range(30)]
        ids.append(tc.run(StringTask("raise ValueError('the browser sees me')")))
        tc.barrier(ids)
        mec = cluster.multiengine_client()
        pending = mec.execute(HOLD.format(release=release_file), block=False)
        Path(url_file).write_text(cluster.dashboard_url)
        print("BUSY", flush=True)
        pending.get(timeout=150)
        print("RELEASED", flush=True)
        stop = Path(release_file + ".stop")   # the test has seen the engines idle
        deadline = time.monotonic() + 120
        while not stop.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        tc.close()
        mec.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
