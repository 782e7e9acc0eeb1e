"""A hostile lane peer against a real controller (issue 13), for test_lane_abuse.py.

Run by tests/cluster/test_lane_abuse.py (this file is not a test module):
``python lane_abuse_session.py OUT_JSON``.  It starts LocalCluster(n=2),
takes a lane token the way every client does (``open_lane`` over its
Foolscap session), joins the lane on a raw socket and sends a CALL header
announcing 2**34 - 1 bytes followed by zeros, as fast as the socket takes
them, until the controller closes the connection (at most SEND_AT_MOST
bytes).  OUT_JSON gets the controller's RSS before and after, the bytes
sent, the frame the controller answered with, and how real clients fared
afterwards.  Prints ``LANE ABUSE SESSION OK`` at the end.
"""
import json
import socket
import struct
import sys
import time

from ipkernel.cluster import LocalCluster
from ipkernel.task import MapTask

DEADLINE = 60
#: The most the hostile peer sends before giving up (the controller must
#: close the lane long before).
SEND_AT_MOST = 2 << 30
HEAD = struct.Struct("<QBIII")
HELLO, WELCOME, CALL, ANSWER, FAIL = range(1, 6)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def frame(kind, call_id, text, buffers=()):
    sizes = [len(b) for b in buffers]
    body = struct.pack(f"<BIII{len(sizes)}Q", kind, call_id, len(text), len(sizes), *sizes)
    return struct.pack("<Q", len(body) + len(text) + sum(sizes)) + body + text + b"".join(buffers)


def read_frame(sock):
    def exactly(n):
        got = b""
        while len(got) < n:
            part = sock.recv(n - len(got))
            if not part:
                raise ConnectionError("closed")
            got += part
        return got
    (rest,) = struct.unpack("<Q", exactly(8))
    body = exactly(rest)
    kind, call_id, text_len, _ = struct.unpack_from("<BIII", body)
    return kind, call_id, body[13:13 + text_len].decode(errors="replace")


def hostile_call(port, token):
    """Join with ``token``, announce a 16 GiB call and pour zeros; returns
    ``(bytes sent, the frame answered or None, seconds until closed)``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    try:
        sock.sendall(frame(HELLO, 0, b"null", [token]))
        assert read_frame(sock)[0] == WELCOME, "the lane did not welcome a good token"
        sock.sendall(HEAD.pack(2 ** 34 - 1, CALL, 9, 10, 0))
        zeros = bytes(1 << 20)
        sent, started = 0, time.monotonic()
        sock.settimeout(10)
        try:
            while sent < SEND_AT_MOST:
                sock.sendall(zeros)
                sent += len(zeros)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        closed_after = time.monotonic() - started
        try:
            answered = read_frame(sock)
        except (ConnectionError, OSError):
            answered = None
        return sent, answered, closed_after
    finally:
        sock.close()


def main(out):
    report = {}
    with LocalCluster(n=2, timeout=DEADLINE) as cluster:
        pid = cluster.controller.pid
        mec = cluster.multiengine_client(timeout=DEADLINE)
        mec.execute("a = 1")
        report["rss_before"] = rss_bytes(pid)
        fc = mec._holder[0]
        port, token, _, _ = mec._bridge.call(fc.remote.rref.callRemote, "open_lane",
                                          timeout=DEADLINE)
        sent, answered, closed_after = hostile_call(port, token)
        report.update(sent=sent, answered=answered, closed_after=closed_after,
                      rss_after=rss_bytes(pid))
        # the controller still serves real clients, the one it had and a new one
        assert mec.execute("b = a + 1") is not None
        assert mec.pull("b") == [2, 2]
        other = cluster.multiengine_client(timeout=DEADLINE)
        other.push({"c": b"y" * 3_000_000})       # bulk data: the data channel
        report["pulled"] = [len(v) for v in other.pull("c")]
        # a task client has no data channel: a call bigger than a lane carries
        # goes through Foolscap instead, and works
        tc = cluster.task_client(timeout=DEADLINE)
        report["task_result"] = tc.get_task_result(
            tc.run(MapTask(len, (b"z" * (70 << 20),))), block=True)
        report["rss_end"] = rss_bytes(pid)
        for client in (tc, other, mec):
            client.close()
    with open(out, "w") as f:
        json.dump(report, f)
    print("LANE ABUSE SESSION OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
