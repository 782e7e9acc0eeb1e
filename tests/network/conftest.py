"""Fixtures shared by the network tests."""
import pytest
import pytest_twisted

from ipkernel import fcutil
from ipkernel.datachannel import DataChannelPeer

from awaiting import within


@pytest.fixture
def pem(tmp_path, cert_pool):
    """``(path, tub id)``: a Tub certificate from the pool written as a PEM
    file (what the data channel and lanes present), and the tub id it names."""
    data = cert_pool.get(0)
    path = tmp_path / "data.pem"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path), fcutil.make_tub(cert_data=data).getTubID()


@pytest_twisted.async_yield_fixture
async def peers():
    """``await connect(server, role, identity)``: a DataChannelPeer joined to
    ``server`` (a DataChannelServer with a ``tubid`` attribute set by the
    test) with a fresh token, TLS as the server asks; all closed after."""
    made = []

    async def connect(server, role, identity):
        peer = DataChannelPeer("127.0.0.1", server.ports[role],
                               server.new_token(role, identity), server.tubid, server.tls_always)
        made.append(peer)
        return await within(peer.connect())
    yield connect
    for peer in made:
        peer.close()
