"""Tier 2: an engine's large result goes on to its client without a FETCH.

The controller routes a result blob to the client it answers with a
reference to it (DataChannelServer.route); the blob is then moved across
as it arrives, or sent at once when it is already here whole.
"""
import socket

import pytest
import pytest_twisted
from twisted.internet import threads

from ipkernel import fcutil
from ipkernel.datachannel import THRESHOLD, BlobMissing, DataChannelPeer, DataChannelServer
from ipkernel.datachannel import frames
from ipkernel.datachannel.peer import new_blob_id

from awaiting import raises, within

pytestmark = pytest.mark.tier2

BIG = THRESHOLD // 8 * 4  # float64 items: four times the threshold


#: For tests with the raw ``engine``: it talks plain TCP, so only the plain server.
PLAIN_ONLY = pytest.mark.parametrize("server", [False], ids=["plain"], indirect=True)


@pytest.fixture(params=[False, True], ids=["plain", "tls"])
def server(tmp_path, cert_pool, request):
    pem = cert_pool.get(0)
    path = tmp_path / "data.pem"
    path.write_bytes(pem if isinstance(pem, bytes) else pem.encode())
    srv = DataChannelServer({"client": str(path), "engine": str(path)},
                            tls_always=request.param)
    srv.tubid = fcutil.make_tub(cert_data=pem).getTubID()
    srv.start()
    yield srv
    srv.stop()


@pytest_twisted.async_yield_fixture
async def client(server):
    """A client peer known to the server as ("client", "c")."""
    peer = DataChannelPeer("127.0.0.1", server.ports["client"],
                           server.new_token("client", ("client", "c")), server.tubid,
                           server.tls_always)
    await within(peer.connect())
    yield peer
    peer.close()


@pytest.fixture
def engine(server):
    """A raw engine connection (plain TCP: the test decides when each byte goes)."""
    assert not server.tls_always, "the raw engine talks plain TCP: use @PLAIN_ONLY"
    sock = socket.create_connection(("127.0.0.1", server.ports["engine"]), timeout=10)
    sock.sendall(frames.header(frames.AUTH, body_length=32)
                 + server.new_token("engine", ("engine", 0)))
    assert frames.read_header(sock)[0] == frames.AUTH
    yield sock
    sock.close()


def _put(sock, blob_id, body, part=None):
    """Send a PUT to the controller: all of ``body``, or its first ``part`` bytes."""
    sock.sendall(frames.header(frames.PUT, blob_id, len(body), {"to": "controller"})
                 + body[:part])


def _wait(server, predicate, seconds=10):
    """Block (in a thread, bounded) until ``predicate()`` holds under the server's lock."""
    with server.results.cv:
        if not server.results.cv.wait_for(predicate, seconds):
            raise AssertionError("the data channel server did not get there in time")


def _idle(server):
    return not server.results._routes and not server.results._kept and server.kept_bytes == 0


@pytest_twisted.ensureDeferred
async def test_a_blob_routed_before_it_comes_goes_straight_to_its_client(server, client):
    sender = DataChannelPeer("127.0.0.1", server.ports["engine"],
                             server.new_token("engine", ("engine", 0)), server.tubid,
                             server.tls_always)
    await within(sender.connect())
    try:
        blob_id = new_blob_id()
        assert server.route(blob_id, ("client", "c"))
        assert not server.route(blob_id, ("client", "c"))  # once
        waiting = client.fetch(blob_id, 10, ask=False)
        await within(sender.send_blob_later(blob_id, "controller", [b"r" * 700_000, b"s"]))
        assert bytes(await within(waiting)) == b"r" * 700_000 + b"s"
        assert server.results.routed == 1 and server.results.fetched == 0 and _idle(server)
        assert not server.route(new_blob_id(), ("client", "nobody"))
    finally:
        sender.close()


@PLAIN_ONLY
@pytest_twisted.ensureDeferred
async def test_a_blob_routed_while_it_arrives_is_streamed_on(server, client, engine):
    blob_id, body = new_blob_id(), bytes(range(256)) * 4000
    server.answered(0, [blob_id])  # not routed: kept as it comes, without waiting
    _put(engine, blob_id, body, 1000)
    await within(threads.deferToThread(_wait, server, lambda: blob_id in server.results._kept))
    waiting = client.store.wait(blob_id, 10)
    assert server.route(blob_id, ("client", "c"))
    await within(threads.deferToThread(engine.sendall, body[1000:]))
    assert bytes(await within(waiting)) == body
    assert _idle(server)


@PLAIN_ONLY
@pytest_twisted.ensureDeferred
async def test_a_blob_routed_once_here_whole_is_sent_at_once(server, client, engine):
    blob_id, body = new_blob_id(), b"w" * 300_000
    server.answered(0, [blob_id])
    _put(engine, blob_id, body)

    def whole():
        entry = server.results._kept.get(blob_id)
        return entry is not None and entry.received == len(body)
    await within(threads.deferToThread(_wait, server, whole))
    assert server.kept_bytes == len(body)
    waiting = client.store.wait(blob_id, 10)
    assert server.route(blob_id, ("client", "c"))
    assert bytes(await within(waiting)) == body
    assert _idle(server)


@PLAIN_ONLY
@pytest_twisted.ensureDeferred
async def test_a_fetch_of_a_routed_blob_is_answered_once(server, client, engine):
    blob_id, body = new_blob_id(), b"f" * 100_000
    assert server.route(blob_id, ("client", "c"))
    fetched = client.fetch(blob_id, 10)  # asks anyway (as a client that was not told)
    _put(engine, blob_id, body)
    assert bytes(await within(fetched)) == body
    assert len(client.store) == 0  # it came once
    other = DataChannelPeer("127.0.0.1", server.ports["client"],
                            server.new_token("client", ("client", "o")), server.tubid,
                            server.tls_always)
    await within(other.connect())
    try:
        err = await raises(BlobMissing, other.fetch(blob_id, 10))
        assert "already fetched" in str(err)
    finally:
        other.close()


@PLAIN_ONLY
@pytest_twisted.ensureDeferred
async def test_an_engine_gone_mid_blob_fails_the_waiting_client(server, client, engine):
    blob_id = new_blob_id()
    assert server.route(blob_id, ("client", "c"))
    waiting = client.store.wait(blob_id, 10)
    _put(engine, blob_id, b"g" * 500_000, 5000)
    await within(threads.deferToThread(_wait, server, lambda: blob_id in server.results._fetched))
    engine.close()  # half a body went out: the client's connection is closed
    err = await raises(BlobMissing, waiting)
    assert "closed" in str(err)
    assert not client.connected


@PLAIN_ONLY
@pytest_twisted.ensureDeferred
async def test_results_an_engine_never_sent_fail_when_it_goes(server, client, engine):
    routed, kept = new_blob_id(), new_blob_id()
    assert server.route(routed, ("client", "c"))
    waiting = client.store.wait(routed, 10)
    server.answered(0, [routed, kept])  # its answer came; its blobs did not
    engine.close()
    err = await raises(BlobMissing, waiting)
    assert "engine 0 went away" in str(err)
    err = await raises(BlobMissing, client.fetch(kept, 10))
    assert "engine 0 went away" in str(err)
    assert client.connected and not server.results._routes and not server.results._expected
    later = new_blob_id()
    server.answered(0, [later])  # an answer after its data channel closed
    assert not server.route(later, ("client", "c"))
    assert "no data channel" in str(await raises(BlobMissing, client.fetch(later, 10)))


def test_an_uninitialized_buffer_is_a_bytearray_of_its_size():
    buf = frames.uninitialized(12345)
    assert type(buf) is bytearray and len(buf) == 12345
    assert type(frames.new_buffer(10)) is bytearray


# -- through the controller -------------------------------------------------------------------

@pytest.fixture
def numpy():
    return pytest.importorskip("numpy")


@pytest_twisted.ensureDeferred
async def test_pulled_results_are_sent_unasked_and_not_kept(make_fc_cluster, numpy):
    cluster = await make_fc_cluster(2, data_channel=True)
    client, server = cluster.client, cluster.data_server
    a = numpy.arange(BIG, dtype=float)
    await within(client.push({"a": a}))
    for _ in range(3):
        back = await within(client.pull("a"))
        assert all((b == a).all() for b in back)
    assert server.results.routed == 6 and server.results.fetched == 0
    assert server.kept_bytes == 0 and not server.results._routes
    assert len(client.data.store) == 0


@pytest_twisted.ensureDeferred
async def test_non_blocking_and_gathered_results_arrive_whole(make_fc_cluster, numpy):
    cluster = await make_fc_cluster(2, data_channel=True)
    client, server = cluster.client, cluster.data_server
    a = numpy.random.default_rng(2).random(4 * BIG)
    await within(client.scatter("part", a))
    did = await within(client.gather("part", block=False))
    assert (await within(client.get_pending_deferred(did, block=True)) == a).all()
    assert (await within(client.gather("part")) == a).all()
    assert server.results.routed == 4 and server.kept_bytes == 0 and len(client.data.store) == 0


def test_send_all_gathers_buffers_and_survives_partial_sends():
    import threading
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # many partial sendmsg calls
        parts = [b"head", bytearray(b"x" * 300_000), memoryview(b"y" * 5000)[1000:], b"", b"end"]
        expected = b"".join(bytes(p) for p in parts)
        got = bytearray()

        def receive():
            while len(got) < len(expected):
                chunk = b.recv(65536)
                if not chunk:
                    return
                got.extend(chunk)
        reader = threading.Thread(target=receive)
        reader.start()
        frames.send_all(a, parts, more=True)
        frames.send_all(a, [])  # nothing: no call, no hang
        reader.join(10)
        assert not reader.is_alive() and bytes(got) == expected
    finally:
        a.close()
        b.close()


@pytest_twisted.ensureDeferred
async def test_blobs_of_direct_path_answers_are_waited_for_without_asking(make_fc_cluster,
                                                                          numpy):
    from twisted.internet import reactor

    from ipkernel.client import MultiEngineClient

    cluster = await make_fc_cluster(1, data_channel=True, lane=True)
    server = cluster.data_server
    a = numpy.arange(BIG, dtype=float)
    await within(cluster.client.push({"a": a}, targets=0))

    def user():  # the blocking client pulls on its direct lane
        mec = MultiEngineClient(cluster.mec_furl, tub=cluster.client_tub, timeout=10,
                                call_in_reactor=reactor.callFromThread)
        try:
            return [mec.pull("a", targets=0)[0] for _ in range(3)], mec._holder[1].lane
        finally:
            mec.close()
    backs, lane = await within(threads.deferToThread(user), 30)
    assert lane is not None  # the pulls took the direct path
    assert all((back == a).all() for back in backs)
    assert server.results.routed == 3 and server.results.asked == 0
