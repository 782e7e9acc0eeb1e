"""Fixtures shared by the network tests."""
import pytest

from ipkernel import fcutil


@pytest.fixture
def pem(tmp_path, cert_pool):
    """``(path, tub id)``: a Tub certificate from the pool written as a PEM
    file (what the data channel and lanes present), and the tub id it names."""
    data = cert_pool.get(0)
    path = tmp_path / "data.pem"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path), fcutil.make_tub(cert_data=data).getTubID()
