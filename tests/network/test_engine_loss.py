"""Tier 2: engines that go away -- connection lost, killed, shut down."""
import pytest
import pytest_twisted
from twisted.internet import defer

from ipkernel import fcutil
from ipkernel.error import EngineError, InvalidEngineID, NoEnginesRegistered

from awaiting import composite, within

pytestmark = pytest.mark.tier2


def unregistered(controller, engine_id):
    """Deferred firing once ``engine_id`` has been unregistered."""
    if engine_id not in controller.engines:
        return defer.succeed(None)
    d = defer.Deferred()

    def gone(which):
        if which == engine_id and not d.called:
            controller.on_unregister_engine_do_not(gone)
            d.callback(None)
    controller.on_unregister_engine_do(gone, True)
    return d


@pytest_twisted.ensureDeferred
async def test_engine_tub_stopped_mid_command(make_fc_cluster, gates):
    cluster = await make_fc_cluster(2)
    client, controller = cluster.client, cluster.controller
    gate = gates.new()
    running = client.execute(gate.code, targets=1)
    waiting = client.execute("after = 1", targets=1)
    waiting_id = await within(client.push({"b": 2}, targets=[0, 1], block=False))
    await gate.wait_arrivals(1)

    gone = unregistered(controller, 1)
    await cluster.engine_tubs[1].stopService()
    await within(gone)

    for d in (running, waiting, client.get_pending_deferred(waiting_id)):
        err = await composite(d)
        assert EngineError in [type(e) for e in err.exceptions]
        assert any("engine 1" in str(e) for e in err.exceptions)
    assert await within(client.get_ids()) == [0]
    # the other engine carries on; the lost one is an invalid target now
    assert await within(client.pull("b", targets=0)) == [2]
    with pytest.raises(Exception) as info:
        await within(client.execute("a = 1", targets=1))
    assert type(info.value).__name__ == "InvalidEngineID"


@pytest_twisted.ensureDeferred
async def test_engine_lost_while_idle_is_unregistered(make_fc_cluster):
    cluster = await make_fc_cluster(3)
    gone = unregistered(cluster.controller, 0)
    await cluster.engine_tubs[0].stopService()
    await within(gone)
    assert await within(cluster.client.get_ids()) == [1, 2]
    assert await within(cluster.client.pull("id")) == [1, 2]


@pytest_twisted.ensureDeferred
async def test_kill_with_controller_over_the_wire(make_fc_cluster):
    hook_calls = []
    cluster = await make_fc_cluster(2, shutdown_hook=lambda: hook_calls.append("down"))
    client = cluster.client
    await within(client.execute("a = 1"))
    assert await within(client.kill(controller=True, targets=[1])) is None
    assert hook_calls == ["down"]
    assert all(service.killed for service in cluster.services)
    # killed engines are unregistered at once (issue 13: kill goes around the queue)
    assert await within(client.get_ids()) == []
    with pytest.raises(NoEnginesRegistered):
        await within(client.execute("a = 2"))


@pytest_twisted.ensureDeferred
async def test_kill_some_engines_over_the_wire(make_fc_cluster):
    cluster = await make_fc_cluster(3)
    client = cluster.client
    assert await within(client.kill(targets=[1])) == [None]
    assert [service.killed for service in cluster.services] == [False, True, False]
    assert await within(client.pull("id", targets=[0, 2])) == [0, 2]
    assert await within(client.get_ids()) == [0, 2]
    with pytest.raises(InvalidEngineID):
        await within(client.pull("id", targets=1))


@pytest_twisted.ensureDeferred
async def test_controller_tub_stopped_fails_the_client_with_controller_error(make_fc_cluster,
                                                                              gates):
    cluster = await make_fc_cluster(1)
    client = cluster.client
    gate = gates.new()
    running = client.execute(gate.code)
    await gate.wait_arrivals(1)
    await cluster.tub.stopService()
    with pytest.raises(Exception) as info:
        await within(running)
    assert type(info.value).__name__ == "ControllerError"
    # the controller is named without the FURL's secret part
    assert fcutil.redacted_furl(cluster.mec_furl) in str(info.value)
    assert cluster.mec_furl.rsplit("/", 1)[1] not in str(info.value)
    with pytest.raises(Exception) as info:
        await within(client.get_ids())
    assert type(info.value).__name__ == "ControllerError"


@pytest_twisted.ensureDeferred
async def test_properties_given_at_registration_are_mirrored(make_fc_cluster, make_engine):
    cluster = await make_fc_cluster(0)
    service = make_engine()
    service.properties.update({"gpu": True, "memory_gb": 64})
    engine_id = await cluster.add_engine(service)
    queued = cluster.controller.engines[engine_id]
    assert queued.properties == {"gpu": True, "memory_gb": 64}

    client = cluster.client
    await within(client.set_properties({"role": "worker"}))
    await within(client.del_properties(("memory_gb",)))
    assert queued.properties == {"gpu": True, "role": "worker"}
    # changes made by engine code show up once the properties are fetched
    await within(client.execute("from ipkernel.engine import get_engine\n"
                                "get_engine(id).properties['busy'] = False"))
    assert await within(client.get_properties(("busy",))) == [{"busy": False}]
    assert "busy" not in queued.properties
    everything = await within(queued.get_properties())
    assert everything == queued.properties == {"gpu": True, "role": "worker", "busy": False}
    await within(client.reset())
    assert queued.properties == {}
