"""Tier 2: lanes on real sockets on 127.0.0.1 (``LaneServer``, ``connect_lane``,
``LaneProtocol``, and a Link over it), with a small Referenceable test double.

Calls and answers, argument checks both ways, remote faults, tokens, the
HELLO deadline, frame limits, connection loss, and large payloads split
across many TCP reads.  Nothing sleeps to synchronise: every wait is for an
event, bounded in time.
"""
import gc
import random
import struct

import pytest
import pytest_twisted
from foolscap.api import RemoteException, Violation
from twisted.internet import defer, endpoints, error as net_error, reactor
from twisted.internet.protocol import Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.internet.testing import StringTransport

from ipkernel.error import PayloadTooLarge
from ipkernel.lane import LaneProtocol, LaneServer, connect_lane
from ipkernel.lane import protocol as lane_protocol
from ipkernel.lane import server as lane_server
from ipkernel.serialize import Serialized
from ipkernel.transport.link import Link

from awaiting import raises, within
from lanehelpers import UNWRITABLE, Probe, Raw, RILaneProbe, frame, lost_event, started_lanes

pytestmark = pytest.mark.tier2


@pytest.fixture(autouse=True)
def fresh_refusals(monkeypatch):
    """Each test logs its first refused lane (the limit is per process)."""
    monkeypatch.setattr(lane_protocol, "REFUSALS", lane_protocol._Refusals())


@pytest_twisted.async_yield_fixture
async def lanes():
    async for made in started_lanes():
        yield made


@pytest_twisted.async_yield_fixture
async def raw_client():
    """``connect(port) -> Raw``; every raw connection is closed afterwards."""
    made = []

    async def connect(port):
        raw = Raw()
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        await within(endpoints.connectProtocol(endpoint, raw))
        made.append(raw)
        return raw

    yield connect
    for raw in made:
        if raw.transport is not None and not raw.lost.called:
            raw.transport.abortConnection()


# -- calls and answers ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_calls_and_answers(lanes):
    probe = Probe()
    client, _ = await lanes.join(probe)
    assert await within(client.callRemote("add", 2, 40)) == 42
    assert await within(client.callRemote("add", a=1, b=-3)) == -2
    value = {"k": (1, [True, None]), 3: b"\x00bytes", (1, 2): 2.5}
    out = await within(client.callRemote("echo", value))
    assert out == value and type(out["k"]) is tuple and type(out[3]) is bytes
    assert probe.calls == ["add", "add", "echo"]


@pytest_twisted.ensureDeferred
async def test_serialized_values_cross_as_serialized(lanes):
    client, _ = await lanes.join(Probe())
    out = await within(client.callRemote("echo", Serialized([b"a", b"bc"], "pickle", {"m": 1})))
    assert type(out) is Serialized
    assert [bytes(f) for f in out.frames] == [b"a", b"bc"]
    assert (out.type_descriptor, out.metadata) == ("pickle", {"m": 1})


@pytest_twisted.ensureDeferred
async def test_deferred_results_answer_when_they_fire_in_any_order(lanes):
    probe = Probe()
    client, _ = await lanes.join(probe)
    first = client.callRemote("later", "first")
    second = client.callRemote("later", "second")
    await probe.wait_calls(2)
    assert not first.called and not second.called
    probe.pending["second"].callback("two")
    assert await within(second) == "two"
    assert not first.called
    probe.pending["first"].callback(("one", 1))
    assert await within(first) == ("one", 1)


@pytest_twisted.ensureDeferred
async def test_calls_run_in_the_order_made(lanes):
    probe = Probe()
    client, _ = await lanes.join(probe)
    answers = [client.callRemote("record", n) for n in range(500)]
    results = await within(defer.gatherResults(answers))
    assert probe.seen == list(range(500))
    assert results == list(range(1, 501))


@pytest_twisted.ensureDeferred
async def test_either_side_may_call(lanes):
    on_client = Probe()
    client, server_side = await lanes.join(Probe(), client_local=on_client)
    server_side.remote_interface = RILaneProbe
    assert await within(server_side.callRemote("add", 5, 6)) == 11
    assert await within(client.callRemote("add", 1, 1)) == 2
    assert on_client.calls == ["add"]


# -- argument checks and faults ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_wrong_argument_is_refused_locally_with_a_violation(lanes):
    probe = Probe()
    client, _ = await lanes.join(probe)
    await raises(Violation, client.callRemote("add", "two", 2))
    await raises(Violation, client.callRemote("add", 1, 2, 3))
    await raises(Violation, client.callRemote("add", 1, c=2))
    await raises(Violation, client.callRemote("fail", 5))
    with pytest.raises(Violation, match="does not offer"):
        await within(client.callRemote("no_such_method"))
    # none of that was sent; the lane still works
    assert await within(client.callRemote("add", 1, 2)) == 3
    assert probe.calls == ["add"]


@pytest_twisted.ensureDeferred
async def test_the_callee_refuses_a_wrong_argument_with_a_remote_violation(lanes):
    probe = Probe()
    client, _ = await lanes.join(probe, remote_interface=None)  # no outbound check
    for args in [("two", 2), (1, 2, 3), (1.5, 2)]:
        err = await raises(RemoteException, client.callRemote("add", *args))
        inner = err.args[0]
        assert inner.check(Violation), inner
    assert probe.calls == []
    assert await within(client.callRemote("add", 1, 2)) == 3


@pytest_twisted.ensureDeferred
async def test_an_unknown_method_is_refused_by_the_callee(lanes):
    probe = Probe()
    client, _ = await lanes.join(probe, remote_interface=None)
    err = await raises(RemoteException, client.callRemote("no_such_method", 1))
    assert err.args[0].check(Violation)
    assert "no_such_method" in err.args[0].getErrorMessage()
    assert probe.calls == []


@pytest_twisted.ensureDeferred
async def test_a_raising_method_gives_a_remote_exception_naming_it(lanes):
    client, _ = await lanes.join(Probe())
    err = await raises(RemoteException, client.callRemote("fail", "fault marker é"))
    inner = err.args[0]
    assert inner.type.__name__ == "ProbeFault"
    assert inner.getErrorMessage() == "fault marker é"
    assert not inner.check(Violation)
    assert await within(client.callRemote("add", 1, 2)) == 3  # the lane carries on


@pytest_twisted.ensureDeferred
async def test_a_result_against_the_interface_is_refused_by_its_sender(lanes):
    client, _ = await lanes.join(Probe())
    err = await raises(RemoteException, client.callRemote("wrong_result"))
    assert err.args[0].check(Violation)  # checked before answering, as Foolscap does
    assert await within(client.callRemote("add", 2, 2)) == 4


@pytest_twisted.ensureDeferred
async def test_an_attach_hook_that_raises_refuses_the_lane(lanes):
    def broken(lane):
        raise RuntimeError("cannot attach")
    port, token, _, _ = lanes.server.offer(broken)
    with pytest.raises(net_error.ConnectionLost):
        await within(connect_lane(port, token, remote_interface=RILaneProbe))


@pytest_twisted.ensureDeferred
async def test_a_lane_with_no_local_object_refuses_calls(lanes):
    client, server_side = await lanes.join(Probe())  # the client side serves nothing
    err = await raises(RemoteException, server_side.callRemote("echo", 1))
    assert err.args[0].check(Violation)
    assert "takes no calls" in err.args[0].getErrorMessage()
    # and the server side of a lane whose on_join returned None refuses too
    client2, _ = await lanes.join(None)
    err = await raises(RemoteException, client2.callRemote("echo", 1))
    assert err.args[0].check(Violation)
    assert client2.joined and client.joined


@pytest_twisted.ensureDeferred
async def test_a_result_the_codec_cannot_carry_fails_instead_of_hanging(lanes):
    client, _ = await lanes.join(Probe())
    err = await raises(RemoteException, client.callRemote("unsendable"))
    assert err.args[0].type.__name__ == "CodecError"
    assert "object" in err.args[0].getErrorMessage()
    assert await within(client.callRemote("echo", "still fine")) == "still fine"


@pytest.mark.parametrize("which", sorted(UNWRITABLE))
@pytest_twisted.ensureDeferred
async def test_a_result_whose_json_text_cannot_be_written_fails_instead_of_hanging(lanes,
                                                                                   which):
    client, _ = await lanes.join(Probe())
    err = await raises(RemoteException, client.callRemote("unwritable", which), 5)
    assert err.args[0].type.__name__ == "CodecError"
    assert await within(client.callRemote("add", 1, 2)) == 3


@pytest_twisted.ensureDeferred
async def test_an_argument_the_codec_cannot_carry_fails_locally(lanes):
    probe = Probe()
    client, _ = await lanes.join(probe)
    err = await raises(Exception, client.callRemote("echo", {1, 2}))
    assert type(err).__name__ == "CodecError"
    assert probe.calls == []


@pytest_twisted.ensureDeferred
async def test_a_call_on_a_closed_lane_fails_with_connection_lost(lanes):
    client, _ = await lanes.join(Probe())
    gone = lost_event(client)
    client.close()
    await gone
    assert not client.joined and not client.connected
    await raises(net_error.ConnectionLost, client.callRemote("add", 1, 2))


# -- tokens and joining -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_wrong_token_is_refused_and_the_connection_closed(lanes):
    port, _, _, _ = lanes.server.offer(lambda lane: Probe())
    await raises(net_error.ConnectionLost, connect_lane(port, b"\x00" * 32))
    await raises(net_error.ConnectionLost, connect_lane(port, b"short"))


@pytest_twisted.ensureDeferred
async def test_a_wrong_token_is_refused_on_the_wire(lanes, raw_client):
    raw = await raw_client(lanes.server.port)
    raw.transport.write(frame(lane_protocol.HELLO, 0, b"null", [b"\x01" * 32]))
    await within(raw.lost)
    assert raw.frames == [] and raw.buffer == b""  # no WELCOME


@pytest_twisted.ensureDeferred
async def test_the_right_token_gets_a_welcome_on_the_wire(lanes, raw_client):
    port, token, _, _ = lanes.server.offer(lambda lane: Probe())
    raw = await raw_client(port)
    raw.transport.write(frame(lane_protocol.HELLO, 0, b"null", [token]))
    kind, _, _, _ = await raw.next_frame()
    assert kind == lane_protocol.WELCOME
    raw.transport.write(frame(lane_protocol.CALL, 7, b'{"t":["add",{"t":[20,22]},{"d":[]}]}'))
    kind, call_id, text, _ = await raw.next_frame()
    assert (kind, call_id, text) == (lane_protocol.ANSWER, 7, b"42")


@pytest_twisted.ensureDeferred
async def test_a_token_works_only_once(lanes):
    port, token, _, _ = lanes.server.offer(lambda lane: Probe())
    first = await within(connect_lane(port, token, remote_interface=RILaneProbe))
    lanes.clients.append(first)
    await raises(net_error.ConnectionLost, connect_lane(port, token))
    assert await within(first.callRemote("add", 1, 2)) == 3  # the first lane is unharmed


@pytest_twisted.ensureDeferred
async def test_an_expired_token_is_refused(lanes, monkeypatch):
    monkeypatch.setattr(lane_server, "TOKEN_TTL", -1.0)
    port, token, _, _ = lanes.server.offer(lambda lane: Probe())
    await raises(net_error.ConnectionLost, connect_lane(port, token))


@pytest_twisted.ensureDeferred
async def test_a_token_expires_with_the_clock(lanes, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(lane_server.time, "monotonic", lambda: now[0])
    port, token, _, _ = lanes.server.offer(lambda lane: Probe())
    port, fresh, _, _ = lanes.server.offer(lambda lane: Probe())
    now[0] += lane_server.TOKEN_TTL - 1
    lane = await within(connect_lane(port, fresh))
    lanes.clients.append(lane)
    now[0] += 2
    await raises(net_error.ConnectionLost, connect_lane(port, token))


@pytest_twisted.ensureDeferred
async def test_a_connection_that_never_says_hello_is_closed(lanes, raw_client, monkeypatch):
    monkeypatch.setattr(lane_protocol, "HELLO_TIMEOUT", 0.05)
    raw = await raw_client(lanes.server.port)
    await within(raw.lost, 5)
    assert raw.reason.check(net_error.ConnectionDone, net_error.ConnectionLost)
    assert raw.frames == []


@pytest_twisted.ensureDeferred
async def test_a_joined_lane_has_no_hello_deadline_left(lanes, monkeypatch):
    monkeypatch.setattr(lane_protocol, "HELLO_TIMEOUT", 0.05)
    client, server_side = await lanes.join(Probe())
    assert server_side._hello_timer is None
    assert not [dc for dc in reactor.getDelayedCalls()
                if dc.active() and getattr(dc.func, "__self__", None) is server_side]
    assert await within(client.callRemote("add", 1, 2)) == 3


@pytest_twisted.ensureDeferred
async def test_an_oversize_frame_closes_a_joined_lane(raw_client):
    server = LaneServer(max_frame=4096)
    server.start()
    try:
        probe = Probe()
        port, token, _, _ = server.offer(lambda lane: probe)
        client = await within(connect_lane(port, token, remote_interface=RILaneProbe))
        gone = lost_event(client)
        assert await within(client.callRemote("echo", b"x" * 1000)) == b"x" * 1000
        call = client.callRemote("echo", b"x" * 5000)
        # refused as too large (a remote Violation naming the limit), then closed
        err = await raises(RemoteException, call)
        assert err.args[0].check(Violation)
        assert "too large for this lane: 5060 bytes, at most 4096" in str(err.args[0].value)
        await gone
        assert probe.calls == ["echo"]
    finally:
        await within(server.stop())


@pytest_twisted.ensureDeferred
async def test_a_huge_frame_header_is_refused_before_its_body(raw_client):
    # issue 13: a CALL header announcing 2**34-1 bytes made the controller
    # buffer whatever followed.  The header alone gets the FAIL and the close.
    server = LaneServer(max_frame=lane_protocol.LANE_MAX_FRAME)
    server.start()
    try:
        probe = Probe()
        port, token, _, _ = server.offer(lambda lane: probe)
        raw = await raw_client(port)
        raw.transport.write(frame(lane_protocol.HELLO, 0, b"null", [token]))
        assert (await raw.next_frame())[0] == lane_protocol.WELCOME
        head = struct.pack("<QBIII", 2 ** 34 - 1, lane_protocol.CALL, 7, 10, 0)
        raw.transport.write(head[:10])  # the call id arrives later: it is waited for
        raw.transport.write(head[10:] + b"\0" * 100_000)
        kind, call_id, text, _ = await raw.next_frame()
        assert (kind, call_id) == (lane_protocol.FAIL, 7)
        assert b"too large" in text
        await within(raw.lost)
        assert probe.calls == []
        (accepted,) = server._lanes or [None]
        assert accepted is None  # the refused lane is gone from the server
    finally:
        await within(server.stop())


@pytest_twisted.ensureDeferred
async def test_a_lane_offer_can_set_its_own_frame_limit(lanes):
    port, token, _, _ = lanes.server.offer(lambda lane: Probe(), max_frame=2048)
    client = await within(connect_lane(port, token, remote_interface=RILaneProbe))
    lanes.clients.append(client)
    assert await within(client.callRemote("echo", b"y" * 1000)) == b"y" * 1000
    await raises(RemoteException, client.callRemote("echo", b"y" * 3000))


@pytest_twisted.ensureDeferred
async def test_a_call_over_the_send_limit_is_not_sent_and_the_lane_stays(lanes):
    probe = Probe()
    client, _ = await lanes.join(probe)
    client.send_limit = 1000
    err = await raises(lane_protocol.FrameTooLarge, client.callRemote("echo", b"z" * 2000))
    assert "more than a lane carries (1000)" in str(err)
    assert client.joined and probe.calls == []
    assert await within(client.callRemote("echo", b"z" * 10)) == b"z" * 10
    assert lane_protocol.LaneProtocol().send_limit == lane_protocol.LANE_MAX_FRAME


@pytest_twisted.ensureDeferred
async def test_frame_lengths_that_do_not_add_up_close_the_lane(lanes, raw_client):
    port, token, _, _ = lanes.server.offer(lambda lane: Probe())
    raw = await raw_client(port)
    raw.transport.write(frame(lane_protocol.HELLO, 0, b"null", [token]))
    assert (await raw.next_frame())[0] == lane_protocol.WELCOME
    good = frame(lane_protocol.CALL, 1, b"null")
    bad = struct.pack("<Q", len(good) - 8 + 3) + good[8:] + b"xyz"  # 3 bytes too many
    raw.transport.write(bad)
    await within(raw.lost)


@pytest_twisted.ensureDeferred
async def test_an_answer_to_no_call_closes_the_lane(lanes, raw_client):
    port, token, _, _ = lanes.server.offer(lambda lane: Probe())
    raw = await raw_client(port)
    raw.transport.write(frame(lane_protocol.HELLO, 0, b"null", [token]))
    assert (await raw.next_frame())[0] == lane_protocol.WELCOME
    raw.transport.write(frame(lane_protocol.ANSWER, 99, b"1"))
    await within(raw.lost)


@pytest_twisted.ensureDeferred
async def test_a_malformed_call_is_answered_with_a_failure(lanes, raw_client):
    probe = Probe()
    port, token, _, _ = lanes.server.offer(lambda lane: probe)
    raw = await raw_client(port)
    raw.transport.write(frame(lane_protocol.HELLO, 0, b"null", [token]))
    assert (await raw.next_frame())[0] == lane_protocol.WELCOME
    for call_id, text in [(1, b"{not json"), (2, b'["add",[1,2],{}]'), (3, b'{"b":5}'),
                          (4, b'{"t":[1,{"t":[]},{"d":[]}]}')]:
        raw.transport.write(frame(lane_protocol.CALL, call_id, text))
        kind, got_id, _, _ = await raw.next_frame()
        assert (kind, got_id) == (lane_protocol.FAIL, call_id)
    assert probe.calls == [] and not raw.lost.called


@pytest.fixture
def accepted(lanes):
    """The LaneProtocols the test's server makes for incoming connections, in order."""
    made = []
    build = lanes.server._protocol

    def recording():
        protocol = build()
        made.append(protocol)
        return protocol
    lanes.server._protocol = recording
    return made


def timers_of(protocols):
    """Active delayed calls (the HELLO timer) bound to ``protocols``."""
    return [dc for dc in reactor.getDelayedCalls()
            if dc.active() and getattr(dc.func, "__self__", None) in protocols]


async def closed_early(raw, accepted, data):
    """Send ``data`` before any HELLO; return the accepting side once both ends closed."""
    (server_side,) = accepted
    gone = lost_event(server_side)
    raw.transport.write(data)
    await within(raw.lost)
    await gone
    return server_side


@pytest_twisted.ensureDeferred
async def test_a_first_frame_that_is_not_hello_closes_the_connection_and_its_timer(
        lanes, raw_client, accepted):
    raw = await raw_client(lanes.server.port)
    server_side = await closed_early(
        raw, accepted, frame(lane_protocol.CALL, 1, b'{"t":["add",{"t":[1,2]},{"d":[]}]}'))
    assert raw.frames == [] and not server_side.joined
    assert timers_of([server_side]) == []


@pytest_twisted.ensureDeferred
async def test_an_oversize_frame_before_hello_closes_the_connection_and_its_timer(
        lanes, raw_client, accepted):
    raw = await raw_client(lanes.server.port)
    server_side = await closed_early(raw, accepted,
                                     struct.pack("<Q", lane_protocol.MAX_HELLO + 1))
    assert raw.frames == [] and not server_side.joined
    assert timers_of([server_side]) == []


@pytest_twisted.ensureDeferred
async def test_a_refused_connection_logs_no_unhandled_error(lanes, raw_client, accepted):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        raw = await raw_client(lanes.server.port)
        await closed_early(raw, accepted,
                           frame(lane_protocol.HELLO, 0, b"null", [b"\x01" * 32]))
        accepted.clear()
        for _ in range(3):  # a Deferred reports an unhandled failure when collected
            gc.collect()
            await defer.succeed(None)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [e for e in events if e.get("log_namespace") == "ipkernel.lane.protocol"]  # it ran
    unhandled = [formatEvent(e) for e in events
                 if "Unhandled error in Deferred" in str(e.get("log_format"))]
    assert unhandled == []


# -- connection loss and stopping ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_connection_loss_fails_waiting_calls_and_runs_the_hooks(lanes):
    probe = Probe()
    client, server_side = await lanes.join(probe)
    hooks = []
    client.notifyOnDisconnect(lambda: hooks.append("first"))
    client.notifyOnDisconnect(lambda: 1 / 0)  # a raising hook does not stop the others
    client.notifyOnDisconnect(lambda: hooks.append("second"))
    client_gone = lost_event(client)  # the last hook: the others ran before it
    server_gone = lost_event(server_side)
    waiting = [client.callRemote("later", "a"), client.callRemote("later", "b")]
    await probe.wait_calls(2)
    server_side.transport.loseConnection()
    for d in waiting:
        err = await raises(net_error.ConnectionLost, d)
        assert "the lane closed" in str(err)
    await client_gone
    await server_gone
    assert hooks == ["first", "second"]
    assert not client.joined
    probe.pending["a"].callback("too late")  # answering a closed lane is harmless


@pytest_twisted.ensureDeferred
async def test_stopping_the_server_closes_connections_that_have_not_said_hello(
        lanes, raw_client, accepted):
    raw = await raw_client(lanes.server.port)
    (server_side,) = accepted
    await within(lanes.server.stop())
    await within(raw.lost)
    assert not server_side.connected
    assert timers_of([server_side]) == []


@pytest_twisted.ensureDeferred
async def test_connect_lane_fails_when_nobody_listens():
    server = LaneServer()
    port = server.start()
    await within(server.stop())
    await raises(net_error.ConnectError, connect_lane(port, b"t" * 32, timeout=5))


@pytest_twisted.ensureDeferred
async def test_stopping_the_server_closes_its_lanes(lanes):
    first, _ = await lanes.join(Probe())
    second, _ = await lanes.join(Probe())
    gone = [lost_event(first), lost_event(second)]
    waiting = first.callRemote("later", "x")
    port = lanes.server.port
    await within(lanes.server.stop())
    await within(defer.gatherResults(gone))
    await raises(net_error.ConnectionLost, waiting)
    assert not first.connected and not second.connected
    await raises(net_error.ConnectError, connect_lane(port, b"t" * 32, timeout=5))


# -- large payloads and framing -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_large_payloads_arrive_intact_across_many_reads(lanes):
    client, server_side = await lanes.join(Probe())
    reads = []
    original = server_side.dataReceived

    def counting(data):
        reads.append(len(data))
        return original(data)
    server_side.dataReceived = counting
    rng = random.Random(7)
    frames = [rng.randbytes(3 << 20), b"", rng.randbytes(2 << 20 | 12345), rng.randbytes(1)]
    blob = rng.randbytes(1 << 20)
    value = {"s": Serialized(frames, "pickle", {"n": 4}), "b": blob, "t": ("tail", 1)}
    out = await within(client.callRemote("echo", value), 30)
    assert [bytes(f) for f in out["s"].frames] == frames
    assert out["b"] == blob and out["t"] == ("tail", 1)
    assert len(reads) > 10, reads
    assert sum(reads) > sum(map(len, frames)) + len(blob)


@pytest_twisted.ensureDeferred
async def test_frames_split_at_every_byte_are_reassembled():
    # Two ends joined through in-memory transports; the bytes go one at a time.
    probe = Probe()
    server_side = LaneProtocol(on_hello=lambda lane, token: token == b"tok")
    server_side.local = probe
    client = LaneProtocol(remote_interface=RILaneProbe, token=b"tok")
    to_server, to_client = StringTransport(), StringTransport()
    server_side.makeConnection(to_client)
    client.makeConnection(to_server)

    def pump():
        for src, dst in ((to_server, server_side), (to_client, client)):
            data = src.value()
            src.clear()
            for i in range(len(data)):
                dst.dataReceived(data[i:i + 1])
    try:
        pump()
        pump()
        assert client.joined and server_side.joined
        calls = [client.callRemote("echo", [n, b"\x00" * n, (n,)]) for n in range(5)]
        pump()
        pump()
        assert [d.result for d in calls] == [[n, b"\x00" * n, (n,)] for n in range(5)]
        assert probe.calls == ["echo"] * 5
    finally:
        server_side.connectionLost(None)
        client.connectionLost(None)


# -- a Link over a lane ------------------------------------------------------------------


class FakeRref:
    """Stands for a Foolscap RemoteReference."""

    def __init__(self):
        self.calls = []

    def callRemote(self, method, *args, **kwargs):
        self.calls.append((method, args, kwargs))
        return defer.succeed(("via foolscap", method))

    def getPeer(self):
        return "the peer"


@pytest_twisted.ensureDeferred
async def test_a_link_uses_the_lane_while_joined(lanes):
    probe = Probe()
    client, _ = await lanes.join(probe)
    rref = FakeRref()
    reference = Link(rref, client, foolscap_only=("add",))
    assert await within(reference.callRemote("echo", "on the lane")) == "on the lane"
    assert await within(reference.callRemote("add", 1, 2)) == ("via foolscap", "add")
    assert probe.calls == ["echo"]
    assert rref.calls == [("add", (1, 2), {})]
    assert reference.getPeer() == "the peer"  # everything else is the reference's


@pytest_twisted.ensureDeferred
async def test_a_link_goes_through_foolscap_without_a_lane(lanes):
    rref = FakeRref()
    reference = Link(rref)
    assert await within(reference.callRemote("echo", 1)) == ("via foolscap", "echo")
    # a lane that closed from the other side is no longer used
    probe = Probe()
    client, server_side = await lanes.join(probe)
    reference.lane = client
    gone = lost_event(client)
    server_side.transport.loseConnection()
    await gone
    assert await within(reference.callRemote("echo", 2)) == ("via foolscap", "echo")
    assert probe.calls == []
    assert [c[0] for c in rref.calls] == ["echo", "echo"]


@pytest_twisted.ensureDeferred
async def test_a_link_sends_a_call_too_large_for_the_lane_through_foolscap(lanes):
    probe = Probe()
    client, _ = await lanes.join(probe)
    client.send_limit = 1000
    rref = FakeRref()
    reference = Link(rref, client)
    assert await within(reference.callRemote("echo", b"b" * 5000)) == ("via foolscap", "echo")
    assert await within(reference.callRemote("echo", b"s")) == b"s"
    assert probe.calls == ["echo"] and [c[0] for c in rref.calls] == ["echo"]


@pytest_twisted.ensureDeferred
async def test_a_link_close_lane_falls_back_to_foolscap(lanes):
    probe = Probe()
    client, _ = await lanes.join(probe)
    rref = FakeRref()
    reference = Link(rref, client)
    assert await within(reference.callRemote("add", 1, 1)) == 2
    gone = lost_event(client)
    reference.close_lane()
    await gone
    assert reference.lane is None and not client.connected
    assert await within(reference.callRemote("add", 1, 1)) == ("via foolscap", "add")
    reference.close_lane()  # twice is harmless
    assert probe.calls == ["add"]


class Silent(Protocol):
    """Accepts a connection and never answers."""

    def __init__(self):
        self.closed = defer.Deferred()

    def connectionLost(self, reason):
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_joining_a_port_that_never_welcomes_times_out_and_closes():
    from twisted.internet.protocol import Factory
    accepted = []

    def build():
        protocol = Silent()
        accepted.append(protocol)
        return protocol
    listener = reactor.listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")
    try:
        port = listener.getHost().port
        with pytest.raises((defer.TimeoutError, defer.CancelledError)):
            await within(connect_lane(port, b"t" * 32, timeout=0.2), 5)
        assert len(accepted) == 1
        await within(accepted[0].closed)  # the joining side closed its connection
    finally:
        await within(listener.stopListening())


@pytest_twisted.ensureDeferred
async def test_a_frame_cut_short_is_dropped_when_the_lane_closes(lanes, raw_client,
                                                                monkeypatch):
    freed = []
    monkeypatch.setattr(lane_protocol.memtrim, "freed", freed.append)
    joined = []
    port, token, _, _ = lanes.server.offer(lambda lane: joined.append(lane) or Probe())
    raw = await raw_client(port)
    raw.transport.write(frame(lane_protocol.HELLO, 0, b"null", [token]))
    assert (await raw.next_frame())[0] == lane_protocol.WELCOME
    (lane,) = joined
    body = frame(lane_protocol.CALL, 1, b"null", [b"q" * 300_000])
    gone = lost_event(lane)
    raw.transport.write(body[:200_000])   # most of a frame the lane may take, then a close
    raw.transport.loseConnection()
    await gone
    assert lane._chunks == [] and lane._have == 0
    assert freed and freed[-1] > 0


def test_refused_lanes_are_logged_at_most_once_a_minute_with_a_count():
    now = [1000.0]
    refusals = lane_protocol._Refusals(every=60.0, clock=lambda: now[0])
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        for _ in range(5):
            refusals.note("a lane token was refused")
        now[0] += 61
        refusals.note("no HELLO in time")
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) for e in events if e.get("log_namespace") == "ipkernel.lane.protocol"]
    assert lines == ["refused a lane connection: a lane token was refused",
                     "refused a lane connection: no HELLO in time (4 more refused in the last "
                     "60 s, not logged)"]


@pytest_twisted.ensureDeferred
async def test_connections_waiting_for_hello_are_bounded_the_oldest_closed(lanes, raw_client,
                                                                         monkeypatch):
    monkeypatch.setattr(lane_server, "MAX_WAITING", 3)
    idle = [await raw_client(lanes.server.port) for _ in range(3)]
    newest = await raw_client(lanes.server.port)
    await within(idle[0].lost)          # the oldest waiting one made room
    assert not any(r.lost.called for r in idle[1:]) and not newest.lost.called
    # a peer with a token still joins, and a joined lane is not counted as waiting
    probe = Probe()
    client, _ = await lanes.join(probe)
    assert await within(client.callRemote("add", 2, 3)) == 5
    assert len(lanes.server._waiting) <= 3


@pytest_twisted.ensureDeferred
async def test_an_answer_over_the_limit_fails_its_call_and_the_lane_goes_on(lanes):
    # an engine's answer bigger than the controller's cap must not cost the
    # engine its lane: the call fails with PayloadTooLarge, the body is read past
    probe = Probe()
    client, _ = await lanes.join(probe)
    client.max_frame = 50_000
    big = b"a" * 300_000                      # several TCP reads: skipped across them
    err = await raises(PayloadTooLarge, client.callRemote("echo", big))
    assert "the answer is too large for this lane" in str(err) and "at most 50000" in str(err)
    assert client.joined   # failed on the header: the body is still coming, and read past
    assert await within(client.callRemote("echo", b"small")) == b"small"
    assert client._skip == 0 and client._chunks == []
    assert await within(client.callRemote("add", 20, 22)) == 42
    assert probe.calls == ["echo", "echo", "add"]
