"""Tier 1 and 2: the data channel under abuse (issue 13).

The ports are attacked with raw sockets on loopback: idle connections by
the hundred, a login sent a byte at a time, wrong tokens, a PUT header over
the payload cap; and a client stops or dies in the middle of a blob it
sends to engines while another client pushes to the same engines.
"""
import socket
import ssl
import threading
import time

import pytest
import pytest_twisted
from twisted.internet import threads
from twisted.logger import globalLogPublisher

from ipkernel.datachannel import BlobMissing, DataChannelPeer, DataChannelServer, frames
from ipkernel.datachannel.blobs import Pieces
from ipkernel.datachannel.gate import RateLimitedLog
from ipkernel.datachannel.peer import new_blob_id
from ipkernel.transport import seal

from awaiting import raises, within
from rawsockets import closed_by_peer, is_closed, trickle

CAP = 64 << 20
BIG = 12 << 20  # several pieces


# -- tier 1 --------------------------------------------------------------------------------

@pytest.mark.tier1
def test_refusals_are_logged_once_a_minute_per_peer_with_a_count():
    lines, now = [], [1000.0]
    limited = RateLimitedLog(lines.append, every=60, clock=lambda: now[0])
    for _ in range(5):
        limited("10.0.0.1", "refused 10.0.0.1")
    limited("10.0.0.2", "refused 10.0.0.2")
    assert lines == ["refused 10.0.0.1", "refused 10.0.0.2"]
    now[0] += 61
    limited("10.0.0.1", "refused 10.0.0.1 again")
    assert lines[-1] == "refused 10.0.0.1 again (4 more from there in the last 60 s not logged)"
    limited("10.0.0.1", "once more")  # within the minute: counted
    now[0] += 61
    limited.flush()  # the quiet peer's count is reported, the other had nothing left out
    assert lines[-1] == ("data channel: 1 more lines like the last one about 10.0.0.1 were "
                         "not logged in the last 60 s")
    assert len(lines) == 4


@pytest.mark.tier1
def test_pieces_are_put_together_in_order_and_dropped_on_abort():
    pieces = Pieces(bytearray)
    a, b = b"a" * 16, b"b" * 16
    pieces.view(a, 0, 10, 4)[:] = b"0123"
    assert pieces.received(a, 4) is None and pieces.nbytes == 10
    with pytest.raises(ValueError, match="out of step"):
        pieces.view(a, 6, 10, 4)  # a gap
    with pytest.raises(ValueError, match="came first"):
        pieces.view(b, 5, 10, 5)
    pieces.view(a, 4, 10, 6)[:] = b"456789"
    assert bytes(pieces.received(a, 6)) == b"0123456789" and len(pieces) == 0
    pieces.view(b, 0, 10, 5)
    pieces.received(b, 5)
    pieces.abort(b)
    assert len(pieces) == 0 and pieces.nbytes == 0


# -- tier 2 --------------------------------------------------------------------------------

@pytest.fixture
def make_server(pem):
    made = []

    def make(tls=False, **options):
        srv = DataChannelServer({"client": pem[0], "engine": pem[0]}, max_blob=CAP,
                                tls_always=tls, **options)
        srv.tubid = pem[1]
        srv.start()
        made.append(srv)
        return srv
    yield make
    for srv in made:
        srv.stop()


@pytest.fixture
def raw():
    """``raw(server, role, token=None, join=True)``: a raw socket to a data
    port (TLS if the server wants it) that sends an AUTH with ``token`` (a
    good one when None) unless ``join`` is false; all closed afterwards.
    Over TLS a good join goes on with sealed records (a SealedSocket)."""
    made = []

    def connect(server, role, token=None, join=True):
        sock = socket.create_connection(("127.0.0.1", server.ports[role]), timeout=10)
        made.append(sock)
        if server.tls_always:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
            made.append(sock)
        if join:
            good = token is None
            if good:
                token = server.new_token(role, (role, f"raw-{len(made)}"))
            mine = seal.fresh_secret() if server.tls_always else b""
            sock.sendall(frames.header(frames.AUTH, body_length=32 + len(mine)) + token + mine)
            if good:
                kind, _, length, _ = frames.read_header(sock)
                assert kind == frames.AUTH and length == len(mine)
                if mine:
                    theirs = frames.recv_exactly(sock, length)
                    sock = seal.seal_after_tls(sock, mine, theirs, True)
                    sock.settimeout(10)
                    made.append(sock)
        return sock
    yield connect
    for sock in made:
        try:
            sock.close()
        except OSError:
            pass


def wait_until(predicate, what, seconds=10.0):
    """Poll ``predicate`` from a thread (not the reactor), bounded."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(0.01)


def data_threads():
    """Threads of data-channel servers in this process (the pool's are not counted)."""
    return sum(t.name.startswith("ipkernel-data") for t in threading.enumerate())


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_hundreds_of_idle_connections_cost_no_threads_and_a_peer_still_joins(
        make_server, peers, raw):
    server = make_server()
    before = data_threads()
    idle = [raw(server, role, join=False) for role in ("client", "engine") for _ in range(100)]
    await within(threads.deferToThread(
        wait_until, lambda: server.gate.refused >= 200 - 16 and all(map(is_closed, idle[:-16])),
        "the oldest to be closed"))
    assert data_threads() <= before  # (the gate's thread was there already)
    assert server.gate.pending <= 16  # all from one address (both ports)
    assert all(map(is_closed, idle[:-16])) and not any(map(is_closed, idle[-16:]))  # the oldest
    client = await peers(server, "client", ("client", "c"))
    engine = await peers(server, "engine", ("engine", 0))
    blob_id = new_blob_id()
    await within(client.send_blob_later(blob_id, [0], [b"x" * BIG]))
    assert bytes(await within(engine.store.wait(blob_id, 10))) == b"x" * BIG
    assert data_threads() <= before + 3  # theirs (and a sending thread)
    for sock in idle:
        sock.close()


@pytest.mark.tier2
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest_twisted.ensureDeferred
async def test_a_login_a_byte_at_a_time_meets_the_deadline(make_server, raw, tls):
    server = make_server(tls, gate={"auth_timeout": 1.0})
    sock = raw(server, "client", join=False)
    login = frames.header(frames.AUTH, body_length=32) + bytes(32)
    # the attack: a byte every 0.2 s, never the whole login
    stop, sender = trickle(sock, login[:-1], 0.2)
    try:
        took = await within(threads.deferToThread(closed_by_peer, sock, 10), 15)
    finally:
        stop.set()
        sender.join(5)
    assert took < 3.0, f"the login stayed open {took:.1f} s (deadline 1 s)"
    assert server.gate.pending == 0


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_wrong_tokens_are_logged_once_per_peer_and_never_repeated(make_server, raw):
    server = make_server()
    lines = []

    def observe(event):
        if "message" in event and "data channel" in str(event.get("message")):
            lines.append(str(event["message"]))
    globalLogPublisher.addObserver(observe)
    try:
        tokens = [bytes([k]) * 32 for k in range(1, 6)]
        for token in tokens:
            sock = raw(server, "client", token=token)
            await within(threads.deferToThread(closed_by_peer, sock, 5), 10)
        await within(threads.deferToThread(wait_until, lambda: server.gate.refused >= 5,
                                           "five refusals"))
    finally:
        globalLogPublisher.removeObserver(observe)
    refused = [line for line in lines if "refused a client connection from 127.0.0.1" in line]
    assert len(refused) == 1 and "unknown token" in refused[0], lines
    for line in lines:
        assert not any(t.hex() in line or repr(t) in line for t in tokens)


@pytest.mark.tier2
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest_twisted.ensureDeferred
async def test_an_over_cap_put_is_refused_after_its_header(make_server, raw, tls):
    server = make_server(tls)
    sock = raw(server, "client")
    blob_id = new_blob_id()
    sock.sendall(frames.header(frames.PUT, blob_id, CAP + 1, {"to": [0]}))  # and no body

    def answer():
        kind, got_id, _, extra = frames.read_header(sock)
        return kind, got_id, extra, closed_by_peer(sock, 5)
    kind, got_id, extra, took = await within(threads.deferToThread(answer), 10)
    assert kind == frames.ERROR and got_id == blob_id
    assert f"payload cap of {CAP} bytes" in extra["message"]
    assert took < 4  # and the connection is closed, nothing of the body was waited for


def _half_put(sock, blob_id, to, length, part):
    """A PUT of ``length`` bytes of which only ``part`` are sent (blocking:
    call it from a thread, the engines' peers read in this process)."""
    sock.sendall(frames.header(frames.PUT, blob_id, length, {"to": to}) + b"h" * part)


@pytest.mark.tier2
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("to", [[0], [0, 1]], ids=["one-engine", "two-engines"])
@pytest_twisted.ensureDeferred
async def test_a_stopped_sender_blocks_nobody_and_its_death_aborts_its_blob(
        make_server, peers, raw, tls, to):
    server = make_server(tls)
    engines = [await peers(server, "engine", ("engine", i)) for i in range(2)]
    stuck = raw(server, "client")
    stuck_id = new_blob_id()
    stuck_waits = [engines[i].store.wait(stuck_id, 60) for i in to]
    # and then it stops
    await within(threads.deferToThread(_half_put, stuck, stuck_id, to, 40 << 20, 9 << 20), 30)
    other = await peers(server, "client", ("client", "other"))
    for n in range(2):  # two blobs go through to the same engines meanwhile
        blob_id = new_blob_id()
        data = bytes([n]) * BIG
        await within(other.send_blob_later(blob_id, to, [data]))
        for i in to:
            assert bytes(await within(engines[i].store.wait(blob_id, 10))) == data
    assert not any(d.called for d in stuck_waits)
    stuck.close()  # the sender dies: what it sent in part is dropped, its waiters told at once
    for d in stuck_waits:
        err = await raises(BlobMissing, d, 10)
        assert "stopped after" in str(err) and "of 41943040 bytes" in str(err)
    assert all(engine.connected for engine in engines)
    after = new_blob_id()
    await within(other.send_blob_later(after, to, [b"z" * BIG]))
    for i in to:
        assert bytes(await within(engines[i].store.wait(after, 10))) == b"z" * BIG


@pytest.mark.tier2
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest_twisted.ensureDeferred
async def test_a_sender_silent_in_the_middle_of_a_blob_is_aborted_after_the_stall_time(
        make_server, peers, raw, tls):
    server = make_server(tls, stall=1.0)
    engine = await peers(server, "engine", ("engine", 0))
    stuck = raw(server, "client")
    blob_id = new_blob_id()
    waiting = engine.store.wait(blob_id, 60)
    start = time.monotonic()
    await within(threads.deferToThread(_half_put, stuck, blob_id, [0], 20 << 20, 5 << 20), 30)
    err = await raises(BlobMissing, waiting, 10)
    assert "sent nothing for 1 s" in str(err) and time.monotonic() - start < 5
    assert await within(threads.deferToThread(closed_by_peer, stuck, 5), 10) < 4
    other = await peers(server, "client", ("client", "other"))
    after = new_blob_id()
    await within(other.send_blob_later(after, [0], [b"k" * BIG]))
    assert bytes(await within(engine.store.wait(after, 10))) == b"k" * BIG


@pytest.mark.tier2
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest_twisted.ensureDeferred
async def test_a_normal_close_is_no_warning_on_either_end(make_server, peers, tls):
    server = make_server(tls)
    warnings = []

    def observe(event):
        if event.get("log_level") is not None and event["log_level"].name in ("warn", "error"):
            warnings.append(event)
    globalLogPublisher.addObserver(observe)
    try:
        engine = await peers(server, "engine", ("engine", 0))
        for n in range(3):
            client = await peers(server, "client", ("client", n))
            blob_id = new_blob_id()
            await within(client.send_blob_later(blob_id, [0], [b"n" * BIG]))
            await within(engine.store.wait(blob_id, 10))
            client.close()
            await within(threads.deferToThread(
                wait_until, lambda: ("client", n) not in server._clients, "the close"))
    finally:
        globalLogPublisher.removeObserver(observe)
    assert warnings == []


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_connections_waiting_to_authenticate_are_bounded_in_all(make_server, raw):
    server = make_server(gate={"max_pending": 4, "max_per_peer": 100})
    idle = [raw(server, "engine", join=False) for _ in range(10)]
    await within(threads.deferToThread(
        wait_until, lambda: server.gate.refused >= 6 and server.gate.pending == 4,
        "the oldest six to be closed and the newest four accepted"))
    assert server.gate.pending == 4
    await within(threads.deferToThread(
        wait_until, lambda: all(map(is_closed, idle[:6])), "their sockets to close"))
    assert not any(map(is_closed, idle[6:]))


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_a_token_nobody_presented_lapses(make_server, raw, monkeypatch):
    from ipkernel.datachannel import server as server_module
    server = make_server()
    old = server.new_token("client", ("client", "late"))
    monkeypatch.setattr(server_module, "TOKEN_TTL", -1.0)
    server.new_token("client", ("client", "other"))  # handing out one sweeps the lapsed
    sock = raw(server, "client", token=old)
    assert await within(threads.deferToThread(closed_by_peer, sock, 5), 10) < 4
    assert ("client", "late") not in server._clients


@pytest.mark.tier1
def test_a_send_cut_short_by_the_controller_says_so_and_leaves_the_channel():
    a, b = socket.socketpair()
    peer = DataChannelPeer("127.0.0.1", 1, b"t" * 32, "tubid")
    peer.sock = a
    b.close()  # the controller closed it (it aborted what this client sent)
    try:
        with pytest.raises(ConnectionError, match="closed while 1000 bytes of bulk data were "
                                                  "being sent.*make it again"):
            peer.send_blob(new_blob_id(), [0], [b"x" * 1000])
        assert not peer.connected and peer.bytes_sent == 0
        with pytest.raises(ConnectionError, match="is closed"):
            peer.send_blob(new_blob_id(), [0], [b"y"])
    finally:
        a.close()
