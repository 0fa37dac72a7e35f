"""Domain names as ACME (DNS-01) accepts them: normalization and validation.

Every name acmeflow sends to a CA or writes a TXT record for goes through
:func:`normalize_name`: it is stripped, lower-cased, loses a trailing dot, has its unicode
labels IDNA-encoded (A-labels, IDNA 2008 with UTS 46 mapping) and is checked against the
rules public CAs apply. Invalid names raise the catalogued errors users know:
:class:`~core.errors.DomainNeedsDot`, :class:`~core.errors.InvalidDomainName` and, for IP
literals (DNS-01 cannot validate them), :class:`~core.errors.CertificateInvalidDomain`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

import idna

from acmeflow.config.vendors import UnknownVendor, get_preset
from acmeflow.core.errors import (
    AcmeflowError,
    CertificateInvalidDomain,
    DomainNeedsDot,
    InvalidDomainName,
    TooManyNames,
)

__all__ = [
    "MAX_LABEL_LENGTH",
    "MAX_NAME_LENGTH",
    "certificate_names_problem",
    "challenge_base",
    "challenge_record_name",
    "check_name_count",
    "is_wildcard",
    "normalize_name",
    "normalize_names",
]

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
CHALLENGE_LABEL = "_acme-challenge"

_LABEL_CHARS = re.compile(r"[a-z0-9-]+")


def _invalid(name: str, why: str) -> InvalidDomainName:
    return InvalidDomainName(detail=f'Cannot issue for "{name}": {why}')


def _ip_literal(name: str) -> str | None:
    """The IP address ``name`` spells (v4, v6, bracketed v6), or None."""
    candidate = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def _describe_char(char: str) -> str:
    if char == " ":
        return "a space"
    if char == "_":
        return 'an underscore ("_")'
    if char.isprintable():
        return f'"{char}"'
    return f"U+{ord(char):04X}"


def _check_label(name: str, label: str) -> None:
    if not label:
        raise _invalid(name, "Domain name contains an empty label")
    if len(label) > MAX_LABEL_LENGTH:
        raise _invalid(
            name,
            f'label "{label[:20]}..." is {len(label)} characters long '
            f"(at most {MAX_LABEL_LENGTH} are allowed)",
        )
    if not _LABEL_CHARS.fullmatch(label):
        bad = next(c for c in label if not _LABEL_CHARS.fullmatch(c))
        raise _invalid(
            name,
            f"Domain name contains an invalid character: {_describe_char(bad)} "
            "(only letters, digits and hyphens are allowed)",
        )
    if label.startswith("-") or label.endswith("-"):
        raise _invalid(name, f'label "{label}" starts or ends with a hyphen')
    if label[2:4] == "--":
        if not label.startswith("xn--"):
            raise _invalid(
                name,
                f'label "{label}" has hyphens in the third and fourth positions '
                '(reserved for IDNA "xn--" labels)',
            )
        try:
            idna.decode(label)
        except idna.IDNAError as exc:
            raise _invalid(name, f'label "{label}" is not a valid IDNA A-label ({exc})') from None


def canonical_name(name: str) -> str:
    """A DNS name as acmeflow compares and stores it: no surrounding spaces, no trailing dot,
    lower-case (no validation: see :func:`normalize_name` and :func:`normalize_domain`)."""
    return name.strip().rstrip(".").lower()


def name_suffixes(name: str) -> list[str]:
    """``*.a.example.com`` -> [a.example.com, example.com, com] (label boundaries only)."""
    base = canonical_name(name)
    if base.startswith("*."):
        base = base[2:]
    labels = base.split(".")
    return [".".join(labels[i:]) for i in range(len(labels)) if labels[i]]


def is_hostname(name: str, *, need_dot: bool, underscores: bool = False) -> bool:
    """Whether ``name`` (ASCII, canonical) is a syntactically valid DNS name: the label rules of
    :func:`normalize_name`; ``underscores`` allows ``_`` (service labels such as
    ``_acme-challenge``); ``need_dot`` wants two labels or more and a top label not all
    digits."""
    labels = name.split(".")
    if not name or len(name) > MAX_NAME_LENGTH or (need_dot and len(labels) < 2):
        return False
    try:
        for label in labels:
            _check_label(name, label.replace("_", "u") if underscores else label)
    except InvalidDomainName:
        return False
    return not (need_dot and labels[-1].isdigit())


def normalize_domain(domain: str) -> str:
    """A mapped domain in canonical form: lower-case, IDNA, no ``*.``, no trailing dot; an
    invalid one raises :class:`InvalidDomainName`."""
    d = canonical_name(domain)
    if d.startswith("*."):
        d = d[2:]
    try:
        d = d if d.isascii() else d.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidDomainName(detail=f"{domain!r} is not a valid domain name") from None
    if not is_hostname(d, need_dot=False, underscores=True):
        raise InvalidDomainName(detail=f"{domain!r} is not a valid domain name")
    return d


def normalize_name(name: str) -> str:
    """Normalize and validate one DNS name (wildcards allowed) for an ACME order.

    Returns the lower-case ASCII (A-label) form without a trailing dot. Raises
    ``DomainNeedsDot`` for a single-label name, ``CertificateInvalidDomain`` for an IP
    literal and ``InvalidDomainName`` (detail says why) for anything else invalid.
    """
    if not isinstance(name, str):
        raise InvalidDomainName(detail=f"Cannot issue for {name!r}: a domain name must be text")
    original = name
    name = name.strip().lower()
    if name.endswith("."):  # one root dot; "example.com.." keeps an empty label
        name = name[:-1]
    if not name:
        raise InvalidDomainName(detail=f"Cannot issue for {original!r}: the domain name is empty")
    ip = _ip_literal(name)
    if ip is not None:
        raise CertificateInvalidDomain(
            detail=(
                f'Cannot issue for "{name}": IP address {ip} is not a domain name '
                "(DNS-01 validation needs a domain name)"
            )
        )

    wildcard = name.startswith("*.")
    base = name[2:] if wildcard else name
    if "*" in base:
        raise _invalid(
            name,
            'a wildcard "*" is only allowed as the whole leftmost label (as in "*.example.com")',
        )

    if not base.isascii():
        try:
            base = idna.encode(base, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise _invalid(name, f"not a valid internationalized domain name ({exc})") from None
        except UnicodeError as exc:  # e.g. a label too long for punycode
            raise _invalid(name, f"not a valid internationalized domain name ({exc})") from None
        base = base.lower()

    full = f"*.{base}" if wildcard else base
    labels = base.split(".")
    for label in labels:
        _check_label(full, label)
    if len(full) > MAX_NAME_LENGTH:
        raise _invalid(
            full, f"Domain name is {len(full)} characters long (at most {MAX_NAME_LENGTH})"
        )
    if len(labels) < 2:
        if wildcard:
            raise _invalid(
                full, "a wildcard must cover a name with at least one dot (such as *.example.com)"
            )
        raise DomainNeedsDot(
            full, detail=f'"{full}" has a single label; CAs only issue for fully qualified names'
        )
    if labels[-1].isdigit():
        raise _invalid(full, f'the top-level label "{labels[-1]}" is all numeric')
    return full


def normalize_names(names: Iterable[str]) -> list[str]:
    """Normalize every name, drop duplicates (first one wins) and keep the order.

    An empty list raises ``InvalidDomainName``; the first invalid name raises its error.
    """
    if isinstance(names, str):
        names = [names]
    result: list[str] = []
    seen: set[str] = set()
    for raw in names:
        name = normalize_name(raw)
        if name not in seen:
            seen.add(name)
            result.append(name)
    if not result:
        raise InvalidDomainName(detail="No domain name was given: at least one is required")
    return result


def is_wildcard(name: str) -> bool:
    """Whether ``name`` is a wildcard name (``*.example.com``)."""
    return name.strip().startswith("*.")


def challenge_base(name: str) -> str:
    """The name a DNS-01 challenge validates: ``*.example.com`` -> ``example.com``."""
    normalized = normalize_name(name)
    return normalized[2:] if normalized.startswith("*.") else normalized


def challenge_record_name(name: str) -> str:
    """The TXT record name for a DNS-01 challenge: ``_acme-challenge.example.com``."""
    return f"{CHALLENGE_LABEL}.{challenge_base(name)}"


def certificate_names_problem(names: Iterable[str]) -> str | None:
    """Why the names found in an existing certificate cannot be renewed over ACME.

    Returns None when every name is valid, else a one-line reason naming the first bad
    name (suitable as the detail of ``CertificateInvalidDomain``).
    """
    found = False
    for name in names:
        found = True
        try:
            normalize_name(name)
        except DomainNeedsDot as exc:
            return f'"{exc.name}": Domain name needs at least one dot'
        except AcmeflowError as exc:
            return exc.detail or exc.message
    if not found:
        return "the certificate has no DNS name (no subjectAltName DNS entry and no common name)"
    return None


def check_name_count(names: Sequence[str], *, ca: str, vendor: str, default_limit: int) -> None:
    """Refuse more names than the CA ``ca`` accepts in one certificate, before any order:
    the limit of its vendor preset (Let's Encrypt: 100), else ``default_limit``."""
    try:
        limit = get_preset(vendor).max_names or default_limit
    except UnknownVendor:
        limit = default_limit
    if len(names) > limit:
        raise TooManyNames(
            detail=f"{len(names)} names requested; the CA {ca} accepts at most {limit} names "
            "per certificate: split them over several certificates"
        )
