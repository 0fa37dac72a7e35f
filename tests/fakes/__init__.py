"""Fakes of external services for tests (named fakes: they follow the real APIs' shapes).

Also a tiny test PKI (:class:`TestPKI`) to mint real X.509 certificates for them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmeflow.providers.deploy.base import CertificateBundle

_PEM = serialization.Encoding.PEM


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass
class Issued:
    """One issued leaf certificate with its key and the issuing chain."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: list[x509.Certificate]

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(_PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    @property
    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(_PEM) for c in self.chain)

    @property
    def serial(self) -> str:
        return format(self.cert.serial_number, "x")

    def bundle(self, name: str) -> CertificateBundle:
        """The deployable bundle (leaf + chain + key) under certificate name ``name``."""
        return CertificateBundle(
            name=name,
            cert_pem=self.cert_pem,
            chain_pem=self.chain_pem,
            fullchain_pem=self.cert_pem + self.chain_pem,
            key_pem=self.key_pem,
            serial=self.serial,
        )


class TestPKI:
    """A root CA and an intermediate (like a public ACME CA) that issue leaf certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, label: str = "acmeflow test") -> None:
        now = dt.datetime.now(dt.UTC)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{label} root")])
        self.root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.root_key, hashes.SHA256())
        )
        self.intermediate_key, self.intermediate = self.new_intermediate(f"{label} issuing CA")

    def new_intermediate(
        self, common_name: str
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A fresh intermediate CA signed by the root (to model a chain change)."""
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1825))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.root_key, hashes.SHA256())
        )
        return key, cert

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(_PEM)

    def issue(
        self,
        names: list[str],
        *,
        ips: list[str] | None = None,
        days: int = 30,
        key: ec.EllipticCurvePrivateKey | None = None,
        intermediate: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None,
    ) -> Issued:
        """A leaf certificate for DNS ``names`` (and IP ``ips``) with a random serial."""
        ca_key, ca_cert = intermediate or (self.intermediate_key, self.intermediate)
        leaf_key = key or ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips or []]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        return Issued(cert=cert, key=leaf_key, chain=[ca_cert])
