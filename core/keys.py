"""Private keys and CSRs: generate, load (PEM/DER, encrypted or not), build and check.

Only key types public ACME CAs accept are allowed: RSA (2048 to 8192 bits) and ECDSA on
P-256, P-384 or P-521. Errors never contain key material or passphrases.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from acmeflow.core.errors import InvalidContact, InvalidCSR, InvalidKey
from acmeflow.core.names import normalize_name, normalize_names

__all__ = [
    "DEFAULT_KEY_TYPE",
    "KEY_TYPES",
    "CSRFields",
    "KeyType",
    "ParsedCSR",
    "SupportedPrivateKey",
    "build_csr",
    "generate_private_key",
    "key_type_of",
    "load_csr",
    "load_private_key",
    "private_key_pem",
    "public_key_der",
]

KeyType = Literal["ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"]
KEY_TYPES: tuple[str, ...] = get_args(KeyType)
DEFAULT_KEY_TYPE: KeyType = "ec256"

SupportedPrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
_SUPPORTED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_CURVES: dict[str, ec.EllipticCurve] = {"ec256": ec.SECP256R1(), "ec384": ec.SECP384R1()}
_ACCEPTED = "use an RSA (2048-4096 bits) or ECDSA P-256/P-384 key"

# Maximum lengths from RFC 5280 (ub-* upper bounds).
_MAX_CN = 64
_MAX_LEN = {
    "organization": 64,
    "organizational_unit": 64,
    "locality": 128,
    "state": 128,
    "email": 128,
}

# ISO 3166-1 alpha-2 officially assigned codes.
_ISO_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ
    DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP
    GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG
    KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML
    MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE
    PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL
    SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM
    US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
_ISO_COUNTRIES = frozenset(_ISO_CODES.split())
_COUNTRY_HINTS = {"UK": "GB", "EL": "GR"}

_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]"
)


# --- keys ------------------------------------------------------------------------------------


def key_type_of(key: Any) -> str:
    """Short key type name of a private or public key: ``ec256``, ``rsa2048``, ``rsa3000``..."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.name in _SUPPORTED_CURVES:
            return f"ec{key.curve.key_size}"
        return f"ec-{key.curve.name}"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return f"dsa{key.key_size}"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "ed448"
    if isinstance(key, x25519.X25519PrivateKey | x25519.X25519PublicKey):
        return "x25519"
    if isinstance(key, x448.X448PrivateKey | x448.X448PublicKey):
        return "x448"
    name = type(key).__name__.lower()
    for suffix in ("privatekey", "publickey"):
        name = name.removesuffix(suffix)
    return name or "unknown"


def _unsupported_reason(key: Any) -> str | None:
    """Why a (private or public) key cannot be used with a public ACME CA, or None."""
    kind = key_type_of(key)
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            return (
                f"RSA keys of {key.key_size} bits are not accepted "
                f"(RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits); {_ACCEPTED}"
            )
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.name not in _SUPPORTED_CURVES:
            return f"the elliptic curve {key.curve.name} is not accepted by public CAs; {_ACCEPTED}"
        return None
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        kind = "dsa"
    label = {"ed25519": "Ed25519", "ed448": "Ed448", "x25519": "X25519", "x448": "X448"}.get(
        kind, kind.upper()
    )
    return f"{label} keys are not accepted by public CAs; {_ACCEPTED}"


def generate_private_key(key_type: KeyType = DEFAULT_KEY_TYPE) -> bytes:
    """Generate a private key of ``key_type``; returns unencrypted PKCS#8 PEM."""
    key: SupportedPrivateKey
    if key_type in _CURVES:
        key = ec.generate_private_key(_CURVES[key_type])
    elif key_type in ("rsa2048", "rsa3072", "rsa4096"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    else:
        raise InvalidKey(
            detail=f"unknown key type {key_type!r}: choose one of {', '.join(KEY_TYPES)}"
        )
    return private_key_pem(key)


def _load_one(
    loader: Callable[..., Any], data: bytes, passphrase: bytes | None
) -> Any:  # returns PrivateKeyTypes
    try:
        return loader(data, password=passphrase)
    except TypeError as exc:
        text = str(exc)
        if "not encrypted" in text:  # a passphrase was given for a plain key: ignore it
            return loader(data, password=None)
        if "encrypted" in text:
            raise InvalidKey(
                detail="the private key is encrypted: a passphrase is required"
            ) from None
        raise


def load_private_key(data: bytes, passphrase: bytes | None = None) -> SupportedPrivateKey:
    """Load a private key from PEM (PKCS#8 or traditional, encrypted or not) or DER.

    Raises ``InvalidKey`` for a wrong or missing passphrase, unreadable data and key types
    public CAs refuse (DSA, Ed25519, small RSA, ...). The detail never holds key material.
    """
    if isinstance(passphrase, str):
        passphrase = passphrase.encode()
    if passphrase == b"":
        passphrase = None
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, bytes | bytearray) or not data.strip():
        raise InvalidKey(detail="the private key is empty")
    data = bytes(data)
    loader: Callable[..., Any] = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        key = _load_one(loader, data, passphrase)
    except InvalidKey:
        raise
    except UnsupportedAlgorithm:
        raise InvalidKey(
            detail=f"the private key uses an unsupported algorithm; {_ACCEPTED}"
        ) from None
    except (ValueError, TypeError) as exc:
        text = str(exc).lower()
        # legacy PEM encryption has no integrity check: a wrong passphrase can also decrypt
        # to bytes that fail to parse, so an encrypted key that fails to load is a wrong one
        encrypted = passphrase is not None and b"ENCRYPTED" in data
        if encrypted or "password" in text or "decrypt" in text:
            raise InvalidKey(
                detail="the passphrase is wrong: the private key could not be decrypted"
            ) from None
        if b"-----BEGIN" in data and b"PRIVATE KEY-----" not in data:
            raise InvalidKey(detail="the PEM data holds no private key block") from None
        raise InvalidKey(
            detail="the data is not a private key in PEM (PKCS#8 or traditional) or DER"
        ) from None
    reason = _unsupported_reason(key)
    if reason is not None:
        raise InvalidKey(detail=reason)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key


def private_key_pem(key: SupportedPrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_der(key: Any) -> bytes:
    """DER SubjectPublicKeyInfo of a private or public key (to compare keys)."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    data: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


# --- CSR fields ------------------------------------------------------------------------------


def _clean_text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidCSR(detail=f"{field} must be text")
    value = value.strip()
    if not value:
        return None
    limit = _MAX_LEN.get(field)
    if limit is not None and len(value) > limit:
        raise InvalidCSR(
            detail=f"{field} is {len(value)} characters long (at most {limit} are allowed)"
        )
    if any(not c.isprintable() for c in value):
        raise InvalidCSR(detail=f"{field} contains control characters")
    return value


def _clean_country(value: Any) -> str | None:
    text = _clean_text("country", value)
    if text is None:
        return None
    code = text.upper()
    if code not in _ISO_COUNTRIES:
        hint = f' (did you mean "{_COUNTRY_HINTS[code]}"?)' if code in _COUNTRY_HINTS else ""
        raise InvalidCSR(detail=f'country "{text}" is not a two-letter ISO 3166 country code{hint}')
    return code


def _clean_email(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidContact(detail="the email address must be text")
    text = value.strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:") :]
    if not text:
        return None
    if len(text) > _MAX_LEN["email"] or not _EMAIL.fullmatch(text):
        raise InvalidContact(detail=f'"{text[: _MAX_LEN["email"]]}" is not a valid email address')
    return text


class CSRFields(BaseModel):
    """What goes into a CSR: names (subjectAltName) and the optional subject fields.

    Names are normalized with :func:`core.names.normalize_names`; the common name defaults
    to the first name and is always among the names (added first when missing). Empty
    fields are omitted from the subject.
    """

    model_config = ConfigDict(extra="forbid")

    common_name: str | None = None
    names: list[str] = []
    organization: str | None = None
    organizational_unit: str | None = None
    locality: str | None = None
    state: str | None = None
    country: str | None = None
    email: str | None = None

    @field_validator("organization", "organizational_unit", "locality", "state", mode="before")
    @classmethod
    def _text(cls, value: Any, info: Any) -> str | None:
        return _clean_text(info.field_name, value)

    @field_validator("country", mode="before")
    @classmethod
    def _country(cls, value: Any) -> str | None:
        return _clean_country(value)

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: Any) -> str | None:
        return _clean_email(value)

    @field_validator("common_name", mode="before")
    @classmethod
    def _cn(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _names(self) -> CSRFields:
        names = normalize_names(self.names) if self.names else []
        if self.common_name is not None:
            cn = normalize_name(self.common_name)
            if cn not in names:
                names = [cn, *names]
        else:
            names = normalize_names(names)  # raises for an empty list
            cn = names[0]
        self.common_name = cn
        self.names = names
        return self

    def subject(self) -> x509.Name:
        """The X.509 subject: C, ST, L, O, OU, CN, emailAddress (absent fields omitted)."""
        attrs: list[x509.NameAttribute[str]] = []
        pairs: list[tuple[x509.ObjectIdentifier, str | None]] = [
            (NameOID.COUNTRY_NAME, self.country),
            (NameOID.STATE_OR_PROVINCE_NAME, self.state),
            (NameOID.LOCALITY_NAME, self.locality),
            (NameOID.ORGANIZATION_NAME, self.organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
            (
                NameOID.COMMON_NAME,
                self.common_name if self.common_name and len(self.common_name) <= _MAX_CN else None,
            ),
            (NameOID.EMAIL_ADDRESS, self.email),
        ]
        for oid, value in pairs:
            if value:
                attrs.append(x509.NameAttribute(oid, value))
        return x509.Name(attrs)


def build_csr(key_pem: bytes, fields: CSRFields, passphrase: bytes | None = None) -> bytes:
    """Build a SHA-256 signed CSR (PEM) for ``fields`` with the key in ``key_pem``."""
    key = load_private_key(key_pem, passphrase)
    subject = fields.subject()
    san = x509.SubjectAlternativeName([x509.DNSName(name) for name in fields.names])
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        # RFC 5280 4.2.1.6: the SAN is critical when the subject is empty.
        .add_extension(san, critical=len(subject) == 0)
    )
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


# --- CSR parsing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCSR:
    """A loaded, verified CSR: its PEM, its validated names, subject fields and key type."""

    pem: bytes
    names: list[str]
    fields: CSRFields
    key_type: str


def name_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    """The first value of ``oid`` in an X.509 name (subject or issuer), or ``None``."""
    attrs = name.get_attributes_for_oid(oid)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def load_csr(
    data: bytes, key_pem: bytes | None = None, passphrase: bytes | None = None
) -> ParsedCSR:
    """Load a CSR (PEM or DER), verify its signature and names, and match it to ``key_pem``.

    Raises ``InvalidCSR`` for unreadable data or a bad signature, the name errors of
    :func:`core.names.normalize_names` for invalid names and ``InvalidKey`` when the key
    does not match the CSR.
    """
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, bytes | bytearray) or not data.strip():
        raise InvalidCSR(detail="the CSR is empty")
    data = bytes(data)
    try:
        if b"-----BEGIN" in data:
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError:
        raise InvalidCSR(
            detail="the data is not a certificate signing request (PKCS#10) in PEM or DER"
        ) from None
    try:
        public = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidCSR(detail="the CSR's public key uses an unsupported algorithm") from None
    reason = _unsupported_reason(public)
    if reason is not None:
        raise InvalidCSR(detail=f"the CSR's key cannot be used: {reason}")
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        signature_ok = False
    if not signature_ok:
        raise InvalidCSR(
            detail="the CSR signature does not verify (the CSR was altered or is corrupt)"
        )

    try:
        extensions = csr.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise InvalidCSR(detail=f"the CSR's extensions cannot be read ({exc})") from None
    san_names: list[str] = []
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        san_names.extend(san.get_values_for_type(x509.DNSName))
        # IP addresses cannot be validated over DNS-01: let normalize_names reject them.
        san_names.extend(str(ip) for ip in san.get_values_for_type(x509.IPAddress))

    subject = csr.subject
    common_name = name_attribute(subject, NameOID.COMMON_NAME)
    raw: dict[str, Any] = {
        "organization": name_attribute(subject, NameOID.ORGANIZATION_NAME),
        "organizational_unit": name_attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        "locality": name_attribute(subject, NameOID.LOCALITY_NAME),
        "state": name_attribute(subject, NameOID.STATE_OR_PROVINCE_NAME),
        "country": name_attribute(subject, NameOID.COUNTRY_NAME),
        "email": name_attribute(subject, NameOID.EMAIL_ADDRESS),
    }
    # Subject fields of an uploaded CSR are informational: drop the ones we would refuse.
    cleaners: dict[str, Callable[[Any], str | None]] = {
        "country": _clean_country,
        "email": _clean_email,
    }
    optional: dict[str, str | None] = {}
    for field, value in raw.items():
        cleaner = cleaners.get(field)
        try:
            optional[field] = cleaner(value) if cleaner is not None else _clean_text(field, value)
        except (InvalidCSR, InvalidContact):
            optional[field] = None

    names = normalize_names(san_names or ([common_name] if common_name else []))
    fields = CSRFields(common_name=common_name, names=names, **optional)
    if key_pem is not None:
        key = load_private_key(key_pem, passphrase)
        if public_key_der(key) != public_key_der(public):
            raise InvalidKey(detail="the private key does not match the CSR's public key")
    return ParsedCSR(
        pem=csr.public_bytes(serialization.Encoding.PEM),
        names=fields.names,
        fields=fields,
        key_type=key_type_of(public),
    )
