"""Tier 2: lanes over TLS on 127.0.0.1, forced as ``ipcontroller --lane-tls``
forces them (``LaneServer(cert_file=..., tls_always=True)``).

A call works over TLS (stdlib ``ssl`` under Twisted on both ends,
:mod:`ipkernel.transport.memtls`, and on the blocking lane's socket); a certificate of another tub than the FURL's is refused by the
joining side before its token is sent; a peer without the token gets
nothing, over TLS or plain; frames over the cap are still refused; a peer
that never says HELLO is still dropped.
"""
import ssl
import struct

import pytest
import pytest_twisted
from foolscap.api import RemoteException, Violation
from twisted.internet import defer, endpoints, reactor, threads
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory
from twisted.logger import formatEvent, globalLogPublisher

from ipkernel.lane import LaneServer, connect_lane, join_lane
from ipkernel.lane import protocol as lane_protocol
from ipkernel.lane.blocking import BlockingLane
from ipkernel.transport import tls
from ipkernel.transport.memtls import TLSLayer

from awaiting import raises, within
from lanehelpers import Probe, Raw, RILaneProbe, cert_file, frame, lost_event

pytestmark = pytest.mark.tier2


@pytest.fixture(autouse=True)
def fresh_refusals(monkeypatch):
    monkeypatch.setattr(lane_protocol, "REFUSALS", lane_protocol._Refusals())


@pytest.fixture
def log_lines():
    lines = []

    def observe(event):
        lines.append(formatEvent(event))
    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


class TLSLanes:
    def __init__(self, server, tubid):
        self.server, self.tubid = server, tubid
        self.joined = []   # the accepting side of each lane that joined
        self.clients = []

    def offer(self, served=None):
        def on_join(lane):
            self.joined.append(lane)
            return served
        return self.server.offer(on_join)

    async def join(self, served, tubid=None):
        port, token, tls_always, _ = self.offer(served)
        assert tls_always is True
        client = await within(connect_lane(port, token, remote_interface=RILaneProbe,
                                           tls_always=tls_always, tubid=tubid or self.tubid))
        self.clients.append(client)
        return client


@pytest_twisted.async_yield_fixture
async def tls_lanes(tmp_path):
    path, tubid = cert_file(tmp_path, "controller.pem")
    server = LaneServer(cert_file=path, tls_always=True, max_frame=2 << 20)
    server.start()
    made = TLSLanes(server, tubid)
    yield made
    for client in made.clients:
        client.close()
    await within(server.stop())


@pytest_twisted.async_yield_fixture
async def raw_peer():
    """``connect(port, encrypt=False)``: a Raw frame speaker, over TLS or plain TCP."""
    made = []

    async def connect(port, encrypt=False):
        raw = Raw()
        factory = Factory.forProtocol(
            lambda: TLSLayer(tls.stdlib_client_context(), False, raw) if encrypt else raw)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        await within(endpoint.connect(factory))
        made.append(raw)
        return raw
    yield connect
    for raw in made:
        if not raw.lost.called:
            raw.transport.abortConnection()
    await within(defer.DeferredList([raw.lost for raw in made]))


@pytest_twisted.ensureDeferred
async def test_a_call_works_over_a_tls_lane(tls_lanes):
    probe = Probe()
    client = await tls_lanes.join(probe)
    assert await within(client.callRemote("add", 2, 3)) == 5
    big = bytes(range(256)) * 4000   # 1 MB: many TLS records each way
    assert await within(client.callRemote("echo", big)) == big
    (served,) = tls_lanes.joined
    assert client.encrypted and served.encrypted
    assert probe.calls == ["add", "echo"] and served.calls_in == 2 and client.answers_in == 2


@pytest_twisted.ensureDeferred
async def test_either_side_may_call_over_tls(tls_lanes):
    client_side = Probe()
    port, token, _, _ = tls_lanes.offer(Probe())
    client = await within(connect_lane(port, token, local=client_side,
                                       remote_interface=RILaneProbe, tls_always=True,
                                       tubid=tls_lanes.tubid))
    tls_lanes.clients.append(client)
    (served,) = tls_lanes.joined
    served.remote_interface = RILaneProbe
    assert await within(served.callRemote("add", 40, 2)) == 42
    assert client_side.calls == ["add"]


@pytest_twisted.ensureDeferred
async def test_closing_a_tls_lane_ends_it_on_both_sides(tls_lanes):
    probe = Probe()
    client = await tls_lanes.join(probe)
    (served,) = tls_lanes.joined
    waiting = client.callRemote("later", "k")
    await probe.wait_calls(1)
    gone_here, gone_there = lost_event(client), lost_event(served)
    client.close()   # close_notify, then the TCP close
    await gone_here
    await gone_there
    await raises(ConnectionLost, waiting)
    assert not client.joined and not served.joined


@pytest_twisted.ensureDeferred
async def test_a_certificate_of_another_tub_is_refused_before_the_token_is_sent(
        tls_lanes, tmp_path, log_lines):
    _, other_tubid = cert_file(tmp_path, "other.pem")
    port, token, _, _ = tls_lanes.offer(Probe())
    err = await raises(tls.WrongCertificate, connect_lane(
        port, token, remote_interface=RILaneProbe, tls_always=True, tubid=other_tubid))
    assert other_tubid in str(err) and tls_lanes.tubid in str(err)
    assert any("refusing a lane" in line and other_tubid in line for line in log_lines)
    assert tls_lanes.joined == []
    # the token never left this side: it still opens the lane
    client = await within(connect_lane(port, token, remote_interface=RILaneProbe,
                                       tls_always=True, tubid=tls_lanes.tubid))
    tls_lanes.clients.append(client)
    assert len(tls_lanes.joined) == 1


class FoolscapPeer:
    """The bits of a RemoteReference join_lane uses: where it reached, and
    its disconnect hooks."""

    def __init__(self):
        self.hooks = []

    def getPeer(self):
        return IPv4Address("TCP", "127.0.0.1", 1)

    def notifyOnDisconnect(self, hook):
        self.hooks.append(hook)


@pytest_twisted.ensureDeferred
async def test_join_lane_falls_back_to_foolscap_with_its_log_line(tls_lanes, tmp_path,
                                                                  log_lines):
    _, other_tubid = cert_file(tmp_path, "other.pem")
    rref = FoolscapPeer()
    offer = tls_lanes.offer(Probe())
    assert await within(join_lane(rref, offer, remote_interface=RILaneProbe,
                                  tubid=other_tubid)) is None
    assert any("could not join the controller's lane at 127.0.0.1:" in line and "(TLS: " in line
               and "calls go through Foolscap (slower)" in line for line in log_lines)
    assert tls_lanes.joined == [] and rref.hooks == []
    # with the FURL's tub id the same offer joins, and closes with the connection
    lane = await within(join_lane(rref, offer, remote_interface=RILaneProbe,
                                  tubid=tls_lanes.tubid))
    assert lane.encrypted and len(tls_lanes.joined) == 1
    gone = lost_event(lane)
    rref.hooks[0]()
    await gone


@pytest_twisted.ensureDeferred
async def test_a_tls_lane_is_never_joined_without_a_tubid_to_check(tls_lanes):
    port, token, _, _ = tls_lanes.offer(Probe())
    await raises(tls.WrongCertificate, connect_lane(port, token, tls_always=True, tubid=None))
    assert tls_lanes.joined == []


@pytest_twisted.ensureDeferred
async def test_a_tls_peer_without_the_token_gets_nothing(tls_lanes, raw_peer):
    probe = Probe()
    tls_lanes.offer(probe)
    call = frame(lane_protocol.CALL, 1, b'{"t":["add",{"t":[1,2]},{"d":[]}]}')
    raw = await raw_peer(tls_lanes.server.port, encrypt=True)
    raw.transport.write(call)   # a call before any HELLO
    await within(raw.lost)
    wrong = await raw_peer(tls_lanes.server.port, encrypt=True)
    wrong.transport.write(frame(lane_protocol.HELLO, 0, b"null", [b"\x00" * 32]) + call)
    await within(wrong.lost)
    assert raw.frames == [] and wrong.frames == [] and raw.buffer == wrong.buffer == b""
    assert probe.calls == [] and tls_lanes.joined == []


@pytest_twisted.ensureDeferred
async def test_plain_tcp_to_a_tls_lane_port_gets_nothing_even_with_the_token(
        tls_lanes, raw_peer, log_lines):
    probe = Probe()
    port, token, _, _ = tls_lanes.offer(probe)
    raw = await raw_peer(port)
    raw.transport.write(frame(lane_protocol.HELLO, 0, b"null", [token]))
    await within(raw.lost)
    assert raw.frames == [] and tls_lanes.joined == [] and probe.calls == []
    assert any("refused a lane connection: its TLS handshake failed" in line
               for line in log_lines)


@pytest_twisted.ensureDeferred
async def test_an_over_cap_frame_is_refused_over_tls(tls_lanes):
    probe = Probe()
    client = await tls_lanes.join(probe)
    gone = lost_event(client)
    assert await within(client.callRemote("echo", b"x" * 1000)) == b"x" * 1000
    err = await raises(RemoteException, client.callRemote("echo", b"x" * (3 << 20)))
    assert err.args[0].check(Violation)
    assert "too large for this lane" in str(err.args[0].value)
    assert "at most 2097152" in str(err.args[0].value)
    await gone
    assert probe.calls == ["echo"]


@pytest_twisted.ensureDeferred
async def test_a_huge_frame_header_over_tls_is_refused_before_its_body(tls_lanes, raw_peer):
    probe = Probe()
    port, token, _, _ = tls_lanes.offer(probe)
    raw = await raw_peer(port, encrypt=True)
    raw.transport.write(frame(lane_protocol.HELLO, 0, b"null", [token]))
    assert (await raw.next_frame())[0] == lane_protocol.WELCOME
    raw.transport.write(struct.pack("<QBIII", 2 ** 34 - 1, lane_protocol.CALL, 9, 10, 0)
                        + b"\0" * 100_000)
    kind, call_id, text, _ = await raw.next_frame()
    assert (kind, call_id) == (lane_protocol.FAIL, 9) and b"too large" in text
    await within(raw.lost)
    assert probe.calls == []


@pytest_twisted.ensureDeferred
async def test_a_tls_peer_that_never_says_hello_is_dropped(tls_lanes, raw_peer, monkeypatch,
                                                            log_lines):
    monkeypatch.setattr(lane_protocol, "HELLO_TIMEOUT", 0.2)
    tls_lanes.offer(Probe())
    raw = await raw_peer(tls_lanes.server.port, encrypt=True)
    await within(raw.lost)
    assert raw.frames == [] and tls_lanes.joined == []
    assert any("refused a lane connection: no HELLO in time" in line for line in log_lines)


@pytest_twisted.ensureDeferred
async def test_the_blocking_lane_calls_over_stdlib_tls(tls_lanes):
    probe = Probe()
    port, token, _, _ = tls_lanes.offer(probe)

    def in_a_thread():
        lane = BlockingLane.join(port, token, RILaneProbe, 5, tls_always=True,
                                 tubid=tls_lanes.tubid)
        try:
            encrypted = isinstance(lane._sock, ssl.SSLSocket)
            return encrypted, lane.call("add", (4, 5), {}, timeout=5), lane.calls
        finally:
            lane.close()
    encrypted, answer, calls = await within(threads.deferToThread(in_a_thread))
    assert encrypted and answer == 9 and calls == 1
    assert probe.calls == ["add"] and tls_lanes.joined[0].encrypted


@pytest_twisted.ensureDeferred
async def test_the_blocking_lane_refuses_another_tubs_certificate(tls_lanes, tmp_path):
    _, other_tubid = cert_file(tmp_path, "other.pem")
    port, token, _, _ = tls_lanes.offer(Probe())

    def in_a_thread():
        with pytest.raises(tls.WrongCertificate) as info:
            BlockingLane.join(port, token, RILaneProbe, 5, tls_always=True, tubid=other_tubid)
        return str(info.value)
    message = await within(threads.deferToThread(in_a_thread))
    assert other_tubid in message and "nothing was sent" in message
    assert tls_lanes.joined == []


def test_forced_tls_needs_a_certificate():
    with pytest.raises(ValueError, match="cert_file"):
        LaneServer(tls_always=True)


@pytest_twisted.ensureDeferred
async def test_a_dual_stack_lane_port_takes_ipv4_and_ipv6_loopback_peers_in_plain_tcp(tmp_path):
    # ipcontroller --engine-ip :: listens for lanes on '::' too: an IPv4 peer
    # shows up as ::ffff:127.0.0.1 there, and is on loopback all the same
    path, tubid = cert_file(tmp_path, "controller.pem")
    server = LaneServer(cert_file=path)
    server.start(interface="::")
    joined = []
    try:
        for host in ("127.0.0.1", "::1"):
            probe = Probe()
            port, token, tls_always, _ = server.offer(lambda lane: joined.append(lane) or probe)
            client = await within(connect_lane(port, token, remote_interface=RILaneProbe,
                                               host=host, tls_always=tls_always, tubid=tubid))
            try:
                assert await within(client.callRemote("add", 1, 1)) == 2
                assert not client.encrypted and not joined[-1].encrypted
            finally:
                client.close()
        assert len(joined) == 2
    finally:
        await within(server.stop())
