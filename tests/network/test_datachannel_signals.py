"""Tier 2: a TLS data connection read while another thread writes on it.

A blocking stdlib TLS read interrupted by a signal (a stop and continue of
the controller, say) while another thread writes on the same socket can
return nothing although the connection goes on: OpenSSL's socket BIO keeps
one retry flag for both directions.  Before ``frames.recv_into`` the
controller took that for the peer's close and dropped the connection in the
middle of whatever it was sending there.  Here the spurious read of nothing
is made on purpose.
"""
import socket
import ssl
import subprocess
import sys
import threading

import pytest
import pytest_twisted

from ipkernel.datachannel import DataChannelServer, frames
from ipkernel.datachannel.peer import new_blob_id

from awaiting import within

BIG = 12 << 20  # several pieces


@pytest.fixture
def tls_pair(pem):
    """``(server side, client side)``: two TLS sockets joined on loopback."""
    made = []
    listener = socket.create_server(("127.0.0.1", 0))
    made.append(listener)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pem[0])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(listener.getsockname(), timeout=10)
    made.append(raw)
    accepted, _ = listener.accept()
    made.append(accepted)
    client = client_ctx.wrap_socket(raw, do_handshake_on_connect=False)
    made.append(client)
    shake = threading.Thread(target=client.do_handshake, daemon=True)
    shake.start()
    accepted.settimeout(10)
    server = server_ctx.wrap_socket(accepted, server_side=True)
    made.append(server)
    shake.join(10)
    assert not shake.is_alive(), "the TLS handshake did not finish"
    server.settimeout(None)
    client.settimeout(10)
    yield server, client
    for sock in reversed(made):
        sock.close()


def nothing_once(sock, then=None):
    """Make ``sock``'s next read return nothing (as a read cut short by a
    signal does); ``then()`` runs just after it.  Returns the list of calls."""
    calls = []

    def recv_into(view, n=0, flags=0):
        calls.append(n)
        if len(calls) == 1:
            if then is not None:
                then()
            return 0
        return ssl.SSLSocket.recv_into(sock, view, n, flags)
    sock.recv_into = recv_into
    return calls


@pytest.mark.tier2
@pytest.mark.parametrize("pending", [True, False], ids=["bytes-waiting", "nothing-waiting"])
def test_a_tls_read_of_nothing_on_a_live_connection_is_read_again(tls_pair, pending):
    server, client = tls_pair
    sender = threading.Thread(target=client.sendall, args=(b"hello",), daemon=True)
    if pending:
        client.sendall(b"hello")
        calls = nothing_once(server)
    else:  # the bytes come while the read waits again
        calls = nothing_once(server, then=sender.start)
    buf = bytearray(16)
    got = frames.recv_into(server, memoryview(buf), 16)
    assert bytes(buf[:got]) == b"hello"
    assert len(calls) == 2
    if not pending:
        sender.join(10)


@pytest.mark.tier2
def test_a_tls_stream_that_ended_reads_nothing(tls_pair):
    server, client = tls_pair
    client.sendall(b"last")
    client.close()
    buf = bytearray(16)
    assert frames.recv_into(server, memoryview(buf), 16) == 4
    assert frames.recv_into(server, memoryview(buf), 16) == 0
    with pytest.raises(ConnectionError, match="closed in the middle"):
        frames.recv_into_fully(server, memoryview(buf))


@pytest.mark.tier2
def test_a_tls_socket_that_keeps_reading_nothing_is_taken_as_ended(tls_pair):
    server, _ = tls_pair
    calls = []

    def recv_into(view, n=0, flags=0):
        calls.append(n)
        return 0
    server.recv_into = recv_into
    assert frames.recv_into(server, memoryview(bytearray(4)), 4) == 0
    assert len(calls) == frames.SPURIOUS_ENDS + 1  # bounded: no endless loop


@pytest.mark.tier2
def test_a_plain_read_of_nothing_is_the_end_at_once():
    a, b = socket.socketpair()
    try:
        b.close()
        assert frames.recv_into(a, memoryview(bytearray(4)), 4) == 0
    finally:
        a.close()


@pytest.fixture
def tls_server(pem):
    srv = DataChannelServer({"client": pem[0], "engine": pem[0]}, tls_always=True)
    srv.tubid = pem[1]
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_the_controller_keeps_a_tls_connection_whose_read_says_nothing(
        tls_server, peers, monkeypatch):
    engine = await peers(tls_server, "engine", ("engine", 0))
    client = await peers(tls_server, "client", ("client", "c"))
    conn = tls_server._clients[("client", "c")]
    # a TLS sender is watched by relay's watchdog: no SO_RCVTIMEO (a stop signal
    # would make every read of it return EINTR)
    assert conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) == bytes(16)
    armed = [True]
    original = ssl.SSLSocket.recv_into

    def recv_into(sock, view, n=0, flags=0):
        if armed[0] and sock.server_side:
            armed[0] = False
            return 0
        return original(sock, view, n, flags)
    monkeypatch.setattr(ssl.SSLSocket, "recv_into", recv_into)
    # the controller's thread for the client waits in a read begun before: the
    # next read (the rest of the first message) is the one that says nothing
    for n in range(2):
        blob_id = new_blob_id()
        data = bytes([n + 1]) * BIG
        await within(client.send_blob_later(blob_id, [0], [data]))
        assert bytes(await within(engine.store.wait(blob_id, 10))) == data
    assert not armed[0]
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
