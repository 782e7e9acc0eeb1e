"""Tier 1-3: the data channel between hosts under signals.

Bulk data between hosts is authenticated by TLS and then carried as sealed
records on the plain socket under it (:mod:`ipkernel.transport.seal`).  A
blocking stdlib TLS read interrupted by a signal while another thread wrote
on the same socket could return nothing although the connection went on
(OpenSSL's socket BIO keeps one retry flag for both directions); a read of
a plain socket is retried by Python after a signal, so the sealed channel
has no such case.  These tests hold it to that.
"""
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading

import pytest
import pytest_twisted

from ipkernel.datachannel import DataChannelServer
from ipkernel.datachannel.peer import new_blob_id
from ipkernel.transport.seal import SealedSocket, derive_keys, fresh_secret

from awaiting import within

BIG = 12 << 20  # several pieces


@pytest.mark.tier1
@pytest.mark.timeout(60)
def test_a_sealed_stream_read_under_a_hail_of_signals_loses_nothing():
    left, right = socket.socketpair()
    a, b = fresh_secret(), fresh_secret()
    writer = SealedSocket(left, *derive_keys(a, b, True))
    reader = SealedSocket(right, *derive_keys(a, b, False))
    there = os.urandom(24 << 20)
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)  # the reader is this (main) thread
    sender = threading.Thread(target=lambda: (writer.sendall(there), writer.end()))
    try:
        sender.start()
        got = bytearray()
        buf = bytearray(1 << 20)
        while n := reader.recv_into(buf):
            got += buf[:n]
            reader.sendall(b"ack")  # and it writes on the same socket meanwhile
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sender.join(30)
        left.close()
        right.close()
    assert len(fired) > 5, "the signals did not come: the test proves nothing"
    assert bytes(got) == there


@pytest.fixture
def tls_server(pem):
    srv = DataChannelServer({"client": pem[0], "engine": pem[0]}, tls_always=True, stall=7.0)
    srv.tubid = pem[1]
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_after_the_tls_handshake_both_ends_talk_sealed_records(tls_server, peers):
    engine = await peers(tls_server, "engine", ("engine", 0))
    client = await peers(tls_server, "client", ("client", "c"))
    for peer in (engine, client):
        assert isinstance(peer.sock, SealedSocket)
    conn = tls_server._clients[("client", "c")]
    assert isinstance(conn.sock, SealedSocket) and not isinstance(conn.sock, ssl.SSLSocket)
    # a client silent in the middle of a blob is cut off by the socket's receive timeout
    timeout = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
    assert int.from_bytes(timeout[:8], "little") == 7
    for n in range(2):
        blob_id = new_blob_id()
        data = bytes([n + 1]) * BIG
        await within(client.send_blob_later(blob_id, [0], [data]))
        assert bytes(await within(engine.store.wait(blob_id, 10))) == data
    assert client.connected and engine.connected and conn.alive


#: Run in a process of its own (blocking client calls stay out of the test's
#: reactor): pushes and pulls through a TLS data channel while the controller
#: is stopped and continued again and again.
STOPPED_SESSION = r'''
import os, signal, sys, tempfile, threading
from ipkernel.cluster import LocalCluster

size, rounds = int(sys.argv[1]), int(sys.argv[2])
with tempfile.TemporaryDirectory() as cluster_dir:
    with LocalCluster(n=1, cluster_dir=cluster_dir, timeout=60,
                      controller_args=["--data-channel-tls"]) as cluster:
        mec = cluster.multiengine_client(timeout=60)
        target = mec.get_ids()[0]
        payload = b"s" * size
        mec.push({"blob": payload}, targets=target)
        pid = cluster.controller.pid
        done = threading.Event()
        stops = []

        def stop_and_continue():
            while not done.is_set():
                os.kill(pid, signal.SIGSTOP)
                done.wait(0.02)  # how long it stays stopped
                os.kill(pid, signal.SIGCONT)
                stops.append(1)
                done.wait(0.05)
        stopper = threading.Thread(target=stop_and_continue)
        stopper.start()
        try:
            for _ in range(rounds):
                mec.push({"blob": payload}, targets=target)
                back = mec.pull("blob", targets=target)
                assert len(back[0]) == size, len(back[0])
        finally:
            done.set()
            stopper.join()
            os.kill(pid, signal.SIGCONT)
        mec.close()
print(f"stopped {len(stops)} times: every push and pull went through")
'''


@pytest.mark.tier3
@pytest.mark.timeout(240)
def test_tls_bulk_data_goes_through_while_the_controller_is_stopped_and_continued():
    proc = subprocess.run([sys.executable, "-c", STOPPED_SESSION, str(20 << 20), "15"],
                          capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert proc.stdout.strip().endswith("every push and pull went through"), proc.stdout
