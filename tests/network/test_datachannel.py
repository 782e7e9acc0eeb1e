"""Tier 2: the data channel on its own (TLS sockets on loopback, real threads)."""
import mmap
import socket
import threading

import pytest
import pytest_twisted

from ipkernel import fcutil
from ipkernel.datachannel import (BlobMissing, DataChannelPeer, DataChannelServer, is_ref,
                                  offload, resolve, tubid_of_der)
from ipkernel.datachannel import frames, memread
from ipkernel.datachannel.peer import new_blob_id
from ipkernel.serialize import serialize, unserialize

from awaiting import raises, within

pytestmark = pytest.mark.tier2


@pytest.fixture
def certs(tmp_path, cert_pool):
    """``{role: (pem path, tub id)}`` for the two roles."""
    out = {}
    for n, role in enumerate(("client", "engine")):
        pem = cert_pool.get(n)
        path = tmp_path / f"{role}.pem"
        path.write_bytes(pem if isinstance(pem, bytes) else pem.encode())
        tub = fcutil.make_tub(cert_data=pem)
        out[role] = (str(path), tub.getTubID())
    return out


@pytest.fixture(params=[False, True], ids=["plain", "tls"])
def server(certs, request):
    """A server, plain on loopback or (``tls``) with TLS on loopback too."""
    srv = DataChannelServer({role: pem for role, (pem, _) in certs.items()}, max_blob=50 << 20,
                            tls_always=request.param)
    srv.start()
    yield srv
    srv.stop()


@pytest_twisted.async_yield_fixture
async def peers(server, certs):
    """``connect(role, identity) -> DataChannelPeer``; all closed afterwards."""
    made = []

    async def connect(role, identity, token=None, tubid=None):
        token = token if token is not None else server.new_token(role, identity)
        peer = DataChannelPeer("127.0.0.1", server.ports[role], token,
                               tubid or certs[role][1], server.tls_always)
        made.append(peer)
        return await within(peer.connect())

    yield connect
    for peer in made:
        peer.close()


def test_tub_id_of_a_certificate_matches_foolscap(certs):
    import ssl
    pem, tubid = certs["engine"]
    der = ssl.PEM_cert_to_DER_cert(open(pem).read().split("-----END CERTIFICATE-----")[0]
                                   + "-----END CERTIFICATE-----\n")
    assert tubid_of_der(der) == tubid


@pytest_twisted.ensureDeferred
async def test_a_put_to_engines_is_streamed_to_each_of_them(peers):
    client = await peers("client", ("client", "s1"))
    engines = [await peers("engine", ("engine", i)) for i in range(3)]
    blob_id = new_blob_id()
    data = [bytes(range(256)) * 40_000, b"tail"]
    await within(client.send_blob_later(blob_id, [0, 2], data))
    for k in (0, 2):
        got = await within(engines[k].store.wait(blob_id, 10))
        assert bytes(got) == b"".join(data)
    await raises(BlobMissing, engines[1].store.wait(blob_id, 0.3))
    other = new_blob_id()
    await within(client.send_blob_later(other, "all", [b"to everyone"]))
    for engine in engines:
        assert bytes(await within(engine.store.wait(other, 10))) == b"to everyone"


@pytest_twisted.ensureDeferred
async def test_a_result_kept_by_the_controller_is_fetched_once(server, peers):
    engine = await peers("engine", ("engine", 0))
    client = await peers("client", ("client", "s1"))
    blob_id = new_blob_id()
    fetched = client.fetch(blob_id, 10)  # may ask before the engine has sent it
    await within(engine.send_blob_later(blob_id, "controller", [b"x" * 1_000_000]))
    assert bytes(await within(fetched)) == b"x" * 1_000_000
    assert server.kept_bytes == 0
    err = await raises(BlobMissing, client.fetch(blob_id, 70))
    assert "already fetched" in str(err)


def test_a_big_body_gets_a_lazy_mapping_and_a_small_one_a_bytearray():
    small = frames.new_buffer(frames.MAP_MIN - 1)
    assert type(small) is bytearray and len(small) == frames.MAP_MIN - 1
    big = frames.new_buffer(frames.MAP_MIN + 5)
    assert isinstance(big, mmap.mmap) and len(big) == frames.MAP_MIN + 5
    view = memoryview(big)
    assert not view.readonly
    view[-1] = 7  # private: writable, and nobody else sees it
    assert big[-1] == 7
    view.release()


def _big_data():
    """Bytes over frames.MAP_MIN, not a multiple of any page size."""
    return bytes(range(251)) * (frames.MAP_MIN // 251 + 1000)


@pytest_twisted.ensureDeferred
async def test_a_big_result_is_fetched_whole_into_a_mapping(server, peers):
    np = pytest.importorskip("numpy")
    engine = await peers("engine", ("engine", 0))
    client = await peers("client", ("client", "s1"))
    data = _big_data()
    blob_id = new_blob_id()
    fetched = client.fetch(blob_id, 10)
    await within(engine.send_blob_later(blob_id, "controller", [data[:1000], data[1000:]]))
    got = await within(fetched)
    assert isinstance(got, mmap.mmap) and bytes(got) == data
    assert server.kept_bytes == 0
    array = np.frombuffer(got, dtype=np.uint8)
    array[0] = 255  # what a pulled array is built on stays writable
    assert array.flags.writeable and got[0] == 255
    first = id(got)
    # Once nothing refers to it, the next result of that size lands in the
    # same mapping (its pages are not zeroed again), all of it overwritten.
    del got, array
    other = bytes(reversed(data))
    blob_id = new_blob_id()
    fetched = client.fetch(blob_id, 10)
    await within(engine.send_blob_later(blob_id, "controller", [other]))
    again = await within(fetched)
    assert id(again) == first and bytes(again) == other


@pytest_twisted.ensureDeferred
async def test_a_big_kept_blob_is_taken_whole_without_the_channel(server, peers):
    from twisted.internet import threads
    engine = await peers("engine", ("engine", 0))
    data = _big_data()
    blob_id = new_blob_id()
    await within(engine.send_blob_later(blob_id, "controller", [data]))
    got = await within(threads.deferToThread(server.take_kept, blob_id, 10))
    assert bytes(got) == data
    assert server.kept_bytes == 0
    assert await within(threads.deferToThread(server.take_kept, blob_id, 10)) is None


@pytest_twisted.ensureDeferred
async def test_refs_round_trip_through_the_channel(peers):
    np = pytest.importorskip("numpy")
    client = await peers("client", ("client", "s1"))
    engine = await peers("engine", ("engine", 5))
    namespace = {"big": serialize(np.arange(100_000.0)), "small": serialize(3),
                 "nested": [serialize({"a": np.ones(50_000)})]}
    sent, sends = offload(namespace, client, [5])
    assert is_ref(sent["big"]) and not is_ref(sent["small"]) and is_ref(sent["nested"][0])
    assert sent["big"].nbytes == 0 and len(sends) == 2
    for blob_id, buffers in sends:
        await within(client.send_blob_later(blob_id, [5], buffers))
    back = await within(resolve(sent, lambda b: engine.store.wait(b, 10)))
    assert (unserialize(back["big"]) == np.arange(100_000.0)).all()
    assert unserialize(back["small"]) == 3
    assert (unserialize(back["nested"][0])["a"] == 1).all()


@pytest_twisted.ensureDeferred
async def test_a_wrong_token_or_certificate_is_refused(server, peers, certs):
    with pytest.raises(Exception):
        await peers("client", ("client", "x"), token=b"\0" * 32)
    token = server.new_token("engine", ("engine", 1))
    with pytest.raises(Exception):  # an engine token on the client port
        await peers("client", ("engine", 1), token=token, tubid=certs["client"][1])
    if server.tls_always:  # plain loopback has no certificate to check
        with pytest.raises(ConnectionError, match="showed the certificate of tub"):
            await peers("client", ("client", "y"), tubid=certs["engine"][1])


@pytest_twisted.ensureDeferred
async def test_oversized_and_undeliverable_blobs_get_an_error(peers):
    from ipkernel.error import PayloadTooLarge
    client = await peers("client", ("client", "s1"))
    assert client.max_blob == 50 << 20  # the controller said so when it let it in
    too_big = new_blob_id()
    err = await raises(PayloadTooLarge, client.send_blob_later(too_big, [0], [bytes(51 << 20)]))
    assert "payload cap of 52428800 bytes" in str(err) and "--payload-cap" in str(err)
    assert client.connected and client.bytes_sent == 0  # refused before anything was sent
    nowhere = new_blob_id()
    waiting = client.store.wait(nowhere, 10)
    await within(client.send_blob_later(nowhere, [7], [b"data"]))
    assert "have no data channel" in str(await raises(BlobMissing, waiting))


@pytest_twisted.ensureDeferred
async def test_waiters_fail_when_the_channel_closes(server, peers):
    engine = await peers("engine", ("engine", 0))
    waiting = engine.store.wait(new_blob_id(), 10)
    server.forget_engine(0)
    assert "closed" in str(await raises(BlobMissing, waiting))


def _raw_peer(server, role, identity):
    """A plain socket that joined as ``identity`` (loopback, no TLS)."""
    import socket
    from ipkernel.datachannel import frames
    sock = socket.create_connection(("127.0.0.1", server.ports[role]), timeout=10)
    token = server.new_token(role, identity)
    sock.sendall(frames.header(frames.AUTH, body_length=32) + token)
    assert frames.read_header(sock)[0] == frames.AUTH
    return sock


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("server", [False], indirect=True, ids=["plain"])  # the splice path
async def test_a_client_gone_mid_fetch_leaves_the_engines_stream_in_step(server, peers):
    from twisted.internet import threads
    from ipkernel.datachannel import frames
    engine = _raw_peer(server, "engine", ("engine", 0))
    leaving = await peers("client", ("client", "leaves"))
    first = new_blob_id()
    size = 8 << 20
    engine.sendall(frames.header(frames.PUT, first, size, {"to": "controller"}) + b"a" * 1000)
    leaving.fetch(first, 10).addErrback(lambda f: None)  # asks while the blob arrives...
    await within(threads.deferToThread(_wait_fetcher, server, first))
    leaving.close()  # ...and goes away before it is all there
    await within(threads.deferToThread(engine.sendall, b"a" * (size - 1000)))
    second = new_blob_id()
    engine.sendall(frames.header(frames.PUT, second, 5, {"to": "controller"}) + b"hello")
    staying = await peers("client", ("client", "stays"))
    assert bytes(await within(staying.fetch(second, 10))) == b"hello"
    engine.close()


def _wait_fetcher(server, blob_id, seconds=10):
    """Block until a FETCH waits on ``blob_id`` (data threads, not the reactor)."""
    with server.results.cv:
        if not server.results.cv.wait_for(lambda: blob_id in server.results._fetched, seconds):
            raise AssertionError("no FETCH came")


class _Recorder:
    """A TCP relay on loopback that keeps a copy of what a peer sends through it."""

    def __init__(self, port):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = port
        self.sent = bytearray()   # what the peer sent toward the server
        self.socks = [self.listener]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        try:
            inner, _ = self.listener.accept()
        except OSError:
            return
        outer = socket.create_connection(("127.0.0.1", self.target), timeout=10)
        outer.settimeout(None)
        self.socks += [inner, outer]
        for src, dst, keep in ((inner, outer, self.sent), (outer, inner, None)):
            pump = threading.Thread(target=self._pump, args=(src, dst, keep), daemon=True)
            pump.start()
            self.threads.append(pump)

    @staticmethod
    def _pump(src, dst, keep):
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if keep is not None:
                    keep += data
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        for sock in self.socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on it
            except OSError:
                pass
            sock.close()
        for thread in self.threads:
            thread.join(10)


@pytest_twisted.ensureDeferred
async def test_what_a_tls_peer_sends_is_encrypted_on_the_wire(server, peers, certs):
    recorder = _Recorder(server.ports["client"])
    try:
        engine = await peers("engine", ("engine", 0))
        token = server.new_token("client", ("client", "recorded"))
        client = DataChannelPeer("127.0.0.1", recorder.port, token, certs["client"][1],
                                 server.tls_always)
        await within(client.connect())
        try:
            blob_id = new_blob_id()
            data = b"plain-text-marker:" * (1 << 16)  # about 1 MB
            await within(client.send_blob_later(blob_id, [0], [data]))
            assert bytes(await within(engine.store.wait(blob_id, 10))) == data
        finally:
            client.close()
        assert len(recorder.sent) > len(data)  # it all went through the recorder
        seen = bytes(recorder.sent)
        if server.tls_always:
            assert b"plain-text-marker:" not in seen and token not in seen
        else:  # the check can tell: on plain loopback the bytes are there
            assert b"plain-text-marker:" * 4 in seen and token in seen
    finally:
        recorder.close()


@pytest_twisted.ensureDeferred
async def test_a_big_blob_from_a_client_on_this_host_is_read_from_its_memory(server, peers):
    np = pytest.importorskip("numpy")
    engines = [await peers("engine", ("engine", i)) for i in range(2)]
    client = await peers("client", ("client", "s1"))
    array = np.arange(3 << 20, dtype=np.uint8) * 7   # over memread.MEMORY_MIN
    small = b"x" * 1000
    for to in ([1], "all"):
        blob_id = new_blob_id()
        await within(client.send_blob_later(blob_id, to, [small, array.data, small]))
        want = small + array.tobytes() + small
        for k in ((1,) if to == [1] else (0, 1)):
            assert bytes(await within(engines[k].store.wait(blob_id, 10))) == want
    lent = 2 * (len(want))
    # On loopback (plain) the controller read it from this process; over TLS it never offers.
    assert client.bytes_lent == (0 if server.tls_always else lent)
    assert client.bytes_sent == lent
    await within(client.send_blob_later(new_blob_id(), [0], [b"small"]))
    assert client.bytes_lent == (0 if server.tls_always else lent)   # small: on the socket


@pytest_twisted.async_yield_fixture
async def plain_pair(certs, request):
    """A plain server (keyword arguments from ``request.param``) and a
    ``connect(role, identity)`` for it; all closed afterwards."""
    srv = DataChannelServer({role: pem for role, (pem, _) in certs.items()},
                            **getattr(request, "param", {}))
    srv.start()
    made = []

    async def connect(role, identity):
        peer = DataChannelPeer("127.0.0.1", srv.ports[role], srv.new_token(role, identity),
                               certs[role][1])
        made.append(peer)
        return await within(peer.connect())

    yield connect
    for peer in made:
        peer.close()
    srv.stop()


@pytest_twisted.ensureDeferred
async def test_a_client_whose_memory_cannot_be_read_sends_the_bytes(plain_pair):
    engine = await plain_pair("engine", ("engine", 0))
    client = await plain_pair("client", ("client", "s1"))
    assert client._proof is not None
    client._proof[0] ^= 1          # the controller finds another proof at that address
    data = bytes(range(256)) * (3 << 12)
    blob_id = new_blob_id()
    await within(client.send_blob_later(blob_id, [0], [data]))
    assert bytes(await within(engine.store.wait(blob_id, 10))) == data
    assert client.bytes_lent == 0 and client.bytes_sent == len(data)
    assert client._proof is None   # and it no longer asks
    other = new_blob_id()
    await within(client.send_blob_later(other, [0], [data]))
    assert bytes(await within(engine.store.wait(other, 10))) == data
    # The controller no longer reads it either: asking again breaks the protocol.
    client._proof = bytearray(memread.PROOF_SIZE)
    with pytest.raises(ConnectionError):
        await within(client.send_blob_later(new_blob_id(), [0], [data]))


@pytest.mark.parametrize("plain_pair", [{"memory_reads": False}], indirect=True)
@pytest_twisted.ensureDeferred
async def test_a_controller_without_memory_reads_offers_none(plain_pair):
    engine = await plain_pair("engine", ("engine", 0))
    client = await plain_pair("client", ("client", "s1"))
    assert client._proof is None
    data = bytes(range(256)) * (3 << 12)
    blob_id = new_blob_id()
    await within(client.send_blob_later(blob_id, [0], [data]))
    assert bytes(await within(engine.store.wait(blob_id, 10))) == data
    assert client.bytes_lent == 0
