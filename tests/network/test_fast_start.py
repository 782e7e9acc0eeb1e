"""Start-up paths: Tubs dial IP addresses without a name lookup; an engine
notices its FURL file as soon as it appears."""
import os

import pytest
import pytest_twisted
from foolscap.api import Referenceable
from foolscap.ipb import InvalidHintError
from twisted.internet import defer, endpoints, reactor

from ipkernel import fcutil
from ipkernel.clusterdir import write_private_file
from ipkernel.engine.app import AppError, wait_for_file

from awaiting import within


def test_hints_with_an_ip_address_are_dialled_directly():
    hints = fcutil.DirectTCPHints()
    endpoint, host = hints.hint_to_endpoint("tcp:127.0.0.1:4321", reactor, None)
    assert isinstance(endpoint, endpoints.TCP4ClientEndpoint) and host == "127.0.0.1"
    endpoint, host = hints.hint_to_endpoint("tcp:[::1]:4321", reactor, None)
    assert isinstance(endpoint, endpoints.TCP6ClientEndpoint) and host == "::1"
    # a name still goes through Foolscap's handler (and its lookup)
    endpoint, host = hints.hint_to_endpoint("tcp:localhost:4321", reactor, None)
    assert isinstance(endpoint, endpoints.HostnameEndpoint) and host == "localhost"
    for bad in ("tcp:127.0.0.1:port", "tor:127.0.0.1:80"):
        with pytest.raises(InvalidHintError):
            hints.hint_to_endpoint(bad, reactor, None)


class Echo(Referenceable):
    def remote_echo(self, value):
        return value


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_tubs_connect_over_direct_hints(make_tub):
    server, client = make_tub(), make_tub()
    assert isinstance(client._connectionHandlers["tcp"], fcutil.DirectTCPHints)
    await fcutil.listen(server, reactor, "127.0.0.1", 0)
    furl = server.registerReference(Echo())
    rref = await within(client.getReference(furl), 30)
    assert await within(rref.callRemote("echo", 42), 30) == 42


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_wait_for_file_returns_when_the_file_is_moved_in(tmp_path):
    path = tmp_path / "security" / "x.furl"
    path.parent.mkdir()
    waiting = defer.ensureDeferred(wait_for_file(reactor, str(path), 30, interval=60))
    assert not waiting.called
    # written like a FURL file (a temporary file renamed); the poll is too
    # slow to notice it within the test's time, the folder watch is not
    write_private_file(path, "pb://x@tcp:127.0.0.1:1/y\n", durable=False)
    await within(waiting, 20)
    assert path.exists()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_wait_for_file_polls_where_the_folder_is_missing(tmp_path):
    path = tmp_path / "later" / "x.furl"
    waiting = defer.ensureDeferred(wait_for_file(reactor, str(path), 30, interval=0.01))
    os.makedirs(path.parent)
    path.write_text("pb://x@tcp:127.0.0.1:1/y\n")
    await within(waiting, 20)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_wait_for_file_gives_up_after_its_timeout(tmp_path):
    with pytest.raises(AppError, match="did not appear within 0.05 s"):
        await wait_for_file(reactor, str(tmp_path / "never.furl"), 0.05)
