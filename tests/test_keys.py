"""Private keys, CSR fields, CSR building and loading (core.keys)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from acmeflow.core.errors import (
    CertificateInvalidDomain,
    DomainNeedsDot,
    InvalidContact,
    InvalidCSR,
    InvalidDomainName,
    InvalidKey,
)
from acmeflow.core.keys import (
    DEFAULT_KEY_TYPE,
    KEY_TYPES,
    CSRFields,
    build_csr,
    generate_private_key,
    key_type_of,
    load_csr,
    load_private_key,
    private_key_pem,
)

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    """One generated key per supported type (RSA 4096 is slow: generated once)."""
    return {key_type: generate_private_key(key_type) for key_type in KEY_TYPES}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ec_key(keys: dict[str, bytes]) -> bytes:
    return keys["ec256"]


def _encrypted(pem: bytes, fmt: serialization.PrivateFormat) -> bytes:
    key = serialization.load_pem_private_key(pem, None)
    return key.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(PASSPHRASE)
    )


def _raw_csr(key, *, cn: str | None, dns: Sequence[str] = (), ips: Sequence[str] = ()) -> bytes:
    import ipaddress

    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    general = [x509.DNSName(n) for n in dns] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips
    ]
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# --- keys -------------------------------------------------------------------------------------


def test_default_key_type_is_ec256() -> None:
    assert DEFAULT_KEY_TYPE == "ec256"
    assert set(KEY_TYPES) == {"ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"}


def test_generated_keys_are_unencrypted_pkcs8_of_the_right_type(keys: dict[str, bytes]) -> None:
    for key_type, pem in keys.items():
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        key = load_private_key(pem)
        assert key_type_of(key) == key_type
        assert key_type_of(key.public_key()) == key_type
        assert private_key_pem(key) == pem


def test_unknown_key_type_is_refused() -> None:
    with pytest.raises(InvalidKey) as info:
        generate_private_key("rsa1024")  # type: ignore[arg-type]
    assert "ec256" in (info.value.detail or "")


def test_key_type_of_odd_sizes_and_other_algorithms() -> None:
    odd = rsa.generate_private_key(public_exponent=65537, key_size=3000)
    assert key_type_of(odd) == "rsa3000"
    assert key_type_of(ec.generate_private_key(ec.SECP521R1())) == "ec521"
    assert key_type_of(ed25519.Ed25519PrivateKey.generate()) == "ed25519"


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
@pytest.mark.parametrize("key_type", ["ec256", "rsa2048"])
def test_encrypted_key_with_right_and_wrong_passphrase(
    keys: dict[str, bytes], key_type: str, fmt: serialization.PrivateFormat
) -> None:
    pem = _encrypted(keys[key_type], fmt)
    key = load_private_key(pem, PASSPHRASE)
    assert private_key_pem(key) == keys[key_type]

    with pytest.raises(InvalidKey) as wrong:
        load_private_key(pem, b"wrong passphrase")
    assert "passphrase is wrong" in (wrong.value.detail or "")
    with pytest.raises(InvalidKey) as missing:
        load_private_key(pem)
    assert "passphrase is required" in (missing.value.detail or "")
    for err in (wrong.value, missing.value):
        assert "wrong passphrase" not in str(err)
        assert PASSPHRASE.decode() not in str(err)
        assert "BEGIN" not in str(err)


def test_passphrase_for_an_unencrypted_key_is_ignored(ec_key: bytes) -> None:
    assert private_key_pem(load_private_key(ec_key, b"unneeded")) == ec_key


def test_traditional_and_der_keys_load(keys: dict[str, bytes]) -> None:
    for key_type in ("ec384", "rsa2048"):
        key = serialization.load_pem_private_key(keys[key_type], None)
        traditional = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        assert b"BEGIN PRIVATE KEY" not in traditional
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        encrypted_der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE),
        )
        for data, passphrase in ((traditional, None), (der, None), (encrypted_der, PASSPHRASE)):
            assert private_key_pem(load_private_key(data, passphrase)) == keys[key_type]


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: dsa.generate_private_key(1024), "DSA keys are not accepted"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "Ed25519 keys are not accepted"),
        (lambda: rsa.generate_private_key(65537, 1024), "1024 bits"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "secp256k1"),
    ],
)
def test_key_types_public_cas_refuse(make, why: str) -> None:
    pem = make().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidKey) as info:
        load_private_key(pem)
    assert why in (info.value.detail or "")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"not a key at all", "not a private key"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "no private key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a private key"),
    ],
)
def test_garbage_keys_are_invalid(data: bytes, why: str) -> None:
    with pytest.raises(InvalidKey) as info:
        load_private_key(data)
    assert why in (info.value.detail or "")
    assert info.value.message == "Invalid private key provided. Please check the key and try again."


def test_truncated_key_detail_has_no_key_material(ec_key: bytes) -> None:
    truncated = ec_key[: len(ec_key) // 2] + b"\n-----END PRIVATE KEY-----\n"
    with pytest.raises(InvalidKey) as info:
        load_private_key(truncated)
    body = b"".join(ec_key.splitlines()[1:-1]).decode()
    for chunk in (body[i : i + 16] for i in range(0, len(body) - 16, 16)):
        assert chunk not in str(info.value)


# --- CSR fields -------------------------------------------------------------------------------


def test_csr_fields_normalize_and_default_the_common_name() -> None:
    fields = CSRFields(names=["WWW.Example.com", "example.com", "www.example.com."])
    assert fields.names == ["www.example.com", "example.com"]
    assert fields.common_name == "www.example.com"


def test_csr_fields_put_a_missing_common_name_first() -> None:
    fields = CSRFields(common_name="Example.COM", names=["www.example.com"])
    assert fields.common_name == "example.com"
    assert fields.names == ["example.com", "www.example.com"]
    only_cn = CSRFields(common_name="bücher.example")
    assert only_cn.names == ["xn--bcher-kva.example"]


def test_csr_fields_name_errors_are_catalog_errors() -> None:
    with pytest.raises(DomainNeedsDot):
        CSRFields(names=["testdomain"])
    with pytest.raises(CertificateInvalidDomain):
        CSRFields(names=["example.com", "192.0.2.1"])
    with pytest.raises(InvalidDomainName):
        CSRFields(names=[])
    with pytest.raises(InvalidDomainName):
        CSRFields(common_name="bad_name.example.com", names=["example.com"])


def test_csr_fields_country_and_email() -> None:
    fields = CSRFields(
        names=["example.com"], country=" de ", email=" admin@example.com ", organization="  "
    )
    assert fields.country == "DE"
    assert fields.email == "admin@example.com"
    assert fields.organization is None
    with pytest.raises(InvalidCSR) as bad_country:
        CSRFields(names=["example.com"], country="UK")
    assert '"GB"' in (bad_country.value.detail or "")
    with pytest.raises(InvalidCSR):
        CSRFields(names=["example.com"], country="USA")
    for email in ("not-an-email", "a@b", "two@@example.com", "sp ace@example.com"):
        with pytest.raises(InvalidContact) as info:
            CSRFields(names=["example.com"], email=email)
        assert info.value.message == (
            "Error validating contact(s) :: unable to parse email address"
        )


def test_csr_fields_limit_lengths() -> None:
    with pytest.raises(InvalidCSR) as info:
        CSRFields(names=["example.com"], organization="O" * 65)
    assert "organization" in (info.value.detail or "")


# --- build_csr / load_csr ---------------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(KEY_TYPES))
def test_csr_round_trip_for_every_key_type(keys: dict[str, bytes], key_type: str) -> None:
    fields = CSRFields(
        common_name="example.com",
        names=["example.com", "*.example.com", "bücher.example"],
        organization="Example Corp",
        organizational_unit="Platform",
        locality="Berlin",
        state="Berlin",
        country="de",
        email="pki@example.com",
    )
    pem = build_csr(keys[key_type], fields)
    csr = x509.load_pem_x509_csr(pem)
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == [
        "example.com",
        "*.example.com",
        "xn--bcher-kva.example",
    ]
    assert not san.critical
    assert csr.subject.rfc4514_string() == (
        "1.2.840.113549.1.9.1=pki@example.com,CN=example.com,OU=Platform,"
        "O=Example Corp,L=Berlin,ST=Berlin,C=DE"
    )

    parsed = load_csr(pem, keys[key_type])
    assert parsed.key_type == key_type
    assert parsed.names == ["example.com", "*.example.com", "xn--bcher-kva.example"]
    assert parsed.fields == fields
    assert parsed.pem == pem


def test_csr_with_encrypted_key(ec_key: bytes) -> None:
    encrypted = _encrypted(ec_key, serialization.PrivateFormat.PKCS8)
    fields = CSRFields(names=["example.com"])
    pem = build_csr(encrypted, fields, PASSPHRASE)
    assert load_csr(pem, encrypted, PASSPHRASE).names == ["example.com"]
    with pytest.raises(InvalidKey):
        build_csr(encrypted, fields, b"nope")


def test_csr_subject_omits_empty_fields_and_long_common_name(ec_key: bytes) -> None:
    long_name = ("a" * 60) + ".example.com"
    pem = build_csr(ec_key, CSRFields(names=[long_name, "example.com"]))
    csr = x509.load_pem_x509_csr(pem)
    assert len(csr.subject) == 0
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # an empty subject makes the SAN critical (RFC 5280)
    assert san.value.get_values_for_type(x509.DNSName) == [long_name, "example.com"]
    parsed = load_csr(pem, ec_key)
    assert parsed.names == [long_name, "example.com"]
    assert parsed.fields.common_name == long_name


def test_load_csr_accepts_der_and_new_certificate_request_header(ec_key: bytes) -> None:
    pem = build_csr(ec_key, CSRFields(names=["example.com"]))
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    assert load_csr(der, ec_key).names == ["example.com"]
    legacy = pem.replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")
    assert load_csr(legacy).names == ["example.com"]


def test_load_csr_adds_common_name_missing_from_san(ec_key: bytes) -> None:
    key = load_private_key(ec_key)
    pem = _raw_csr(key, cn="Example.com", dns=["www.example.com"])
    assert load_csr(pem).names == ["example.com", "www.example.com"]
    cn_only = _raw_csr(key, cn="cn-only.example.com")
    assert load_csr(cn_only).names == ["cn-only.example.com"]


def test_load_csr_with_mismatched_key(keys: dict[str, bytes]) -> None:
    pem = build_csr(keys["ec256"], CSRFields(names=["example.com"]))
    with pytest.raises(InvalidKey) as info:
        load_csr(pem, keys["rsa2048"])
    assert "does not match the CSR" in (info.value.detail or "")
    other_ec = generate_private_key("ec256")
    with pytest.raises(InvalidKey):
        load_csr(pem, other_ec)


def test_load_csr_with_tampered_signature(ec_key: bytes) -> None:
    pem = build_csr(ec_key, CSRFields(names=["aaaa.example.com"]))
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    assert der.count(b"aaaa") == 2  # in the subject CN and in the SAN
    tampered = der.replace(b"aaaa", b"bbbb")
    with pytest.raises(InvalidCSR) as info:
        load_csr(tampered)
    assert "signature does not verify" in (info.value.detail or "")


@pytest.mark.parametrize(
    ("dns", "ips", "error"),
    [
        (["bad_name.example.com"], [], InvalidDomainName),
        (["testdomain"], [], DomainNeedsDot),
        (["example.com"], ["192.0.2.1"], CertificateInvalidDomain),
        (["example.com"], ["::1"], CertificateInvalidDomain),
        (["a*.example.com"], [], InvalidDomainName),
    ],
)
def test_load_csr_with_invalid_names(ec_key: bytes, dns, ips, error) -> None:
    key = load_private_key(ec_key)
    with pytest.raises(error):
        load_csr(_raw_csr(key, cn=None, dns=dns, ips=ips))


def test_load_csr_without_any_name(ec_key: bytes) -> None:
    key = load_private_key(ec_key)
    with pytest.raises(InvalidDomainName):
        load_csr(_raw_csr(key, cn=None))


def test_load_csr_refuses_unsupported_key_types() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")]))
        .sign(key, None)
    )
    with pytest.raises(InvalidCSR) as info:
        load_csr(csr.public_bytes(serialization.Encoding.PEM))
    assert "Ed25519" in (info.value.detail or "")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
    ],
)
def test_load_csr_garbage(data: bytes) -> None:
    with pytest.raises(InvalidCSR) as info:
        load_csr(data)
    assert info.value.message == "Invalid CSR provided. Please check the CSR and try again."


def test_load_csr_drops_unusable_subject_fields(ec_key: bytes) -> None:
    key = load_private_key(ec_key)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "example.com"),
                    x509.NameAttribute(NameOID.EMAIL_ADDRESS, "not an email"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    parsed = load_csr(csr.public_bytes(serialization.Encoding.PEM))
    assert parsed.fields.country is None
    assert parsed.fields.email is None
    assert parsed.fields.organization == "Example Corp"
    assert parsed.names == ["example.com"]
