"""TLS authenticated by a Foolscap tub id, for lanes between hosts.

The controller's lane port for a role (clients, engines) presents that
role's Foolscap certificate.  Nobody signs it: the joining side accepts any
certificate in the handshake, then compares the certificate's tub id (the
hash Foolscap names a Tub by) with the tub id of the FURL it was given, and
sends its token only when they match.  So a peer that holds the FURL knows
it talks to the controller, and the one-time token (handed out over that
Foolscap connection) says who the peer is.

The data channel uses the same check, then carries its bytes as sealed
records (:mod:`ipkernel.transport.seal`) on the socket under the TLS.

Which connections use TLS: every one whose peer is not on loopback, and
loopback ones too when ``tls_always`` is set (``ipcontroller --lane-tls``);
both ends decide the same way from the addresses they see
(:func:`wants_tls`).  The TLS is the standard library's ``ssl`` on both
ends: on blocking sockets (the blocking client's direct lane) and under
Twisted protocols through memory BIOs (:mod:`ipkernel.transport.memtls`).
"""
import hashlib
import ipaddress
import ssl

from foolscap import base32

__all__ = ["WrongCertificate", "check_tubid", "host_of", "stdlib_client_context",
           "stdlib_server_context", "tubid_of_der", "wants_tls"]


def tubid_of_der(der):
    """The Foolscap tub id of a certificate (DER bytes)."""
    return base32.encode(hashlib.sha1(der).digest())


class WrongCertificate(ConnectionError):
    """The other side's certificate is not the one the FURL names."""


def host_of(host):
    """``host`` with an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, how a
    dual-stack socket reports IPv4 peers) written as the IPv4 address."""
    try:
        mapped = getattr(ipaddress.ip_address(host), "ipv4_mapped", None)
    except (TypeError, ValueError):
        return host
    return str(mapped) if mapped is not None else host


def wants_tls(host, tls_always=False):
    """True when a lane with the peer at ``host`` must be encrypted."""
    if tls_always or host is None:
        return True
    host = host_of(host)
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def check_tubid(der, expected, what="the lane"):
    """Raise :class:`WrongCertificate` unless the certificate ``der`` (DER
    bytes, or None: none was shown) belongs to the tub ``expected``."""
    if der is None:
        raise WrongCertificate(f"{what} showed no certificate; refusing it")
    got = tubid_of_der(der)
    if got != expected:
        raise WrongCertificate(
            f"{what} showed the certificate of tub {got}, not {expected} named by the FURL "
            f"(another program at that address, or a stale FURL: use the controller's "
            f"current FURL files); nothing was sent to it")


def stdlib_server_context(cert_file):
    """A stdlib ``ssl`` context presenting the certificate (with its key) of
    the PEM file ``cert_file``, a Tub's certificate file."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file)
    ctx.num_tickets = 0  # a lane is never resumed: no session tickets to send
    return ctx


def stdlib_client_context():
    """A stdlib ``ssl`` context for the joining side (blocking sockets):
    no CA check, :func:`check_tubid` authenticates."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
