"""Many test certificates, fast, and the bare-parse floor the scan benchmark compares to.

``make_test_certificates`` writes ``count`` leaf certificates (PEM in one sub-folder per
certificate as ``cert.pem``, loose ``.der`` files and loose ``.p12`` files with password
``changeit``) signed by a handful of issuers (CN "R10"/"E5", O "Let's Encrypt"; CN
"Other CA", O "Other Org"). One CA key signs everything and a few leaf keys are reused, so
thousands of certificates take seconds. ``bare_parse_seconds`` reads and parses every file
with ``cryptography`` alone: no acmeflow code, the floor a scan cannot beat.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "ISSUERS",
    "P12_PASSWORD",
    "bare_parse_seconds",
    "iter_certificate_files",
    "make_test_certificates",
]

P12_PASSWORD = b"changeit"
FORMATS = ("pem", "der", "p12")
# (common name, organization, share of certificates out of 6)
ISSUERS: tuple[tuple[str, str, int], ...] = (
    ("R10", "Let's Encrypt", 3),
    ("E5", "Let's Encrypt", 1),
    ("Other CA", "Other Org", 2),
)
_P12_KDF_ROUNDS = 2048  # enough to be a real PBES2 file, low enough to build thousands


def _issuer_certs(
    ca_key: ec.EllipticCurvePrivateKey, now: datetime
) -> list[tuple[x509.Certificate, int]]:
    result = []
    ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    for serial, (cn, org, share) in enumerate(ISSUERS, start=1):
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(serial)
            .not_valid_before(now - timedelta(days=365))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        result.append((cert, share))
    return result


def make_test_certificates(folder: Path, count: int, formats: Sequence[str] = FORMATS) -> None:
    """Write ``count`` certificates under ``folder``, cycling through ``formats``.

    ``pem``: ``cert-NNNNNN/cert.pem``; ``der``: ``cert-NNNNNN.der``; ``p12``:
    ``cert-NNNNNN.p12`` (EC key, leaf and issuer, password ``changeit``). Names, serials,
    issuers, key types and validity (some already expired) vary between certificates.
    """
    formats = tuple(formats)
    unknown = set(formats) - set(FORMATS)
    if not formats or unknown:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {formats}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuers = _issuer_certs(ca_key, now)
    schedule = [cert for cert, share in issuers for _ in range(share)]
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    leaf_keys: list[ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey] = [
        ec.generate_private_key(ec.SECP256R1()) for _ in range(3)
    ]
    leaf_keys.append(ec.generate_private_key(ec.SECP384R1()))
    leaf_keys.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ec_keys = leaf_keys[:-1]
    basic = x509.BasicConstraints(ca=False, path_length=None)
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    p12_encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(_P12_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(P12_PASSWORD)
    )

    for i in range(count):
        fmt = formats[i % len(formats)]
        issuer = schedule[i % len(schedule)]
        # cryptography validates RSA private keys on every PKCS#12 load (~30 ms each on a
        # slow core), which would make the .p12 share dominate: .p12 files get EC keys.
        keys = ec_keys if fmt == "p12" else leaf_keys
        key = keys[i % len(keys)]
        host = f"host{i}.example{i % 97}.com"
        names = [host, f"www.{host}"] if i % 4 else [host, f"*.{host}"]
        not_before = now - timedelta(days=i % 100, hours=i % 24)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number((0x04A1 << 120) + i * 7919 + 1)
            .not_valid_before(not_before)
            .not_valid_after(not_before + timedelta(days=90))
            .add_extension(basic, critical=True)
            .add_extension(eku, critical=False)
            .add_extension(aki, critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        stem = f"cert-{i:06d}"
        if fmt == "pem":
            sub = folder / stem
            sub.mkdir(exist_ok=True)
            (sub / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        elif fmt == "der":
            (folder / f"{stem}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
        else:
            data = pkcs12.serialize_key_and_certificates(
                host.encode(), key, cert, [issuer], p12_encryption
            )
            (folder / f"{stem}.p12").write_bytes(data)


def iter_certificate_files(folder: Path) -> Iterator[Path]:
    """Every ``.pem``/``.crt``/``.der``/``.cer``/``.p12``/``.pfx`` file under ``folder``."""
    suffixes = {".pem", ".crt", ".der", ".cer", ".p12", ".pfx"}
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif os.path.splitext(entry.name)[1].lower() in suffixes:
                    yield Path(entry.path)


def _parse(path: Path) -> int:
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix in (".p12", ".pfx"):
        bundle = pkcs12.load_pkcs12(data, P12_PASSWORD)
        return (bundle.cert is not None) + len(bundle.additional_certs)
    if b"-----BEGIN" in data:
        return len(x509.load_pem_x509_certificates(data))
    x509.load_der_x509_certificate(data)
    return 1


def bare_parse_seconds(folder: Path, files: Iterable[Path] | None = None) -> float:
    """Seconds to walk ``folder``, read and parse every certificate file with cryptography."""
    start = time.perf_counter()
    for path in files if files is not None else iter_certificate_files(Path(folder)):
        _parse(path)
    return time.perf_counter() - start
