"""Certificate parsing, PKCS#12, ARI ids and chain verification (core.certinfo)."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from acmeflow.core.certinfo import (
    CertificateInfo,
    CertificateParseError,
    CertificatePasswordError,
    ari_cert_id,
    expires_in,
    leaf_and_chain,
    load_certificates,
    parse_certificate,
    read_certificate_file,
    verify_chain,
)

NOW = datetime.now(UTC).replace(microsecond=0)
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass
class Issuer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(PEM)


def _ca(cn: str, org: str | None = None, parent: Issuer | None = None) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(parent.cert.subject if parent else _name(cn, org))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if parent:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
            critical=False,
        )
    signer = parent.key if parent else key
    return Issuer(key, builder.sign(signer, hashes.SHA256()))


def _leaf(
    issuer: Issuer,
    names: list[str],
    *,
    cn: str | None = None,
    key=None,
    serial: int | None = None,
    days: int = 90,
    ips: Sequence[str] = (),
) -> tuple[x509.Certificate, object]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = _name(cn) if cn else x509.Name([])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW - timedelta(days=1) + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    general = [x509.DNSName(n) for n in names] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips
    ]
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=not cn)
    return builder.sign(issuer.key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def issuers() -> dict[str, Issuer]:
    root = _ca("Test Root X1", "Test PKI")
    intermediate = _ca("R10", "Let's Encrypt", parent=root)
    other_root = _ca("Other Root", "Other PKI")
    return {"root": root, "intermediate": intermediate, "other_root": other_root}


@pytest.fixture(scope="module")
def leaf(issuers: dict[str, Issuer]):
    return _leaf(
        issuers["intermediate"],
        ["www.example.com", "example.com"],
        cn="www.example.com",
        serial=0xABC,
    )


# --- parse_certificate ------------------------------------------------------------------------


def test_parse_certificate_describes_the_leaf(leaf, issuers: dict[str, Issuer]) -> None:
    cert, _ = leaf
    info = parse_certificate(cert)
    assert info.subject == "CN=www.example.com"
    assert info.common_name == "www.example.com"
    assert info.names == ["www.example.com", "example.com"]
    assert info.issuer == "CN=R10,O=Let's Encrypt"
    assert info.issuer_common_name == "R10"
    assert info.issuer_organization == "Let's Encrypt"
    assert info.serial == "abc"
    assert info.not_before == NOW - timedelta(days=1)
    assert info.not_after == NOW + timedelta(days=89)
    assert info.not_after.tzinfo is not None and info.not_after.utcoffset() == timedelta(0)
    assert info.key_type == "ec256"
    assert info.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    assert len(info.fingerprint_sha256) == 64 and info.fingerprint_sha256.islower()
    assert info.is_ca is False
    ski = issuers["intermediate"].cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert info.authority_key_id == ski.value.digest.hex()
    aki_b64 = base64.urlsafe_b64encode(ski.value.digest).rstrip(b"=").decode()
    assert info.ari_cert_id == f"{aki_b64}.Crw"  # serial 0x0abc
    assert info.pem == cert.public_bytes(PEM)
    assert not info.is_self_signed


def test_parse_ca_and_rsa_certificates(issuers: dict[str, Issuer]) -> None:
    root = parse_certificate(issuers["root"].cert)
    assert root.is_ca and root.is_self_signed
    assert root.authority_key_id is None and root.ari_cert_id is None
    assert root.names == ["test root x1"]  # no SAN: the common name
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert, _ = _leaf(issuers["intermediate"], ["rsa.example.com"], key=rsa_key)
    info = parse_certificate(cert)
    assert info.key_type == "rsa2048"
    assert info.common_name is None
    assert info.subject == ""


def test_ari_cert_id_matches_rfc9773_example(issuers: dict[str, Issuer]) -> None:
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert ari_cert_id(aki, 0x87654321) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("ari.example.com"))
        .issuer_name(issuers["intermediate"].cert.subject)
        .public_key(key.public_key())
        .serial_number(0x87654321)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=7))
        .add_extension(
            x509.AuthorityKeyIdentifier(aki, None, None),
            critical=False,
        )
        .sign(issuers["intermediate"].key, hashes.SHA256())
    )
    info = parse_certificate(cert)
    assert info.serial == "87654321"
    assert info.authority_key_id == aki.hex()
    assert info.ari_cert_id == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


@pytest.mark.parametrize(
    ("serial", "encoded"),
    [(1, "AQ"), (0x7F, "fw"), (0x80, "AIA"), (0x0100, "AQA"), (0xFFFF, "AP__")],
)
def test_ari_serial_encoding_keeps_der_sign_octet(serial: int, encoded: str) -> None:
    assert ari_cert_id(b"\x01", serial) == f"AQ.{encoded}"


def test_expires_in(leaf) -> None:
    info = parse_certificate(leaf[0])
    assert expires_in(info, NOW) == timedelta(days=89)
    assert expires_in(info, NOW + timedelta(days=100)) == timedelta(days=-11)
    naive = (NOW + timedelta(days=9)).replace(tzinfo=None)
    assert expires_in(info, naive) == timedelta(days=80)


# --- load_certificates ------------------------------------------------------------------------


def test_load_pem_bundle_skips_key_blocks_and_keeps_order(leaf, issuers: dict[str, Issuer]) -> None:
    cert, key = leaf
    key_pem = key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    bundle = key_pem + cert.public_bytes(PEM) + b"\n" + issuers["intermediate"].pem
    infos = load_certificates(bundle)
    assert [i.common_name for i in infos] == ["www.example.com", "R10"]
    assert infos[1].is_ca


def test_load_pem_without_certificate() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(CertificateParseError, match="no certificate"):
        load_certificates(key_pem, filename="only.key")


def test_load_der(leaf) -> None:
    cert, _ = leaf
    infos = load_certificates(cert.public_bytes(DER), filename="site.der")
    assert [i.fingerprint_sha256 for i in infos] == [cert.fingerprint(hashes.SHA256()).hex()]


def test_load_pkcs7_bundles_leaf_first(leaf, issuers: dict[str, Issuer]) -> None:
    cert, _ = leaf
    bundle = [issuers["intermediate"].cert, cert]  # PKCS#7 has no order
    for encoding in (PEM, DER):
        data = pkcs7.serialize_certificates(bundle, encoding)
        infos = load_certificates(data, filename="site.p7b")
        assert [i.common_name for i in infos] == ["www.example.com", "R10"]


def _p12(leaf, issuers, password: bytes | None) -> bytes:
    cert, key = leaf
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(
        b"site", key, cert, [issuers["intermediate"].cert], encryption
    )


def test_load_pkcs12_with_password(leaf, issuers: dict[str, Issuer]) -> None:
    data = _p12(leaf, issuers, b"changeit")
    infos = load_certificates(data, password=b"changeit", filename="site.pfx")
    assert [i.common_name for i in infos] == ["www.example.com", "R10"]
    # detected without the extension too, password given as text
    assert len(load_certificates(data, password="changeit", filename="blob")) == 2  # type: ignore[arg-type]

    with pytest.raises(CertificatePasswordError, match="password is wrong") as wrong:
        load_certificates(data, password=b"not-it", filename="site.p12")
    assert "not-it" not in str(wrong.value)
    with pytest.raises(CertificatePasswordError, match="password is required"):
        load_certificates(data, filename="site.p12")
    with pytest.raises(CertificatePasswordError):
        load_certificates(data)  # no filename: still recognised as PKCS#12
    assert issubclass(CertificatePasswordError, ValueError)


def test_load_pkcs12_without_password(leaf, issuers: dict[str, Issuer]) -> None:
    data = _p12(leaf, issuers, None)
    infos = load_certificates(data, filename="site.p12")
    assert [i.common_name for i in infos] == ["www.example.com", "R10"]


def test_load_pkcs12_with_only_certificates(leaf, issuers: dict[str, Issuer]) -> None:
    cert, _ = leaf
    data = pkcs12.serialize_key_and_certificates(
        None, None, None, [cert, issuers["intermediate"].cert], serialization.NoEncryption()
    )
    infos = load_certificates(data, filename="certs.p12")
    assert [i.common_name for i in infos] == ["www.example.com", "R10"]


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"", "empty.pem"),
        (b"garbage", "x.crt"),
        (b"\x30\x03\x02\x01\x05", "x.der"),
        (b"garbage", "x.p12"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "bad.pem"),
    ],
)
def test_garbage_is_a_parse_error(data: bytes, filename: str) -> None:
    with pytest.raises(CertificateParseError) as info:
        load_certificates(data, filename=filename)
    assert not isinstance(info.value, CertificatePasswordError)
    assert str(info.value).startswith(f"{filename}: ")


def test_read_certificate_file(tmp_path: Path, leaf, issuers: dict[str, Issuer]) -> None:
    cert, _ = leaf
    (tmp_path / "fullchain.pem").write_bytes(cert.public_bytes(PEM) + issuers["intermediate"].pem)
    (tmp_path / "site.p12").write_bytes(_p12(leaf, issuers, b"changeit"))
    pem_infos = read_certificate_file(tmp_path / "fullchain.pem")
    p12_infos = read_certificate_file(tmp_path / "site.p12", b"changeit")
    assert isinstance(pem_infos[0], CertificateInfo)
    assert [i.fingerprint_sha256 for i in pem_infos] == [i.fingerprint_sha256 for i in p12_infos]


def test_leaf_and_chain(leaf, issuers: dict[str, Issuer]) -> None:
    cert, _ = leaf
    leaf_pem = cert.public_bytes(PEM)
    bundle = leaf_pem + issuers["intermediate"].pem + issuers["root"].pem
    got_leaf, chain = leaf_and_chain(bundle)
    assert got_leaf == leaf_pem
    assert chain == issuers["intermediate"].pem + issuers["root"].pem
    assert leaf_and_chain(leaf_pem) == (leaf_pem, b"")
    with pytest.raises(CertificateParseError):
        leaf_and_chain(b"no pem here")


# --- verify_chain -----------------------------------------------------------------------------


def test_verify_chain_accepts_a_good_chain(leaf, issuers: dict[str, Issuer]) -> None:
    cert, _ = leaf
    verify_chain(cert.public_bytes(PEM), issuers["intermediate"].pem, issuers["root"].pem)
    # a chain that also carries the root is fine
    verify_chain(
        cert.public_bytes(PEM),
        issuers["intermediate"].pem + issuers["root"].pem,
        issuers["root"].pem,
    )


def test_verify_chain_rejects_another_root(leaf, issuers: dict[str, Issuer]) -> None:
    cert, _ = leaf
    with pytest.raises(ValueError, match="does not chain to the given root"):
        verify_chain(cert.public_bytes(PEM), issuers["intermediate"].pem, issuers["other_root"].pem)


def test_verify_chain_rejects_missing_intermediate(leaf, issuers: dict[str, Issuer]) -> None:
    cert, _ = leaf
    with pytest.raises(ValueError, match="does not chain"):
        verify_chain(cert.public_bytes(PEM), b"", issuers["root"].pem)


def test_verify_chain_rejects_an_expired_leaf(leaf, issuers: dict[str, Issuer]) -> None:
    cert, _ = leaf
    later = NOW + timedelta(days=120)
    with pytest.raises(ValueError, match="does not chain"):
        verify_chain(
            cert.public_bytes(PEM), issuers["intermediate"].pem, issuers["root"].pem, at=later
        )


def test_verify_chain_wildcard_and_nameless_leaves(issuers: dict[str, Issuer]) -> None:
    wildcard, _ = _leaf(issuers["intermediate"], ["*.example.com"])
    verify_chain(wildcard.public_bytes(PEM), issuers["intermediate"].pem, issuers["root"].pem)
    ip_only, _ = _leaf(issuers["intermediate"], [], cn="ip only", ips=["192.0.2.1"])
    verify_chain(ip_only.public_bytes(PEM), issuers["intermediate"].pem, issuers["root"].pem)
    with pytest.raises(ValueError, match="does not chain"):
        verify_chain(
            ip_only.public_bytes(PEM), issuers["intermediate"].pem, issuers["other_root"].pem
        )


def test_verify_chain_rejects_unreadable_input(issuers: dict[str, Issuer]) -> None:
    with pytest.raises(ValueError):
        verify_chain(b"garbage", b"", issuers["root"].pem)
    with pytest.raises(ValueError):
        verify_chain(issuers["intermediate"].pem, b"", b"")


# --- bench helpers ----------------------------------------------------------------------------


def test_bench_certificates_scan_cleanly(tmp_path: Path) -> None:
    from collections import Counter

    from bench.make_certs import bare_parse_seconds, iter_certificate_files, make_test_certificates

    make_test_certificates(tmp_path, 12)
    files = sorted(iter_certificate_files(tmp_path))
    assert len(files) == 12
    assert Counter(p.suffix for p in files) == {".pem": 4, ".der": 4, ".p12": 4}
    pem_dirs = {p.parent.name for p in files if p.suffix == ".pem"}
    assert all(p.name == "cert.pem" for p in files if p.suffix == ".pem")
    assert len(pem_dirs) == 4 and all(d.startswith("cert-") for d in pem_dirs)
    leaves = [read_certificate_file(p, b"changeit")[0] for p in files]
    assert len({i.serial for i in leaves}) == 12
    assert Counter(i.issuer_organization for i in leaves) == {"Let's Encrypt": 8, "Other Org": 4}
    assert {i.issuer_common_name for i in leaves} == {"R10", "E5", "Other CA"}
    assert {"ec256", "rsa2048"} <= {i.key_type for i in leaves}
    assert all(i.ari_cert_id for i in leaves)
    assert bare_parse_seconds(tmp_path) > 0
    with pytest.raises(ValueError):
        make_test_certificates(tmp_path, 1, formats=("pfx",))
