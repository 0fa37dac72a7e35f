"""Certificates as acmeflow sees them: parse PEM, DER, PKCS#12 (and PKCS#7), verify chains.

:func:`parse_certificate` turns an X.509 certificate into a :class:`CertificateInfo` (what
the scan records: subject, names, issuer, serial, validity, key type, fingerprint, the
RFC 9773 ARI certificate id). :func:`load_certificates` reads whatever a store holds.
Unreadable data raises :class:`CertificateParseError` (a ``ValueError``); a PKCS#12 file
that needs a (different) password raises its subclass :class:`CertificatePasswordError`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from acmeflow.core.keys import key_type_of, name_attribute, public_key_der

__all__ = [
    "CertificateInfo",
    "CertificateParseError",
    "CertificatePasswordError",
    "ari_cert_id",
    "expires_in",
    "leaf_and_chain",
    "load_certificates",
    "parse_certificate",
    "read_certificate_file",
    "verify_chain",
]

_PKCS12_SUFFIXES = (".p12", ".pfx")
_WILDCARD_PROBE = "acmeflow-verify"


class CertificateParseError(ValueError):
    """The data is not a certificate acmeflow can read (PEM, DER or PKCS#12)."""


class CertificatePasswordError(CertificateParseError):
    """A PKCS#12 file needs a password, or the password given is wrong."""


@dataclass(frozen=True)
class CertificateInfo:
    """What the scan records about one certificate."""

    subject: str
    common_name: str | None
    names: list[str]
    issuer: str
    issuer_common_name: str | None
    issuer_organization: str | None
    serial: str
    not_before: datetime
    not_after: datetime
    key_type: str
    fingerprint_sha256: str
    is_ca: bool
    authority_key_id: str | None
    ari_cert_id: str | None
    pem: bytes

    @property
    def is_self_signed(self) -> bool:
        """Whether subject and issuer are the same name."""
        return self.subject == self.issuer


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _serial_der_contents(serial: int) -> bytes:
    """Contents octets of the DER INTEGER for ``serial`` (minimal two's complement)."""
    length = max(1, (serial.bit_length() + 8) // 8)
    data = serial.to_bytes(length, "big", signed=True)
    # Drop redundant leading octets (only possible for negative numbers here).
    while len(data) > 1 and (
        (data[0] == 0x00 and data[1] < 0x80) or (data[0] == 0xFF and data[1] >= 0x80)
    ):
        data = data[1:]
    return data


def ari_cert_id(authority_key_id: bytes, serial: int) -> str:
    """RFC 9773 certificate identifier: ``b64url(AKI keyIdentifier).b64url(serial DER)``."""
    return f"{_b64url(authority_key_id)}.{_b64url(_serial_der_contents(serial))}"


def _extension(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        return None  # a malformed extension: describe the rest of the certificate


def _san_dns_names(cert: x509.Certificate) -> list[str]:
    san = _extension(cert, x509.SubjectAlternativeName)
    if not isinstance(san, x509.SubjectAlternativeName):
        return []
    return [name.lower() for name in san.get_values_for_type(x509.DNSName)]


def parse_certificate(cert: x509.Certificate) -> CertificateInfo:
    """Describe one certificate (names: subjectAltName DNS entries, else the common name)."""
    common_name = name_attribute(cert.subject, NameOID.COMMON_NAME)
    names = _san_dns_names(cert)
    if not names and common_name:
        names = [common_name.lower()]
    try:
        key_type = key_type_of(cert.public_key())
    except (ValueError, UnsupportedAlgorithm):
        key_type = "unknown"
    is_ca = _is_ca(cert)
    aki = _extension(cert, x509.AuthorityKeyIdentifier)
    key_id = aki.key_identifier if isinstance(aki, x509.AuthorityKeyIdentifier) else None
    serial = cert.serial_number
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        common_name=common_name,
        names=names,
        issuer=cert.issuer.rfc4514_string(),
        issuer_common_name=name_attribute(cert.issuer, NameOID.COMMON_NAME),
        issuer_organization=name_attribute(cert.issuer, NameOID.ORGANIZATION_NAME),
        serial=format(serial, "x") if serial >= 0 else "-" + format(-serial, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        is_ca=is_ca,
        authority_key_id=key_id.hex() if key_id else None,
        ari_cert_id=ari_cert_id(key_id, serial) if key_id else None,
        pem=cert.public_bytes(serialization.Encoding.PEM),
    )


def _label(filename: str) -> str:
    return f"{filename}: " if filename else ""


def _looks_like_pkcs12(data: bytes) -> bool:
    """Whether ``data`` starts like a DER PFX: SEQUENCE { INTEGER 3, ... }."""
    if len(data) < 8 or data[0] != 0x30:
        return False
    first = data[1]
    offset = 2 if first < 0x80 else 2 + (first & 0x7F)
    return data[offset : offset + 3] == b"\x02\x01\x03"


def _pem_certificates(data: bytes, filename: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        pass
    # Fall back block by block: skip keys and anything else that is not a certificate.
    certs: list[x509.Certificate] = []
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = data.find(begin)
    while start >= 0:
        stop = data.find(end, start)
        if stop < 0:
            break
        block = data[start : stop + len(end)]
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise CertificateParseError(
                f"{_label(filename)}a PEM CERTIFICATE block cannot be parsed ({exc})"
            ) from None
        start = data.find(begin, stop)
    if not certs and b"-----BEGIN PKCS7-----" in data:
        try:
            return _leaf_first(pkcs7.load_pem_pkcs7_certificates(data))
        except ValueError as exc:
            raise CertificateParseError(
                f"{_label(filename)}the PKCS#7 bundle cannot be parsed ({exc})"
            ) from None
    if not certs:
        raise CertificateParseError(f"{_label(filename)}the PEM data holds no certificate")
    return certs


def _is_ca(cert: x509.Certificate) -> bool:
    basic = _extension(cert, x509.BasicConstraints)
    return isinstance(basic, x509.BasicConstraints) and basic.ca


def _leaf_first(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """PKCS#7 bundles have no order: put the first non-CA certificate first."""
    for index, cert in enumerate(certs):
        if not _is_ca(cert):
            return [cert, *certs[:index], *certs[index + 1 :]]
    return list(certs)


def _pkcs12_certificates(
    data: bytes, password: bytes | None, filename: str
) -> list[x509.Certificate]:
    attempts: list[bytes | None] = [password] if password else [None, b""]
    bundle: pkcs12.PKCS12KeyAndCertificates | None = None
    for attempt in attempts:
        try:
            bundle = pkcs12.load_pkcs12(data, attempt)
            break
        except ValueError:
            continue
        except UnsupportedAlgorithm as exc:
            raise CertificateParseError(
                f"{_label(filename)}the PKCS#12 file uses an unsupported algorithm ({exc})"
            ) from None
    if bundle is None:
        if not _looks_like_pkcs12(data):
            raise CertificateParseError(
                f"{_label(filename)}the data is not a certificate (PEM, DER or PKCS#12)"
            )
        if password:
            raise CertificatePasswordError(
                f"{_label(filename)}the PKCS#12 password is wrong (or the file is corrupt)"
            )
        raise CertificatePasswordError(
            f"{_label(filename)}the PKCS#12 file is protected: a password is required"
        )
    others = [item.certificate for item in bundle.additional_certs]
    leaf = bundle.cert.certificate if bundle.cert is not None else None
    if leaf is None and bundle.key is not None:
        key_der = public_key_der(bundle.key)
        for cert in others:
            try:
                matches = public_key_der(cert.public_key()) == key_der
            except (ValueError, UnsupportedAlgorithm):
                matches = False
            if matches:
                leaf = cert
                others.remove(cert)
                break
    certs = ([leaf] if leaf is not None else []) + others
    if not certs:
        raise CertificateParseError(f"{_label(filename)}the PKCS#12 file holds no certificate")
    return certs


def _der_pkcs7_certificates(data: bytes) -> list[x509.Certificate]:
    try:
        return _leaf_first(pkcs7.load_der_pkcs7_certificates(data))
    except (ValueError, UnsupportedAlgorithm):
        return []


def load_certificates(
    data: bytes, *, password: bytes | None = None, filename: str = ""
) -> list[CertificateInfo]:
    """Parse every certificate in PEM (several allowed), DER, PKCS#12 or PKCS#7 data.

    The leaf comes first. PKCS#12 is used for ``.p12``/``.pfx`` names and tried when PEM,
    DER and PKCS#7 fail; private key blocks in PEM are ignored.
    """
    if isinstance(password, str):
        password = password.encode()
    data = bytes(data)
    if not data.strip():
        raise CertificateParseError(f"{_label(filename)}the file is empty")
    certs: list[x509.Certificate]
    if filename.lower().endswith(_PKCS12_SUFFIXES):
        certs = _pkcs12_certificates(data, password, filename)
    elif b"-----BEGIN" in data:
        certs = _pem_certificates(data, filename)
    else:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            certs = _der_pkcs7_certificates(data)
            if not certs:
                certs = _pkcs12_certificates(data, password, filename)
    return [parse_certificate(cert) for cert in certs]


def read_certificate_file(path: Path, password: bytes | None = None) -> list[CertificateInfo]:
    """Read and parse a certificate file (PEM, DER or PKCS#12; leaf first)."""
    path = Path(path)
    return load_certificates(path.read_bytes(), password=password, filename=path.name)


def leaf_and_chain(pem_bundle: bytes) -> tuple[bytes, bytes]:
    """Split a full-chain PEM into the leaf PEM and the chain PEM (possibly empty)."""
    certs = _pem_certificates(bytes(pem_bundle), "")
    pems = [cert.public_bytes(serialization.Encoding.PEM) for cert in certs]
    return pems[0], b"".join(pems[1:])


def _load_pem_list(data: bytes, what: str) -> list[x509.Certificate]:
    if not data or not data.strip():
        return []
    try:
        return _pem_certificates(bytes(data), "")
    except CertificateParseError as exc:
        raise CertificateParseError(f"{what}: {exc}") from None


def verify_chain(
    leaf_pem: bytes, chain_pem: bytes, root_pem: bytes, *, at: datetime | None = None
) -> None:
    """Check that the leaf chains to ``root_pem`` through the certificates in ``chain_pem``.

    Uses the Web PKI rules of ``cryptography.x509.verification``; a leaf with DNS names is
    checked as a TLS server certificate for its first name. Raises ``ValueError`` with the
    reason when it does not verify.
    """
    leaves = _load_pem_list(leaf_pem, "leaf certificate")
    if not leaves:
        raise CertificateParseError("leaf certificate: no certificate given")
    roots = _load_pem_list(root_pem, "root certificate")
    if not roots:
        raise CertificateParseError("root certificate: no certificate given")
    leaf = leaves[0]
    intermediates = leaves[1:] + _load_pem_list(chain_pem, "chain")
    when = at or datetime.now(UTC)
    builder = PolicyBuilder().store(Store(roots)).time(when)
    names = _san_dns_names(leaf)
    try:
        if names:
            subject = names[0]
            if subject.startswith("*."):
                subject = f"{_WILDCARD_PROBE}.{subject[2:]}"
            server = builder.build_server_verifier(x509.DNSName(subject))
            server.verify(leaf, intermediates)
        else:
            client = builder.extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            ).build_client_verifier()
            client.verify(leaf, intermediates)
    except VerificationError as exc:
        raise ValueError(
            f'certificate "{leaf.subject.rfc4514_string()}" does not chain to the given root '
            f"({roots[0].subject.rfc4514_string()}): {exc}"
        ) from None


def expires_in(info: CertificateInfo, now: datetime | None = None) -> timedelta:
    """Time left until ``info`` expires (negative once expired)."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return info.not_after - now
