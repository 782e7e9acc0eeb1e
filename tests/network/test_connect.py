"""Tier 2: connecting a client -- bad FURLs fail promptly, saying which and why."""
import pytest
import pytest_twisted
from foolscap.api import Referenceable
from twisted.internet import defer, reactor

from ipkernel import asyncclient, fcutil
from ipkernel.error import ControllerError

pytestmark = pytest.mark.tier2

#: Every failure below must arrive well within this (the client's own
#: connection timeout is longer, so a hang shows up as a test failure).
PROMPT = 5


def assert_names_without_secret(message, furl):
    """``message`` names the controller of ``furl`` (redacted), never its secret name."""
    assert fcutil.redacted_furl(furl) in message
    assert furl.rsplit("/", 1)[1] not in message


async def connection_error(furl_or_file, tub, timeout=30):
    """The ControllerError of ``get_multiengine_client(furl_or_file)``."""
    d = asyncclient.get_multiengine_client(furl_or_file, tub=tub, timeout=timeout)
    with pytest.raises(ControllerError) as info:
        await d.addTimeout(PROMPT, reactor)
    return str(info.value)


async def listening_tub(make_tub):
    tub = make_tub()
    await fcutil.listen(tub, reactor)
    return tub


@pytest_twisted.ensureDeferred
async def test_missing_furl_file_is_named(make_tub, tmp_path):
    path = tmp_path / "ipcontroller-mec.furl"
    message = await connection_error(str(path), make_tub())
    assert str(path) in message
    assert "does not exist" in message


@pytest_twisted.ensureDeferred
async def test_furl_file_without_a_furl_is_named(make_tub, tmp_path):
    path = tmp_path / "garbage.furl"
    path.write_text("this is not a FURL\n")
    message = await connection_error(str(path), make_tub())
    assert str(path) in message
    assert "valid FURL" in message


@pytest_twisted.ensureDeferred
async def test_malformed_furl_is_named_without_its_text(make_tub):
    # a broken FURL may still hold a secret: only its start is shown
    message = await connection_error("pb://not-a-furl", make_tub())
    assert "'pb://...' is not a valid FURL" in message and "not-a-furl" not in message
    secret = "em6n6kvvcu6ilpjboulqnoln2daxszga"
    message = await connection_error(f"pb://o33gyjsq2t43@tcp:127.0.0.1/{secret} x", make_tub())
    assert secret not in message and "pb://o33gyjsq...@tcp:127.0.0.1/..." in message


@pytest_twisted.ensureDeferred
async def test_stale_furl_of_a_stopped_controller(make_tub, tmp_path):
    old = await listening_tub(make_tub)
    furl = fcutil.register(old, Referenceable())
    await old.stopService()
    message = await connection_error(furl, make_tub())
    assert_names_without_secret(message, furl)
    assert "stale" in message or "running" in message

    path = tmp_path / "ipcontroller-mec.furl"
    path.write_text(furl + "\n")
    message = await connection_error(str(path), make_tub())
    assert str(path) in message


@pytest_twisted.ensureDeferred
async def test_furl_with_an_unknown_name(make_tub):
    tub = await listening_tub(make_tub)
    furl = fcutil.register(tub, Referenceable())
    wrong = furl.rsplit("/", 1)[0] + "/" + "x" * 32
    message = await connection_error(wrong, make_tub())
    assert_names_without_secret(message, wrong)
    assert "no object under" in message and "stale" in message


@pytest_twisted.ensureDeferred
async def test_furl_of_another_controller_identity(make_tub):
    # right address, wrong TubID: the certificate check refuses it
    tub = await listening_tub(make_tub)
    furl = fcutil.register(tub, Referenceable())
    other_id = make_tub().getTubID()
    wrong = furl.replace(tub.getTubID(), other_id)
    message = await connection_error(wrong, make_tub())
    assert_names_without_secret(message, wrong)
    assert "stale" in message


@pytest_twisted.ensureDeferred
async def test_unreachable_address_fails_within_the_timeout(make_tub):
    # 192.0.2.0/24 (TEST-NET-1) is never routed: the attempt either fails at
    # once or never answers; either way the client gives up within its timeout
    tub = make_tub()
    furl = f"pb://{tub.getTubID()}@tcp:192.0.2.1:9/{'y' * 32}"
    message = await connection_error(furl, make_tub(), timeout=0.5)
    assert_names_without_secret(message, furl)


@pytest_twisted.ensureDeferred
async def test_engine_furl_is_not_a_multiengine_furl(make_fc_cluster):
    cluster = await make_fc_cluster(0)
    message = await connection_error(cluster.engine_furl, cluster.client_tub)
    assert_names_without_secret(message, cluster.engine_furl)
    assert "multi-engine" in message


@pytest_twisted.ensureDeferred
async def test_good_furl_file(make_fc_cluster, tmp_path):
    cluster = await make_fc_cluster(1)
    path = tmp_path / "ipcontroller-mec.furl"
    path.write_text(cluster.mec_furl + "\n")
    client = await asyncclient.get_multiengine_client(str(path), tub=cluster.client_tub)
    assert client.furl == cluster.mec_furl
    assert await client.get_ids() == [0]
    # a second client on the same Tub shares the connection
    again = await defer.ensureDeferred(
        asyncclient.get_multiengine_client(cluster.mec_furl, tub=cluster.client_tub))
    assert await again.pull("id") == [0]
