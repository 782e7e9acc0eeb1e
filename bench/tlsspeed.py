"""Data-channel speed, plain TCP against TLS (issue 15, deliverable 3).

``python -m bench.tlsspeed [--sizes 1,10,100] [--rounds 5] [--deadline 600]``
starts two LocalClusters with one engine each, side by side: one as is
(loopback peers use plain TCP), one with the controller's
``--data-channel-tls`` (loopback peers use TLS too).  For each size (MB) it
times a push to the engine and a pull back, the two clusters taking turns
round by round (so a burst of load from other programs on the machine hits
both alike), and prints per row the median MB/s of each, TLS/plain, and
the median CPU time (milliseconds, the client and its cluster's processes
together) one operation cost in each.

``python -m bench.tlsspeed --sockets`` measures what one end of a
connection costs instead, without a cluster: CPU ms per MB to send and to
receive 100 MB over loopback, plain TCP against stdlib ``ssl`` TLS (the
lanes' contexts and certificate kind; the TLS version and cipher the two
ends agreed on) and against the sealed records the data channel sends
between hosts after its TLS handshake (:mod:`ipkernel.transport.seal`).
"""
import argparse
import contextlib
import os
import socket
import ssl
import sys
import tempfile
import threading
import time

from bench.report import median

MB = 1 << 20
MODES = (("plain", []), ("tls", ["--data-channel-tls"]))
OPS = ("push", "pull")


def median_rate(nbytes, seconds):
    """MB/s of the median of ``seconds`` (None when there are none)."""
    middle = median(seconds)
    return None if middle is None else nbytes / middle / MB


def rows(results, sizes, cpu=None):
    """``results[mode][(op, nbytes)]`` (MB/s) and ``cpu[mode][(op, nbytes)]``
    (ms) -> rows (op, size MB, plain, tls, ratio, plain cpu, tls cpu)."""
    cpu = cpu or {}
    out = []
    for nbytes in sizes:
        for op in OPS:
            plain = results.get("plain", {}).get((op, nbytes))
            tls = results.get("tls", {}).get((op, nbytes))
            ratio = tls / plain if plain and tls is not None else None
            out.append((op, nbytes // MB or nbytes / MB, plain, tls, ratio,
                        cpu.get("plain", {}).get((op, nbytes)),
                        cpu.get("tls", {}).get((op, nbytes))))
    return out


def render(table):
    """The rows as text lines."""
    def num(x, width, places):
        return f"{'-':>{width}}" if x is None else f"{x:{width}.{places}f}"
    lines = [f"{'op':<5}{'MB':>8}{'plain MB/s':>12}{'TLS MB/s':>12}{'TLS/plain':>11}"
             f"{'plain CPU ms':>14}{'TLS CPU ms':>12}"]
    for op, size, plain, tls, ratio, plain_cpu, tls_cpu in table:
        lines.append(f"{op:<5}{size:>8}{num(plain, 12, 0)}{num(tls, 12, 0)}{num(ratio, 11, 2)}"
                     f"{num(plain_cpu, 14, 1)}{num(tls_cpu, 12, 1)}")
    return lines


def _children():
    """``{pid: parent pid}`` of every process (Linux /proc; empty elsewhere)."""
    out = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            out[int(name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return out


def descendants(pid):
    """The ids of the processes below ``pid`` (children, theirs, ...)."""
    parents = _children()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def cpu_seconds(pids):
    """CPU seconds used so far by the processes ``pids``, all their threads
    (``/proc/PID/task/*/schedstat``, nanoseconds; those gone count as nothing).
    A thread that ended took its time with it: the clusters' threads that
    move bulk data live as long as their connections."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


class _Side:
    """One cluster of the comparison, its client and its processes."""

    def __init__(self, stack, controller_args):
        from ipkernel.cluster import LocalCluster
        before = descendants(os.getpid())
        cluster_dir = stack.enter_context(tempfile.TemporaryDirectory())
        cluster = stack.enter_context(LocalCluster(n=1, cluster_dir=cluster_dir, timeout=60,
                                                   controller_args=controller_args))
        self.mec = cluster.multiengine_client(timeout=120)
        stack.callback(self.mec.close)
        self.target = self.mec.get_ids()[0]
        # the client runs in this process; the cluster's are those it added
        self.pids = {os.getpid()} | (descendants(os.getpid()) - before)

    def once(self, op, payload):
        """``(seconds, CPU seconds)`` of one push or pull of ``payload``."""
        cpu0, t0 = cpu_seconds(self.pids), time.perf_counter()
        if op == "push":
            self.mec.push({"blob": payload}, targets=self.target)
        else:
            back = self.mec.pull("blob", targets=self.target)[0]
            if len(back) != len(payload):
                raise RuntimeError(f"pulled {len(back)} bytes, pushed {len(payload)}")
            del back
        return time.perf_counter() - t0, cpu_seconds(self.pids) - cpu0


def measure(sizes, rounds, deadline, modes=MODES):
    """``(rates, cpu)``: ``rates[mode][(op, nbytes)]`` MB/s and
    ``cpu[mode][(op, nbytes)]`` CPU ms of one operation, medians of the
    rounds, the clusters of ``modes`` taking turns."""
    rates = {mode: {} for mode, _ in modes}
    cpu = {mode: {} for mode, _ in modes}
    with contextlib.ExitStack() as stack:
        sides = {mode: _Side(stack, args) for mode, args in modes}
        for nbytes in sizes:
            payload = b"x" * nbytes
            for side in sides.values():  # the engine holds the value before a pull
                side.mec.push({"blob": payload}, targets=side.target)
            times = {(mode, op): ([], []) for mode in sides for op in OPS}
            for turn in range(rounds):
                if time.monotonic() > deadline:
                    break
                order = list(sides) if turn % 2 == 0 else list(reversed(sides))
                for mode in order:
                    for op in OPS:
                        wall, used = sides[mode].once(op, payload)
                        times[mode, op][0].append(wall)
                        times[mode, op][1].append(used)
            for (mode, op), (walls, used) in times.items():
                rates[mode][(op, nbytes)] = median_rate(nbytes, walls)
                middle = median(used)
                cpu[mode][(op, nbytes)] = None if middle is None else middle * 1000
            del payload
    return rates, cpu


def _tls_pair(listener, cert_file):
    """``(sending, receiving)`` TLS sockets joined through ``listener``."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(listener.getsockname(), timeout=30)
    accepted, _ = listener.accept()
    sending = client_ctx.wrap_socket(raw, do_handshake_on_connect=False)
    shake = threading.Thread(target=sending.do_handshake, daemon=True)
    shake.start()
    accepted.settimeout(30)
    receiving = server_ctx.wrap_socket(accepted, server_side=True)
    shake.join(30)
    return sending, receiving


def _sealed_pair(listener, cert_file):
    """``(sending, receiving)`` sealed sockets (the data channel's records
    between hosts) on the sockets of a TLS pair, as after its handshake."""
    from ipkernel.transport.seal import fresh_secret, seal_after_tls
    tls_sending, tls_receiving = _tls_pair(listener, cert_file)
    a, b = fresh_secret(), fresh_secret()
    return seal_after_tls(tls_sending, a, b, True), seal_after_tls(tls_receiving, a, b, False)


KINDS = ("plain", "tls", "sealed")


def socket_costs(nbytes=100 * MB, rounds=5, chunk=4 * MB):
    """``({(kind, side): CPU ms per MB}, {kind: agreed (version, cipher)})``
    for kind plain/tls/sealed and side send/recv: one thread sends ``nbytes`` over
    loopback ``rounds`` times, another receives them (medians of the rounds)."""
    from ipkernel import fcutil
    costs, agreed = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        cert_file = os.path.join(tmp, "cert.pem")
        fcutil.load_or_create_cert(cert_file)
        for kind in KINDS:
            with socket.create_server(("127.0.0.1", 0)) as listener:
                if kind == "tls":
                    sending, receiving = _tls_pair(listener, cert_file)
                    agreed[kind] = (sending.version(), sending.cipher()[0])
                elif kind == "sealed":
                    sending, receiving = _sealed_pair(listener, cert_file)
                    agreed[kind] = ("sealed records", "AES-256-GCM")
                else:
                    sending = socket.create_connection(listener.getsockname(), timeout=30)
                    receiving = listener.accept()[0]
                    agreed[kind] = (None, None)
                receiving.settimeout(30)
                used = {"send": [], "recv": []}

                def receive():
                    view = memoryview(bytearray(chunk))
                    for _ in range(rounds):
                        got, start = 0, time.thread_time()
                        while got < nbytes:
                            k = receiving.recv_into(view, min(chunk, nbytes - got))
                            if not k:
                                return
                            got += k
                        used["recv"].append(time.thread_time() - start)
                reader = threading.Thread(target=receive, daemon=True)
                reader.start()
                data = memoryview(bytearray(chunk))
                try:
                    for _ in range(rounds):
                        sent, start = 0, time.thread_time()
                        while sent < nbytes:
                            n = min(chunk, nbytes - sent)
                            sending.sendall(data[:n])
                            sent += n
                        used["send"].append(time.thread_time() - start)
                    reader.join(60)
                finally:
                    sending.close()
                    receiving.close()
                for side, seconds in used.items():
                    middle = median(seconds)
                    costs[(kind, side)] = None if middle is None else middle * 1000 / (nbytes / MB)
    return costs, agreed


def render_costs(costs, agreed):
    """The socket costs as text lines."""
    lines = [f"{'':<7}{'send ms/MB':>12}{'recv ms/MB':>12}  agreed"]
    for kind in KINDS:
        cells = "".join(f"{'-':>12}" if costs.get((kind, side)) is None
                        else f"{costs[(kind, side)]:12.2f}" for side in ("send", "recv"))
        version, cipher = agreed.get(kind, (None, None))
        lines.append(f"{kind:<7}{cells}  {f'{version} {cipher}' if version else '-'}")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.tlsspeed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1,10,100", help="sizes in MB, comma separated")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--deadline", type=float, default=600, help="seconds for the whole run")
    p.add_argument("--sockets", action="store_true",
                   help="what one end of a plain, a TLS and a sealed connection costs "
                        "(no cluster)")
    a = p.parse_args(argv)
    if a.sockets:
        for line in render_costs(*socket_costs(rounds=a.rounds)):
            print(line)
        return 0
    sizes = [int(float(s) * MB) for s in a.sizes.split(",")]
    rates, cpu = measure(sizes, a.rounds, time.monotonic() + a.deadline)
    for line in render(rows(rates, sizes, cpu)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
