"""Tier 2: an engine given a FURL file follows a controller restarted without -r."""
import pytest
import pytest_twisted
from twisted.internet import reactor

from ipkernel import fcutil
from ipkernel.clusterdir import write_private_file
from ipkernel.controller import ControllerService
from ipkernel.controller.fc import FCEngineRegistrar
from ipkernel.engine.connector import EngineConnector

pytestmark = pytest.mark.tier2

WAIT = 20


async def start_controller(make_tub, furl_file):
    controller = ControllerService(save_ids=True)
    tub = make_tub()
    await fcutil.listen(tub, reactor)
    fcutil.register(tub, FCEngineRegistrar(controller), furl_file)
    return controller, tub


@pytest_twisted.ensureDeferred
async def test_engine_follows_a_new_furl_in_its_file(make_tub, make_engine, tmp_path):
    furl_file = tmp_path / "ipcontroller-engine.furl"
    first, first_tub = await start_controller(make_tub, furl_file)
    old_furl = furl_file.read_text()

    engine = make_engine()
    connector = EngineConnector(make_tub(), engine, str(furl_file), clock=reactor)
    try:
        assert await connector.start().addTimeout(WAIT, reactor) == 0
        await first.wait_for_engines(1).addTimeout(WAIT, reactor)

        await first_tub.stopService()      # the controller goes away ...
        furl_file.unlink()
        second, _ = await start_controller(make_tub, furl_file)   # ... and a new one starts
        assert furl_file.read_text() != old_furl

        ids = await second.wait_for_engines(1).addTimeout(WAIT, reactor)
        assert ids == [0]
        assert engine.id == 0
        results = await second.engines[0].execute("x = id + 1")
        assert results["id"] == 0
    finally:
        connector.stop()


@pytest_twisted.ensureDeferred
async def test_an_unreadable_furl_file_is_ignored_until_valid(make_tub, make_engine, tmp_path):
    furl_file = tmp_path / "ipcontroller-engine.furl"
    first, first_tub = await start_controller(make_tub, furl_file)
    old_furl = fcutil.find_furl(furl_file)
    engine = make_engine()
    connector = EngineConnector(make_tub(), engine, str(furl_file), clock=reactor)
    try:
        await connector.start().addTimeout(WAIT, reactor)
        await first_tub.stopService()
        for bad in ("not a furl\n", ""):
            write_private_file(furl_file, bad)
            connector._check_furl_file()   # what the watch does every FURL_FILE_POLL seconds
            assert connector.furl == old_furl
        furl_file.unlink()
        connector._check_furl_file()
        assert connector.furl == old_furl
        second, _ = await start_controller(make_tub, furl_file)
        connector._check_furl_file()
        assert connector.furl == fcutil.find_furl(furl_file) != old_furl
        assert await second.wait_for_engines(1).addTimeout(WAIT, reactor) == [0]
    finally:
        connector.stop()
