"""Tier 2: lanes in an in-process cluster (``make_fc_cluster(n, lane=True)``,
or ``lane="tls"`` for TLS on loopback too).

The client's calls to the controller and the controller's calls to each
engine really go on lanes (not through Foolscap); results and errors are
the same as without lanes; a client whose lane closes carries on through
Foolscap; an engine whose lane closes is unregistered (its command in
flight fails with EngineError) and registers again with a new lane; task
clients join lanes too.
"""
import pytest
import pytest_twisted
from twisted.internet import defer

from ipkernel import asyncclient, fcutil
from ipkernel.error import CompositeError, ControllerError, EngineError, InvalidEngineID
from ipkernel.interfaces.remote import RITaskController
from ipkernel.interfaces.task import ITaskController
from ipkernel.lane import LaneProtocol
from ipkernel.task import StringTask

from awaiting import composite, raises, within

pytestmark = pytest.mark.tier2


@pytest.fixture
def lane_calls(monkeypatch):
    """``[(lane, method)]`` of every LaneProtocol.callRemote made in the test."""
    calls = []
    original = LaneProtocol.callRemote

    def counting(self, method, *args, **kwargs):
        calls.append((self, method))
        return original(self, method, *args, **kwargs)
    monkeypatch.setattr(LaneProtocol, "callRemote", counting)
    return calls


def record_foolscap_calls(monkeypatch, rref):
    """Record the methods called through the Foolscap RemoteReference ``rref``."""
    methods = []
    original = rref.callRemote

    def recording(method, *args, **kwargs):
        methods.append(method)
        return original(method, *args, **kwargs)
    monkeypatch.setattr(rref, "callRemote", recording)
    return methods


def engine_reference(cluster, engine_id):
    """The controller's Link to engine ``engine_id``."""
    return cluster.controller.engines[engine_id].engine.rref


def lane_lost(lane):
    d = defer.Deferred()
    lane.notifyOnDisconnect(lambda: d.callback(None))
    return within(d)


def unregistered(controller, engine_id):
    """Deferred (bounded) firing once ``engine_id`` is unregistered."""
    d = defer.Deferred()

    def gone(which):
        if which == engine_id and not d.called:
            d.callback(None)
    controller.on_unregister_engine_do(gone, True)
    return within(d).addBoth(lambda r: (controller.on_unregister_engine_do_not(gone), r)[1])


@pytest_twisted.ensureDeferred
async def test_the_client_and_every_engine_join_lanes(make_fc_cluster):
    cluster = await make_fc_cluster(2, lane=True)
    client_lane = cluster.client.remote.lane
    assert isinstance(client_lane, LaneProtocol) and client_lane.joined
    for engine_id, connector in enumerate(cluster.connectors):
        assert connector.lane is not None and connector.lane.joined
        controller_side = engine_reference(cluster, engine_id).lane
        assert isinstance(controller_side, LaneProtocol) and controller_side.joined
        assert controller_side.remote_interface.__remote_name__ == "RIEngine.v1.ipkernel"
    assert len({id(engine_reference(cluster, i).lane) for i in (0, 1)}) == 2


@pytest_twisted.ensureDeferred
async def test_client_and_engine_calls_go_on_lanes_not_foolscap(make_fc_cluster, lane_calls,
                                                               monkeypatch):
    cluster = await make_fc_cluster(2, lane=True)
    client = cluster.client
    client_foolscap = record_foolscap_calls(monkeypatch, client.remote.rref)
    engine_foolscap = [record_foolscap_calls(monkeypatch, engine_reference(cluster, i).rref)
                       for i in (0, 1)]
    engine_lanes = [engine_reference(cluster, i).lane for i in (0, 1)]

    await within(client.execute("a = 10 + id"))
    await within(client.push({"b": (1, "two")}, targets=[0, 1]))
    assert await within(client.pull(["a", "b"])) == [[10, (1, "two")], [11, (1, "two")]]
    assert await within(client.get_ids()) == [0, 1]

    client_methods = [m for lane, m in lane_calls if lane is client.remote.lane]
    assert client_methods == ["execute", "push", "pull", "get_ids"]
    for lane in engine_lanes:
        methods = [m for l, m in lane_calls if l is lane]
        assert "execute" in methods or "apply_batch" in methods, methods
        assert len(methods) >= 3, methods
    assert client_foolscap == []
    assert engine_foolscap == [[], []]


@pytest_twisted.ensureDeferred
async def test_with_forced_tls_lanes_every_call_goes_on_an_encrypted_lane(
        make_fc_cluster, lane_calls, monkeypatch):
    # lane="tls": the cluster's lane port runs TLS for loopback peers too, as
    # ipcontroller --lane-tls (and every peer on another host) does
    cluster = await make_fc_cluster(2, lane="tls")
    client = cluster.client
    client_foolscap = record_foolscap_calls(monkeypatch, client.remote.rref)
    engine_lanes = [engine_reference(cluster, i).lane for i in (0, 1)]
    assert client.remote.lane.encrypted
    assert all(lane.encrypted for lane in engine_lanes)
    assert all(connector.lane.encrypted for connector in cluster.connectors)

    await within(client.execute("a = 10 + id"))
    assert await within(client.pull("a")) == [10, 11]
    err = await composite(client.execute("1 / 0", targets=1))
    assert [type(e).__name__ for e in err.exceptions] == ["ZeroDivisionError"]
    client_methods = [m for lane, m in lane_calls if lane is client.remote.lane]
    assert client_methods == ["execute", "pull", "execute"]
    assert client_foolscap == []
    for connector in cluster.connectors:  # the engines' side: commands came on the lane
        assert connector.lane.calls_in >= 2


async def _outcomes(client):
    """What a client sees for a fixed series of calls: values and errors."""
    seen = []

    async def note(d):
        try:
            seen.append(("ok", await within(d)))
        except CompositeError as err:
            seen.append(("composite", [(type(e).__name__, str(e)) for e in err.exceptions]))
        except Exception as exc:
            seen.append(("error", type(exc).__name__, str(exc)))

    await note(client.execute("x = id * 3"))
    await note(client.push({"t": (1, [2.5, None], {"k": b"v"})}))
    await note(client.pull(["x", "t"]))
    await note(client.apply(lambda a, b=2: (a + b, id), (40,)))
    await note(client.execute("1 / 0"))
    await note(client.execute("raise KeyError('marker')", targets=1))
    await note(client.pull("never_defined", targets=0))
    await note(client.execute("a = 1", targets=7))
    await note(client.pull("x", targets=[0, 9]))
    await note(client.execute(b"a = 1"))
    await note(client.get_result("1"))
    await note(client.set_properties({"p": 1}))
    await note(client.get_properties(["p"]))
    await note(client.keys(targets=0))
    return seen


def _stable(outcome):
    """Execute results carry timestamps and the like: keep the comparable part."""
    if outcome[0] == "ok" and isinstance(outcome[1], list) and outcome[1] and \
            isinstance(outcome[1][0], dict) and "id" in outcome[1][0]:
        return ("ok", [{k: v for k, v in r.items() if k in ("id", "stdout", "stderr", "input")}
                       for r in outcome[1]])
    return outcome


@pytest_twisted.ensureDeferred
async def test_results_and_errors_are_the_same_as_without_lanes(make_fc_cluster, lane_calls):
    plain = await make_fc_cluster(2, lane=False)
    laned = await make_fc_cluster(2, lane=True)
    without = await _outcomes(plain.client)
    on_lanes = await _outcomes(laned.client)
    assert [_stable(o) for o in on_lanes] == [_stable(o) for o in without]
    assert any(lane is laned.client.remote.lane for lane, _ in lane_calls)
    # the series does hold the errors it is meant to compare
    kinds = [o[0] if o[0] != "error" else o[1] for o in on_lanes]
    assert kinds.count("composite") >= 3
    assert "InvalidEngineID" in kinds and "TypeError" in kinds
    composites = [o[1] for o in on_lanes if o[0] == "composite"]
    assert [name for name, _ in composites[0]] == ["ZeroDivisionError"] * 2
    assert composites[1][0][0] == "KeyError" and "marker" in composites[1][0][1]


@pytest_twisted.ensureDeferred
async def test_errors_keep_their_types_on_lanes(make_fc_cluster):
    client = (await make_fc_cluster(2, lane=True)).client
    err = await composite(client.execute("1 / 0"))
    assert [type(e) for e in err.exceptions] == [ZeroDivisionError] * 2
    await raises(InvalidEngineID, client.execute("a = 1", targets=5))
    with pytest.raises(TypeError, match="execute"):
        await within(client.execute(b"a = 1"))
    assert await within(client.pull("id")) == [0, 1]  # the lane is fine afterwards


@pytest_twisted.ensureDeferred
async def test_non_blocking_calls_and_pending_results_on_lanes(make_fc_cluster, lane_calls):
    client = (await make_fc_cluster(2, lane=True)).client
    ok_id = await within(client.execute("v = id + 100", block=False))
    pull_id = await within(client.pull("v", block=False))
    bad_id = await within(client.execute("1 / 0", targets=0, block=False))
    assert all(isinstance(i, str) for i in (ok_id, pull_id, bad_id))
    results = await within(client.get_pending_deferred(ok_id))
    assert [r["id"] for r in results] == [0, 1]
    assert await within(client.get_pending_deferred(pull_id)) == [100, 101]
    err = await composite(client.get_pending_deferred(bad_id))
    assert [type(e) for e in err.exceptions] == [ZeroDivisionError]
    methods = [m for lane, m in lane_calls if lane is client.remote.lane]
    assert methods.count("get_pending_deferred") == 3


@pytest_twisted.ensureDeferred
async def test_a_client_whose_lane_closed_keeps_working_through_foolscap(make_fc_cluster,
                                                                        lane_calls, monkeypatch):
    cluster = await make_fc_cluster(2, lane=True)
    client = cluster.client
    lane = client.remote.lane
    await within(client.execute("a = 5"))
    gone = lane_lost(lane)
    client.remote.close_lane()
    await gone
    assert client.remote.lane is None
    foolscap = record_foolscap_calls(monkeypatch, client.remote.rref)
    before = len(lane_calls)
    assert await within(client.pull("a")) == [5, 5]
    err = await composite(client.execute("1 / 0", targets=1))
    assert [type(e) for e in err.exceptions] == [ZeroDivisionError]
    assert await within(client.get_ids()) == [0, 1]
    assert foolscap == ["pull", "execute", "get_ids"]
    assert not any(l is lane for l, _ in lane_calls[before:])
    # the engines keep their own lanes
    assert all(engine_reference(cluster, i).lane.joined for i in (0, 1))


@pytest_twisted.ensureDeferred
async def test_an_engine_whose_lane_closes_is_unregistered_and_registers_again(
        make_fc_cluster, gates):
    cluster = await make_fc_cluster(2, lane=True)
    client, controller = cluster.client, cluster.controller
    connector = cluster.connectors[1]
    old_lane = connector.lane
    gate = gates.new()
    running = client.execute(gate.code, targets=1)
    await gate.wait_arrivals(1)

    back = defer.Deferred()
    connector.on_registered = lambda engine_id: back.called or back.callback(engine_id)
    gone = unregistered(controller, 1)
    old_lane.close()
    await gone
    # the command in flight fails with EngineError, it does not hang
    err = await composite(running)
    assert [type(e) for e in err.exceptions] == [EngineError]
    assert "engine 1" in str(err.exceptions[0])

    assert await within(back) == 1  # registered again, after joining a new lane
    gate.open()
    assert connector.lane is not None and connector.lane is not old_lane and connector.lane.joined
    assert engine_reference(cluster, 1).lane.joined
    assert await within(client.get_ids()) == [0, 1]
    await within(client.execute("after = id"))
    assert await within(client.pull("after")) == [0, 1]


@pytest_twisted.ensureDeferred
async def test_an_engine_whose_lane_transport_is_aborted_registers_again(make_fc_cluster):
    cluster = await make_fc_cluster(1, lane=True)
    connector = cluster.connectors[0]
    old_lane = connector.lane
    back = defer.Deferred()
    connector.on_registered = lambda engine_id: back.called or back.callback(engine_id)
    gone = unregistered(cluster.controller, 0)
    old_lane.transport.abortConnection()
    await gone
    assert await within(back) == 0
    assert connector.lane is not old_lane and connector.lane.joined
    assert await within(cluster.client.pull("id")) == [0]


@pytest_twisted.ensureDeferred
async def test_clusters_without_lanes_have_none(make_fc_cluster, lane_calls):
    cluster = await make_fc_cluster(2, lane=False)
    assert cluster.client.remote.lane is None
    assert all(connector.lane is None for connector in cluster.connectors)
    assert all(engine_reference(cluster, i).lane is None for i in (0, 1))
    await within(cluster.client.execute("a = 1"))
    assert await within(cluster.client.pull("a")) == [1, 1]
    assert lane_calls == []


@pytest_twisted.ensureDeferred
async def test_a_client_call_in_flight_when_its_lane_closes_fails_and_the_client_carries_on(
        make_fc_cluster, gates):
    cluster = await make_fc_cluster(1, lane=True)
    client = cluster.client
    gate = gates.new()
    running = client.execute(gate.code)
    await gate.wait_arrivals(1)
    gone = lane_lost(client.remote.lane)
    client.remote.close_lane()
    await gone
    err = await raises(ControllerError, running)
    assert "lost the connection to the controller" in str(err)
    gate.open()
    # the engine and the Foolscap connection are fine
    assert await within(client.get_ids()) == [0]
    await within(client.execute("b = 2"))
    assert await within(client.pull("b")) == [2]


@pytest_twisted.ensureDeferred
async def test_lanes_with_the_data_channel_carry_arrays_and_big_values(make_fc_cluster,
                                                                      lane_calls):
    np = pytest.importorskip("numpy")
    cluster = await make_fc_cluster(2, data_channel=True, lane=True)
    client = cluster.client
    assert client.data is not None and client.remote.lane.joined
    small = np.arange(12, dtype="<i4").reshape(3, 4)
    big = np.arange(1 << 19, dtype="<f8").reshape(2, -1)  # 4 MiB: on the data channel
    await within(client.push({"small": small, "big": big}), 30)
    pulled = await within(client.pull(["small", "big"], targets=1), 30)
    (got_small, got_big), = pulled
    assert got_small.shape == (3, 4) and got_small.dtype == small.dtype
    assert (got_small == small).all()
    assert got_big.shape == big.shape and (got_big == big).all()
    methods = [m for lane, m in lane_calls if lane is client.remote.lane]
    assert methods[:2] == ["push", "pull"]


@pytest_twisted.ensureDeferred
async def test_a_client_on_a_lane_with_an_engine_on_foolscap(make_fc_cluster, monkeypatch,
                                                            lane_calls):
    # The engine behaves as if on another host: it does not join its lane.
    from ipkernel.engine import connector as connector_module
    monkeypatch.setattr(connector_module, "lane_allowed", lambda host: False)
    cluster = await make_fc_cluster(1, lane=True)
    client = cluster.client
    assert client.remote.lane.joined
    assert cluster.connectors[0].lane is None and engine_reference(cluster, 0).lane is None
    value = {"t": (1, b"\x00bytes", [2.5, None]), "big": bytes(range(256)) * 4000}
    await within(client.push({"v": value}))
    assert await within(client.pull("v")) == [value]
    assert await within(client.apply(lambda x: x * 2, (21,))) == [42]
    err = await composite(client.execute("1 / 0"))
    assert [type(e) for e in err.exceptions] == [ZeroDivisionError]
    assert all(lane is client.remote.lane for lane, _ in lane_calls)
    assert [m for _, m in lane_calls] == ["push", "pull", "apply", "execute"]


@pytest_twisted.ensureDeferred
async def test_a_client_on_foolscap_with_engines_on_lanes(make_fc_cluster, monkeypatch,
                                                         lane_calls):
    # The client behaves as if on another host: it does not open a lane.
    monkeypatch.setattr(asyncclient, "lane_allowed", lambda host: False)
    cluster = await make_fc_cluster(2, lane=True)
    client = cluster.client
    assert client.remote.lane is None
    assert all(engine_reference(cluster, i).lane.joined for i in (0, 1))
    value = {"t": (1, b"\x00bytes", [2.5, None]), "big": bytes(range(256)) * 4000}
    await within(client.push({"v": value}))
    assert await within(client.pull("v")) == [value, value]
    err = await composite(client.execute("1 / 0", targets=1))
    assert [type(e) for e in err.exceptions] == [ZeroDivisionError]
    engine_lanes = {id(engine_reference(cluster, i).lane) for i in (0, 1)}
    assert lane_calls and all(id(lane) in engine_lanes for lane, _ in lane_calls)


@pytest_twisted.ensureDeferred
async def test_a_task_client_joins_a_lane_like_the_multiengine_client(make_fc_cluster,
                                                                     lane_calls):
    cluster = await make_fc_cluster(1, lane=True)
    assert cluster.client.remote.lane.joined  # the multi-engine client did join one
    tc = ITaskController(cluster.controller)
    try:
        tasks = RITaskController(tc)
        tasks.lane_server = cluster.lane_server  # as ipcontroller does
        furl = fcutil.register(cluster.tub, tasks)
        client = await within(asyncclient.get_task_client(furl, tub=cluster.client_tub,
                                                          timeout=10))
        reference = client.remote_reference
        try:
            assert reference.lane is not None and reference.lane.joined, \
                "the task client did not get a lane"
            task_id = await within(client.run(StringTask("a = 2 + 3", pull="a")))
            result = await within(client.get_task_result(task_id, block=True))
            assert result.ns.a == 5
            assert [m for lane, m in lane_calls if lane is reference.lane][:2] == \
                ["run", "get_task_result"]
        finally:
            reference.close_lane()
    finally:
        tc.stop()
