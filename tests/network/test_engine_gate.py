"""Tier 2 (issue 13): the engine gate on real Tubs over loopback: engines
register with one-time credentials, a used one is refused, and a registered
engine registers again with the rejoin credential it was given."""
import pytest
import pytest_twisted
from twisted.internet import reactor

from ipkernel import credentials, fcutil
from ipkernel.controller import ControllerService
from ipkernel.controller.fc import FCEngineGate, FCEngineRegistrar
from ipkernel.engine.connector import EngineConnector

pytestmark = pytest.mark.tier2

WAIT = 20
KEY = credentials.new_key()


async def gate(make_tub):
    service = ControllerService(save_ids=True)
    tub = make_tub()
    await fcutil.listen(tub, reactor)
    checker = credentials.CredentialChecker(KEY)
    return service, fcutil.register(tub, FCEngineGate(FCEngineRegistrar(service), checker))


@pytest_twisted.ensureDeferred
async def test_a_credential_registers_one_engine_once(make_tub, make_engine):
    service, furl = await gate(make_tub)
    credential = credentials.mint(KEY)
    first = EngineConnector(make_tub(), make_engine(), furl, register_timeout=WAIT,
                            credential=credential)
    second = EngineConnector(make_tub(), make_engine(), furl, register_timeout=WAIT,
                             credential=credential)
    try:
        engine_id = await first.start().addTimeout(WAIT, reactor)
        assert sorted(service.engines) == [engine_id]
        # the connector now holds its rejoin credential, not the used one
        assert first._credential == credentials.rejoin_credential(KEY, engine_id)
        with pytest.raises(Exception, match="already used"):
            await second.start().addTimeout(WAIT, reactor)
        assert sorted(service.engines) == [engine_id]
    finally:
        first.stop()
        second.stop()


@pytest_twisted.ensureDeferred
async def test_no_credential_or_a_foreign_one_is_refused(make_tub, make_engine):
    service, furl = await gate(make_tub)
    foreign = credentials.mint(credentials.new_key())
    connector = EngineConnector(make_tub(), make_engine(), furl, register_timeout=WAIT,
                                credential=foreign)
    try:
        with pytest.raises(Exception, match="not made for this controller"):
            await connector.start().addTimeout(WAIT, reactor)
    finally:
        connector.stop()
    assert sorted(service.engines) == []


@pytest_twisted.ensureDeferred
async def test_a_rejoin_credential_registers_again_under_its_id(make_tub, make_engine):
    service, furl = await gate(make_tub)
    connector = EngineConnector(make_tub(), make_engine(), furl, register_timeout=WAIT,
                                credential=credentials.rejoin_credential(KEY, 5))
    try:
        engine_id = await connector.start().addTimeout(WAIT, reactor)
    finally:
        connector.stop()
    assert engine_id == 5
