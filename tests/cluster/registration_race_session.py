"""Engines are pushed large data the moment get_ids shows them (issue 13).

Run by tests/cluster/test_registration_race.py (this file is not a test
module): ``python registration_race_session.py CLUSTER_DIR OUT_JSON``.  It
starts LocalCluster(n=1) in CLUSTER_DIR (data channel on TLS), then NEW
more ipengine processes, and polls ``get_ids()`` without pause; each engine
id that appears gets at once a push of BIG bytes (the data channel carries it) and a check of what
arrived, and every new batch of ids also a push to 'all'.  OUT_JSON gets
each call's outcome.  Prints ``REGISTRATION RACE SESSION OK`` at the end.
"""
import json
import sys
import time

from ipkernel.cluster import LocalCluster
from ipkernel.cluster.launcher import EngineLauncher

DEADLINE = 60
NEW = 8
BIG = 4_000_000


def attempt(outcomes, what, call):
    started = time.monotonic()
    try:
        value = call()
        outcomes.append({"what": what, "ok": True, "value": value,
                         "seconds": time.monotonic() - started})
    except Exception as exc:
        outcomes.append({"what": what, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                         "seconds": time.monotonic() - started})


def main(cluster_dir, out):
    outcomes = []
    payload = b"p" * BIG
    # TLS on the data channel makes joining it take a while: the window this is about
    with LocalCluster(n=1, cluster_dir=cluster_dir, timeout=DEADLINE,
                      controller_args=["--data-channel-tls"],
                      engine_furl_file=True) as cluster:   # engines started below by hand
        mec = cluster.multiengine_client(timeout=30)
        seen = set(mec.get_ids())
        launchers = [EngineLauncher(cluster_dir, 100 + k) for k in range(NEW)]
        try:
            for launcher in launchers:
                launcher.start()
            deadline = time.monotonic() + DEADLINE
            while len(seen) < 1 + NEW and time.monotonic() < deadline:
                new = sorted(set(mec.get_ids()) - seen)
                for engine_id in new:
                    attempt(outcomes, f"push to {engine_id}",
                            lambda: mec.push({"big": payload}, targets=engine_id))
                    attempt(outcomes, f"check on {engine_id}",
                            lambda: mec.pull("big", targets=engine_id)[0] == payload)
                if new:
                    attempt(outcomes, "push to all",
                            lambda: mec.push({"every": payload}) and len(mec.get_ids()))
                seen.update(new)
            attempt(outcomes, "all engines have it",
                    lambda: mec.execute("n = len(every)") and mec.pull("n"))
        finally:
            mec.close()
            for launcher in launchers:
                launcher.shutdown()
    with open(out, "w") as f:
        json.dump({"seen": sorted(seen), "outcomes": outcomes}, f)
    print("REGISTRATION RACE SESSION OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
