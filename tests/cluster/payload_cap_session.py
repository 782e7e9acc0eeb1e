"""Values over --payload-cap sent through Foolscap and lanes (issue 13), for
test_payload_cap_transports.py.

Run by tests/cluster/test_payload_cap_transports.py (this file is not a test
module): ``python payload_cap_session.py OUT_JSON``.  It starts
LocalCluster(n=2) with ``--payload-cap 1000000 --no-data-channel`` (so bulk
data has only Foolscap and the lanes), pushes 300 MB (too big for a lane:
it goes through Foolscap), then 1.5 MB (small enough for the lane, over the
cap), then a value under the cap, and pulls a value over the cap made on
the engines (their answers come on their lanes).  OUT_JSON gets each
outcome and the controller's RSS.  Prints ``PAYLOAD CAP SESSION OK`` at the end.
"""
import json
import sys

from ipkernel.cluster import LocalCluster

DEADLINE = 60
CAP = 1_000_000


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def outcome(call):
    try:
        return {"ok": True, "value": call()}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__, "message": str(exc)}


def main(out):
    report = {}
    with LocalCluster(n=2, timeout=DEADLINE,
                      controller_args=["--payload-cap", str(CAP), "--no-data-channel"]) as cluster:
        pid = cluster.controller.pid
        mec = cluster.multiengine_client(timeout=DEADLINE)
        mec.execute("a = 1")
        report["rss_before"] = rss_bytes(pid)
        report["huge"] = outcome(lambda: mec.push({"huge": b"h" * 300_000_000}))
        report["rss_after_huge"] = rss_bytes(pid)
        report["over"] = outcome(lambda: mec.push({"over": b"o" * 1_500_000}))
        report["under"] = outcome(lambda: mec.push({"under": b"u" * 500_000}))
        report["pulled"] = outcome(lambda: [len(v) for v in mec.pull("under")])
        # an answer over the cap (on the engines' lanes) fails the pull, not the engines
        mec.execute("made_there = b'm' * 3_000_000")
        report["big_pull"] = outcome(lambda: mec.pull("made_there"))
        report["ids_after"] = mec.get_ids()
        report["small_after"] = outcome(lambda: mec.pull("under", targets=0)[0] == b"u" * 500_000)
        mec.close()
    with open(out, "w") as f:
        json.dump(report, f)
    print("PAYLOAD CAP SESSION OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
