"""The network wrappers are registered adapters, both ways."""
import pytest
import pytest_twisted
from twisted.internet import reactor

from ipkernel import fcutil
from ipkernel.client.fcmultiengine import FCFullSynchronousMultiEngineClient
from ipkernel.controller import ControllerService
from ipkernel.controller.fc import FCEngineRegistrar, FCSynchronousMultiEngine, RemoteEngine
from ipkernel.engine.fc import FCEngineFromService
from ipkernel.interfaces import (IEngineBase, IFullSynchronousMultiEngine, IMultiEngine,
                                 ISynchronousMultiEngine)
from ipkernel.interfaces.remote import RIEngine, RIEngineRegistrar, RIMultiEngine

pytestmark = pytest.mark.tier2


def test_server_side_wrappers_are_adapters(make_engine):
    controller = ControllerService()
    assert isinstance(RIMultiEngine(ISynchronousMultiEngine(IMultiEngine(controller))),
                      FCSynchronousMultiEngine)
    assert isinstance(RIEngineRegistrar(controller), FCEngineRegistrar)
    assert isinstance(RIEngine(make_engine()), FCEngineFromService)


@pytest_twisted.ensureDeferred
async def test_remote_references_adapt_back(make_tub, make_engine):
    server = make_tub()
    await fcutil.listen(server, reactor)
    engine_furl = fcutil.register(server, RIEngine(make_engine()))
    sme = ISynchronousMultiEngine(IMultiEngine(ControllerService()))
    mec_furl = fcutil.register(server, RIMultiEngine(sme))
    client = make_tub()

    engine = IEngineBase(await client.getReference(engine_furl))
    assert isinstance(engine, RemoteEngine)
    await engine.push({"a": [1, 2]})
    assert await engine.pull("a") == [1, 2]

    mec = IFullSynchronousMultiEngine(await client.getReference(mec_furl))
    assert isinstance(mec, FCFullSynchronousMultiEngineClient)
    assert await mec.get_ids() == []
