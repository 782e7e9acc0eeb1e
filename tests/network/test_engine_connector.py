"""Tier 2 (issue 13): what an engine's connector says and does when the
controller is unreachable, stale, stopped deliberately or lost."""
import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher

from ipkernel import fcutil
from ipkernel.controller import ControllerService
from ipkernel.controller.fc import FCEngineRegistrar, tell_engines_stopping
from ipkernel.engine import connector as connector_module
from ipkernel.engine.connector import EngineConnector, RegistrationTimeout, StaleFurl, where

pytestmark = pytest.mark.tier2

WAIT = 20


@pytest.fixture
def logged():
    """The text of every log event emitted during the test."""
    lines = []

    def observe(event):
        fmt = event.get("log_format")
        if fmt:
            try:
                lines.append(fmt.format(**event))
            except Exception:
                lines.append(fmt)
    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


async def controller(make_tub):
    service = ControllerService(save_ids=True)
    tub = make_tub()
    await fcutil.listen(tub, reactor)
    return service, tub, fcutil.register(tub, FCEngineRegistrar(service))


def gave_up():
    """``(callback, Deferred)``: the Deferred fires with (status, message)."""
    d = defer.Deferred()
    return (lambda status, message: d.callback((status, message))), d


def with_secret(furl, swissnum=None, tubid=None):
    head, _, secret = furl.rpartition("/")
    if tubid is not None:
        head = "pb://" + tubid + "@" + head.split("@", 1)[1]
    return f"{head}/{swissnum or secret}"


@pytest.mark.parametrize("wrong", ["swissnum", "tubid"])
@pytest_twisted.ensureDeferred
async def test_a_stale_furl_fails_the_first_registration_at_once(make_tub, make_engine, wrong):
    _, _, furl = await controller(make_tub)
    stale = with_secret(furl, swissnum="q" * 32) if wrong == "swissnum" else \
        with_secret(furl, tubid="c" * 32)
    connector = EngineConnector(make_tub(), make_engine(), stale, register_timeout=WAIT)
    try:
        with pytest.raises(StaleFurl) as info:
            await connector.start().addTimeout(WAIT / 2, reactor)
    finally:
        connector.stop()
    assert "is stale" in str(info.value) and where(furl) in str(info.value)
    assert "q" * 32 not in str(info.value) and furl.rpartition("/")[2] not in str(info.value)


@pytest_twisted.ensureDeferred
async def test_an_unreachable_controller_is_logged_at_once_then_given_up(make_tub, make_engine,
                                                                       logged):
    _, tub, furl = await controller(make_tub)
    await tub.stopService()   # nobody listens there any more
    connector = EngineConnector(make_tub(), make_engine(), furl, register_timeout=1)
    try:
        with pytest.raises(RegistrationTimeout) as info:
            await connector.start().addTimeout(WAIT, reactor)
    finally:
        connector.stop()
    first = [line for line in logged if "cannot reach the controller" in line]
    assert len(first) == 1 and "connection refused" in first[0]
    assert "retrying for up to 1 s" in first[0] and where(furl) in first[0]
    assert "connection refused" in str(info.value) and "within 1 s" in str(info.value)
    assert not any(furl.rpartition("/")[2] in line for line in logged)


@pytest_twisted.ensureDeferred
async def test_a_deliberate_stop_is_announced_and_the_engine_gives_up_with_0(make_tub,
                                                                            make_engine, logged):
    service, tub, furl = await controller(make_tub)
    on_gave_up, gave = gave_up()
    connector = EngineConnector(make_tub(), make_engine(), furl, stop_wait=0.5,
                                reconnect_timeout=WAIT, on_gave_up=on_gave_up)
    try:
        assert await connector.start().addTimeout(WAIT, reactor) == 0
        await tell_engines_stopping(service, reactor).addTimeout(WAIT, reactor)
        assert connector._stopping_notice
        await tub.stopService()
        status, message = await gave.addTimeout(WAIT, reactor)
    finally:
        connector.stop()
    assert status == 0 and "did not come back within 0.5 s" in message
    assert any("says it is shutting down" in line for line in logged)


@pytest_twisted.ensureDeferred
async def test_a_lost_controller_is_retried_then_given_up_with_1(make_tub, make_engine, logged,
                                                                monkeypatch):
    monkeypatch.setattr(connector_module, "STILL_TRYING_EVERY", 0.3)
    _, tub, furl = await controller(make_tub)
    on_gave_up, gave = gave_up()
    connector = EngineConnector(make_tub(), make_engine(), furl, reconnect_timeout=2,
                                on_gave_up=on_gave_up)
    try:
        await connector.start().addTimeout(WAIT, reactor)
        await tub.stopService()   # as a crash looks from the engine: no notice
        status, message = await gave.addTimeout(WAIT, reactor)
    finally:
        connector.stop()
    assert status == 1 and "could not reconnect" in message and "connection refused" in message
    assert any("without notice" in line and "for up to 2 s" in line for line in logged)
    again = [line for line in logged if line.startswith("reconnecting to the controller")]
    assert again and all("giving up in" in line for line in again)


@pytest_twisted.ensureDeferred
async def test_a_controller_address_that_never_answers_is_reported_early(make_tub, make_engine,
                                                                        logged, monkeypatch):
    # a port that accepts connections and then says nothing (a wedged or wrong service)
    from twisted.internet import protocol
    monkeypatch.setattr(connector_module, "SLOW_ATTEMPT", 0.3)
    connections = []

    class Silent(protocol.Protocol):
        def connectionMade(self):
            connections.append(self.transport)
    factory = protocol.Factory.forProtocol(Silent)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    _, _, furl = await controller(make_tub)
    head, _, secret = furl.rpartition("/")
    silent = f"{head.split('@', 1)[0]}@tcp:127.0.0.1:{port.getHost().port}/{secret}"
    connector = EngineConnector(make_tub(), make_engine(), silent, register_timeout=1)
    try:
        with pytest.raises(RegistrationTimeout):
            await connector.start().addTimeout(WAIT, reactor)
    finally:
        connector.stop()
        for transport in connections:
            transport.abortConnection()
        await port.stopListening()
    noted = [line for line in logged if "cannot reach the controller" in line]
    assert noted and "no answer yet after 0.3 s" in noted[0]


@pytest_twisted.ensureDeferred
async def test_a_controller_lost_before_channels_joined_is_a_lost_controller(make_tub, make_engine,
                                                                            logged, monkeypatch):
    # The controller answered register_engine (and counted the engine) but
    # crashed while the engine was still joining its lane: that is a lost
    # controller (retried for --reconnect-timeout), not a first registration
    # still to make (retried for --register-timeout).
    service = ControllerService(save_ids=True)
    tub = make_tub()
    await fcutil.listen(tub, reactor)

    class OffersALane(FCEngineRegistrar):
        def remote_register_engine(self, *args, **kwargs):
            return dict(super().remote_register_engine(*args, **kwargs), lane=[1, "t", False])
    furl = fcutil.register(tub, OffersALane(service))
    joining = defer.Deferred()

    def join_lane(self, *offer):
        joining.callback(offer)
        return defer.Deferred()   # still joining when the controller goes
    monkeypatch.setattr(EngineConnector, "_join_lane", join_lane)
    on_gave_up, gave = gave_up()
    connector = EngineConnector(make_tub(), make_engine(), furl, register_timeout=600,
                                reconnect_timeout=1, on_gave_up=on_gave_up)
    try:
        connector.start()
        assert await joining.addTimeout(WAIT, reactor) == (1, "t", False)
        assert not connector.registered.called
        await tub.stopService()
        status, message = await gave.addTimeout(WAIT, reactor)
    finally:
        connector.stop()
    assert status == 1 and "could not reconnect" in message
    assert any("without notice" in line and "for up to 1 s" in line for line in logged)
