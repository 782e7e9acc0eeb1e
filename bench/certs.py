"""Throwaway TLS certificates for the peers' encrypted runs (dask ``tls://``).

A certificate authority and one certificate it signed, valid for loopback
and the namespaces' addresses, written as PEM files; made with the
``cryptography`` package (a Foolscap dependency, so always installed).
"""
import datetime
import ipaddress
from pathlib import Path

#: Days the certificates are valid (they live for one run).
DAYS = 2


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(text):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _pem_key(key):
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make(directory, addresses=("127.0.0.1",)):
    """Write ``ca.pem``, ``cert.pem`` and ``key.pem`` into ``directory``;
    return their paths as a dict with keys ``ca``, ``cert`` and ``key``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=DAYS)
    ca_key, key = _key(), _key()
    ca = (x509.CertificateBuilder().subject_name(_name("bench throwaway CA"))
          .issuer_name(_name("bench throwaway CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start)
          .not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    names = [x509.DNSName("localhost")] + [x509.IPAddress(ipaddress.ip_address(a))
                                           for a in addresses]
    cert = (x509.CertificateBuilder().subject_name(_name("bench"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    directory = Path(directory)
    paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(_pem_key(key))
    paths["key"].chmod(0o600)
    return paths
