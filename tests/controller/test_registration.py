"""Tier 1: an engine counts as registered only once its channels are joined
(issue 13: engines showed in get_ids before they had joined their data
channel, and large pushes made right then failed or hung).

The registrar is driven with stand-ins for the engine's RemoteReference and
the data channel server; the controller is the real ControllerService.
"""
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.logger import globalLogPublisher

from ipkernel.controller import ControllerService
from ipkernel.controller import fc as controller_fc
from ipkernel.controller.fc import FCEngineRegistrar

from awaiting import within

pytestmark = pytest.mark.tier1


class FakeEngineRref:
    """An engine's RemoteReference as the registrar sees it."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.calls = []
        self.on_disconnect = []

    def getPeer(self):
        return type("Peer", (), {"host": self.host, "port": 4000})()

    def notifyOnDisconnect(self, f, *args):
        self.on_disconnect.append((f, args))

    def callRemote(self, method, *args):
        self.calls.append(method)
        return defer.succeed(None)

    def disconnect(self):
        for f, args in self.on_disconnect:
            f(*args)


class FakeDataServer:
    def offer(self, role, identity):
        return (5000, b"t" * 32, False)

    def answered(self, engine_id, blob_ids):
        pass


def registered_event(controller):
    d = defer.Deferred()
    controller.on_register_engine_do(lambda i: d.called or d.callback(i), True)
    return d


def test_an_engine_offered_a_data_channel_counts_once_it_joined_it():
    controller = ControllerService()
    registrar = FCEngineRegistrar(controller, data_server=FakeDataServer())
    try:
        reply = registrar.remote_register_engine(FakeEngineRref(), None, 11, {})
        assert reply["id"] == 0 and reply["data"][0] == 5000
        assert controller.engines == {}            # not in get_ids, not a target of 'all'
        # a second engine meanwhile gets another id
        other = registrar.remote_register_engine(FakeEngineRref(), 0, 12, {})
        assert other["id"] == 1
        registrar.remote_channels_joined(0)
        assert sorted(controller.engines) == [0]
        assert controller.engine_info(0)["pid"] == 11
        registrar.remote_channels_joined(0)        # twice changes nothing
        registrar.remote_channels_joined(7)        # an unknown id neither
        assert sorted(controller.engines) == [0]
    finally:
        for _, (_, _, _, _, timer) in registrar._pending.items():
            timer.cancel()


def test_an_engine_offered_no_channel_counts_at_once():
    controller = ControllerService()
    registrar = FCEngineRegistrar(controller)
    reply = registrar.remote_register_engine(FakeEngineRref(), None, 11, {})
    assert sorted(reply) == ["id", "output"] and reply["id"] == 0   # no data, no lane
    assert sorted(controller.engines) == [0] and not registrar._pending


def test_an_engine_gone_before_it_joined_gives_its_id_back():
    controller = ControllerService()
    registrar = FCEngineRegistrar(controller, data_server=FakeDataServer())
    rref = FakeEngineRref()
    assert registrar.remote_register_engine(rref, None, 11, {})["id"] == 0
    (timer,) = [p[4] for p in registrar._pending.values()]
    rref.disconnect()
    assert not registrar._pending and not timer.active()
    assert controller.engines == {}
    registrar.remote_channels_joined(0)   # too late: nothing is counted
    assert controller.engines == {}
    assert registrar.remote_register_engine(FakeEngineRref(), None, 13, {})["id"] == 0
    for p in registrar._pending.values():
        p[4].cancel()


@pytest_twisted.ensureDeferred
async def test_an_engine_that_never_says_it_joined_counts_after_a_bounded_wait(monkeypatch):
    monkeypatch.setattr(controller_fc, "CHANNELS_WAIT", 0.05)
    controller = ControllerService()
    registrar = FCEngineRegistrar(controller, data_server=FakeDataServer())
    logged = []
    observer = logged.append
    globalLogPublisher.addObserver(observer)
    try:
        counted = registered_event(controller)
        registrar.remote_register_engine(FakeEngineRref(), None, 11, {})
        assert await within(counted) == 0
    finally:
        globalLogPublisher.removeObserver(observer)
    assert sorted(controller.engines) == [0] and not registrar._pending
    assert any("did not say it joined its data channel and lane within 0.05 s"
               in str(e.get("log_format", "")).format(**e) for e in logged if "id" in e)
