"""Tier 1: the TLS pieces lanes share (:mod:`ipkernel.transport.tls`): which
peers get TLS, the tub-id check, the contexts made from a Tub's certificate,
and the lane offer's parts."""
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ipkernel import fcutil
from ipkernel.lane.server import offer_parts
from ipkernel.transport import tls

pytestmark = pytest.mark.tier1


def der_of(pem):
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)


@pytest.mark.parametrize("host, tls_always, wanted", [
    ("127.0.0.1", False, False),
    ("127.0.0.5", False, False),
    ("::1", False, False),
    ("localhost", False, False),
    ("::ffff:127.0.0.1", False, False),   # an IPv4 loopback peer on a dual-stack port
    ("127.0.0.1", True, True),
    ("10.0.0.2", False, True),
    ("::ffff:10.0.0.2", False, True),
    ("fe80::1", False, True),
    ("controller.example", False, True),  # a name, not an address: never trusted as loopback
    (None, False, True),                  # the address is unknown
])
def test_every_peer_off_loopback_gets_tls(host, tls_always, wanted):
    assert tls.wants_tls(host, tls_always) is wanted


def test_ipv4_mapped_addresses_are_written_as_ipv4():
    assert tls.host_of("::ffff:10.1.2.3") == "10.1.2.3"
    assert tls.host_of("10.1.2.3") == "10.1.2.3"
    assert tls.host_of("::1") == "::1"
    assert tls.host_of("name.example") == "name.example"
    assert tls.host_of(None) is None


def test_the_tubid_check_takes_only_the_furls_tub():
    pem, other = fcutil.new_cert_pem(), fcutil.new_cert_pem()
    tubid = tls.tubid_of_der(der_of(pem))
    tls.check_tubid(der_of(pem), tubid)  # the right certificate: no error
    with pytest.raises(tls.WrongCertificate) as info:
        tls.check_tubid(der_of(other), tubid, "the lane port")
    message = str(info.value)
    assert tubid in message and tls.tubid_of_der(der_of(other)) in message
    assert "the lane port" in message and "nothing was sent" in message
    with pytest.raises(tls.WrongCertificate, match="showed no certificate"):
        tls.check_tubid(None, tubid)


def test_the_tubid_is_the_one_foolscap_puts_in_furls(tmp_path):
    tub = fcutil.make_tub(cert_file=str(tmp_path / "t.pem"))
    pem = (tmp_path / "t.pem").read_text()
    assert tls.tubid_of_der(der_of(pem)) == tub.getTubID()


def test_the_server_context_presents_the_certificate_of_the_file(tmp_path):
    pem = fcutil.new_cert_pem()
    (tmp_path / "c.pem").write_text(pem)
    server = tls.stdlib_server_context(str(tmp_path / "c.pem"))
    # a handshake in memory: the client sees the file's certificate
    bios = [ssl.MemoryBIO() for _ in range(4)]
    accepting = server.wrap_bio(bios[0], bios[1], server_side=True)
    joining = tls.stdlib_client_context().wrap_bio(bios[2], bios[3])
    for _ in range(5):
        for end in (joining, accepting):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
        bios[0].write(bios[3].read())
        bios[2].write(bios[1].read())
    assert joining.getpeercert(binary_form=True) == der_of(pem)


def test_the_clients_stdlib_context_leaves_the_check_to_the_tubid():
    ctx = tls.stdlib_client_context()
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_a_lane_offer_has_a_tls_flag_and_old_offers_mean_plain():
    assert offer_parts((5, b"t", True)) == (5, b"t", True, "")
    assert offer_parts([5, b"t", False]) == (5, b"t", False, "")
    assert offer_parts([5, b"t"]) == (5, b"t", False, "")
    # with the Unix socket for peers on the controller's host
    assert offer_parts((5, b"t", False, "@x")) == (5, b"t", False, "@x")
    assert offer_parts((5, b"t", 0, None)) == (5, b"t", False, "")
    with pytest.raises(ValueError):
        offer_parts([5])
