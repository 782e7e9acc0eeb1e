"""Data-channel speed, plain TCP against TLS (issue 15, deliverable 3).

``python -m bench.tlsspeed [--sizes 1,10,100] [--rounds 3] [--deadline 600]``
starts a LocalCluster with one engine twice: once as is (loopback peers use
plain TCP), once with the controller's ``--data-channel-tls`` (loopback peers
use TLS too).  For each size (MB) it times push to the engine and pull back,
keeps the median of the rounds, and prints MB/s per row with TLS/plain.
"""
import argparse
import sys
import tempfile
import time

from bench.report import median

MB = 1 << 20
MODES = (("plain", []), ("tls", ["--data-channel-tls"]))


def median_rate(nbytes, seconds):
    """MB/s of the median of ``seconds`` (None when there are none)."""
    middle = median(seconds)
    return None if middle is None else nbytes / middle / MB


def rows(results, sizes):
    """``results[mode][(op, nbytes)]`` -> rows (op, size MB, plain, tls, ratio)."""
    out = []
    for nbytes in sizes:
        for op in ("push", "pull"):
            plain = results.get("plain", {}).get((op, nbytes))
            tls = results.get("tls", {}).get((op, nbytes))
            ratio = tls / plain if plain and tls is not None else None
            out.append((op, nbytes // MB or nbytes / MB, plain, tls, ratio))
    return out


def render(table):
    """The rows as text lines."""
    def num(x, fmt):
        return "-" if x is None else format(x, fmt)
    lines = [f"{'op':<5}{'MB':>8}{'plain MB/s':>12}{'TLS MB/s':>12}{'TLS/plain':>11}"]
    for op, size, plain, tls, ratio in table:
        lines.append(f"{op:<5}{size:>8}{num(plain, '12.0f')}{num(tls, '12.0f')}"
                     f"{num(ratio, '11.2f')}")
    return lines


def measure(controller_args, sizes, rounds, deadline):
    """``{(op, nbytes): MB/s}`` from one cluster started with ``controller_args``."""
    from ipkernel.cluster import LocalCluster
    out = {}
    with tempfile.TemporaryDirectory() as cluster_dir:
        with LocalCluster(n=1, cluster_dir=cluster_dir, timeout=60,
                          controller_args=controller_args) as cluster:
            mec = cluster.multiengine_client(timeout=120)
            try:
                target = mec.get_ids()[0]
                for nbytes in sizes:
                    payload = b"x" * nbytes
                    times = {"push": [], "pull": []}
                    for _ in range(rounds):
                        if time.monotonic() > deadline:
                            break
                        t0 = time.perf_counter()
                        mec.push({"blob": payload}, targets=target)
                        t1 = time.perf_counter()
                        back = mec.pull("blob", targets=target)[0]
                        t2 = time.perf_counter()
                        if len(back) != nbytes:
                            raise RuntimeError(f"pulled {len(back)} bytes, pushed {nbytes}")
                        times["push"].append(t1 - t0)
                        times["pull"].append(t2 - t1)
                        del back
                    for op, secs in times.items():
                        out[(op, nbytes)] = median_rate(nbytes, secs)
            finally:
                mec.close()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.tlsspeed", description=__doc__)
    p.add_argument("--sizes", default="1,10,100", help="sizes in MB, comma separated")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--deadline", type=float, default=600, help="seconds for the whole run")
    a = p.parse_args(argv)
    sizes = [int(float(s) * MB) for s in a.sizes.split(",")]
    deadline = time.monotonic() + a.deadline
    results = {mode: measure(args, sizes, a.rounds, deadline) for mode, args in MODES}
    for line in render(rows(results, sizes)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
