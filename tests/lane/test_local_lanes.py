"""Tier 2: lanes on the controller's abstract Unix socket (``LaneServer.start(local=True)``).

A peer that reached the lane port on loopback joins on the Unix socket the
offer names, with the same one-time token; both ends then run on it and
calls work as on TCP (the reactor's and the blocking lane's).  An offer
whose socket cannot be reached falls back to loopback TCP with that token;
a socket does not let anyone in without a token; forced TLS offers no
socket; stopping the server closes it.  (How offers of every age are read:
tests/transport/test_tls.py.)
"""
import socket

import pytest
import pytest_twisted
from foolscap.api import Violation
from twisted.internet import threads

from ipkernel.lane import LaneServer
from ipkernel.lane import protocol as lane_protocol
from ipkernel.lane import server as lane_server
from ipkernel.lane.blocking import BlockingLane

from awaiting import raises, within
from lanehelpers import Probe, RILaneProbe, cert_file, frame, started_lanes

pytestmark = pytest.mark.tier2

needs_linux = pytest.mark.skipif(not lane_server.local_sockets_usable(),
                                 reason="abstract Unix sockets are Linux's")


@pytest.fixture(autouse=True)
def fresh_refusals(monkeypatch):
    monkeypatch.setattr(lane_protocol, "REFUSALS", lane_protocol._Refusals())


@pytest_twisted.async_yield_fixture
async def local_lanes():
    async for made in started_lanes(local=True):
        yield made


def connect_abstract(name):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(lane_server.local_address(name))
    return sock


@needs_linux
def test_the_offer_names_an_abstract_socket(local_lanes):
    port, token, tls_always, path = local_lanes.server.offer(lambda lane: Probe())
    assert port == local_lanes.server.port and len(token) == 32 and tls_always is False
    assert path.startswith("@ipkernel-lane-") and path == local_lanes.server.local_path
    # another server has another name
    other = LaneServer()
    other.start(local=True)
    try:
        assert other.local_path.startswith("@ipkernel-lane-") and other.local_path != path
    finally:
        other.stop()
    # without local=True there is none
    plain = LaneServer()
    plain.start()
    try:
        assert plain.offer(lambda lane: None)[3] == ""
    finally:
        plain.stop()


@needs_linux
@pytest_twisted.ensureDeferred
async def test_a_call_runs_on_the_unix_socket(local_lanes):
    probe = Probe()
    client, served = await local_lanes.join(probe)
    assert client.on_local_socket and served.on_local_socket
    assert not client.encrypted
    assert await within(client.callRemote("add", 2, 40)) == 42
    big = b"\x01" * (3 * 1024 * 1024)  # many reads of the socket
    assert await within(client.callRemote("echo", big)) == big
    assert probe.calls == ["add", "echo"]


@needs_linux
@pytest_twisted.ensureDeferred
async def test_an_unreachable_socket_falls_back_to_loopback_tcp(local_lanes):
    probe = Probe()
    client, served = await local_lanes.join(probe,
                                            local_path="@ipkernel-lane-nobody-listens-here")
    assert not client.on_local_socket and not served.on_local_socket
    assert await within(client.callRemote("add", 1, 1)) == 2  # (the one token joined once)


@needs_linux
@pytest_twisted.ensureDeferred
async def test_the_socket_lets_nobody_in_without_a_token(local_lanes):
    probe, joined = Probe(), []
    _, _, _, path = local_lanes.server.offer(lambda lane: joined.append(lane) or probe)

    def knock():
        sock = connect_abstract(path)
        try:
            sock.sendall(frame(lane_protocol.HELLO, 0, b"null", [b"\x00" * 32]))
            return sock.recv(100)  # b"": closed without a WELCOME
        finally:
            sock.close()
    assert await within(threads.deferToThread(knock)) == b""
    assert joined == [] and probe.calls == []


@needs_linux
@pytest_twisted.ensureDeferred
async def test_a_blocking_lane_runs_on_the_unix_socket(local_lanes):
    probe, joined = Probe(), []

    def on_join(lane):
        joined.append(lane)
        return probe
    port, token, _, path = local_lanes.server.offer(on_join)
    port2, token2, _, _ = local_lanes.server.offer(on_join)

    def in_a_thread():
        outcomes = []
        for lane_port, lane_token, lane_path in ((port, token, path),
                                                 (port2, token2, "@ipkernel-lane-nobody")):
            lane = BlockingLane.join(lane_port, lane_token, RILaneProbe, 5, local_path=lane_path)
            try:
                outcomes.append((lane._sock.family, lane.call("add", (4, 5), {}, timeout=5)))
            finally:
                lane.close()
        return outcomes
    outcomes = await within(threads.deferToThread(in_a_thread))
    assert outcomes == [(socket.AF_UNIX, 9), (socket.AF_INET, 9)]
    assert [lane.on_local_socket for lane in joined] == [True, False]


@needs_linux
@pytest_twisted.ensureDeferred
async def test_checks_and_faults_are_the_same_on_the_socket(local_lanes):
    client, _ = await local_lanes.join(Probe())
    await raises(Violation, client.callRemote("add", "not", "numbers"))
    assert await within(client.callRemote("add", 3, 4)) == 7  # the lane stays open


@needs_linux
def test_forced_tls_offers_no_socket(tmp_path):
    path, _ = cert_file(tmp_path, "lane.pem")
    server = LaneServer(cert_file=path, tls_always=True)
    server.start(local=True)
    try:
        assert server.local_path == "" and server.offer(lambda lane: None)[3] == ""
    finally:
        server.stop()


@needs_linux
@pytest_twisted.ensureDeferred
async def test_stopping_the_server_closes_the_socket():
    server = LaneServer()
    server.start(local=True)
    path = server.local_path
    connect_abstract(path).close()  # listening
    await within(server.stop())
    assert server.local_path == ""
    with pytest.raises(ConnectionRefusedError):
        connect_abstract(path)

