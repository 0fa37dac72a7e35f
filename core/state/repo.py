"""Repository functions over a :class:`~sqlalchemy.orm.Session` (used by the CLI and tasks).

Every function validates all of its input before it changes anything, so a function that
raises leaves the session as it found it. Functions flush (ids are available) but never
commit: the caller's :func:`core.state.db.session_scope` does. Errors are catalog errors
(:mod:`core.errors`). Secret columns are sealed here (:mod:`core.secrets`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from acmeflow.config.vendors import UnknownVendor, VendorPreset, get_preset
from acmeflow.core.errors import (
    CAConfigMissing,
    ConfigError,
    DNSProviderUnavailable,
    InvalidContact,
    NotFound,
)
from acmeflow.core.names import is_hostname, normalize_domain
from acmeflow.core.secrets import BlockResolver, SecretBox, default_box, seal_all, unseal_all
from acmeflow.core.state.models import (
    CERT_SOURCES,
    CERT_STATUSES,
    ENROLLMENTS,
    LOG_KINDS,
    LOG_STATUSES,
    AcmeAccount,
    CAVendor,
    Certificate,
    DNSProviderConfig,
    DomainMapping,
    LogEntry,
    utcnow,
)
from acmeflow.core.stores import STORE_KINDS, names_digest

# --- validation helpers --------------------------------------------------------------------

_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_TLD = re.compile(r"^([a-z]{2,63}|xn--[a-z0-9-]{1,59})$")


def vendor_preset(vendor_id: str) -> VendorPreset:
    """The vendor preset ``vendor_id``; unknown raises :class:`CAConfigMissing`."""
    try:
        return get_preset(vendor_id)
    except UnknownVendor as exc:
        raise CAConfigMissing(detail=exc.detail) from None


def validate_email(address: str) -> str:
    """One contact address (``mailto:`` allowed), returned bare; else :class:`InvalidContact`."""
    addr = address.strip()
    if addr.lower().startswith("mailto:"):
        addr = addr[len("mailto:") :]
    local, at, domain = addr.rpartition("@")
    ok = (
        bool(at)
        and 0 < len(local) <= 64
        and len(addr) <= 254
        and _EMAIL_LOCAL.match(local) is not None
        and is_hostname(domain.lower(), need_dot=True)
        and _TLD.match(domain.lower().rsplit(".", 1)[-1]) is not None
    )
    if not ok:
        raise InvalidContact(detail=f"{address!r} is not an email address (local@domain.tld)")
    return f"{local}@{domain.lower()}"


def validate_contacts(value: str | Sequence[str] | None) -> str:
    """A comma-separated list of contact emails, validated and normalised."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    emails = [validate_email(v) for v in items if v.strip()]
    if not emails:
        raise InvalidContact(detail="a contact email address is required")
    return ", ".join(emails)


def _validate_url(url: str, what: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigError(detail=f"{what} must be an http(s) URL (got {url!r})")
    return url


def _validate_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(detail=f"a {what} name is required")
    if name != name.strip() or len(name) > 100 or any(c in name for c in "\r\n\t"):
        raise ConfigError(detail=f"invalid {what} name {name!r} (1-100 characters, no padding)")
    return name


def _validate_renew_days(days: Any) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        raise ConfigError(detail=f"renew_days must be a whole number of days >= 1 (got {days!r})")
    return days


def _box(box: SecretBox | None) -> SecretBox:
    return box or default_box()


# --- CA vendors ------------------------------------------------------------------------------

_CA_FIELDS = {
    "name",
    "vendor",
    "email",
    "directory_url",
    "eab_kid",
    "eab_hmac_key",
    "ca_bundle",
    "renew_days",
    "profile",
    "preferred_chain",
    "issuer_names",
    "active",
}


def _find_ca(s: Session, name: str) -> CAVendor | None:
    return s.scalars(select(CAVendor).where(CAVendor.name == name)).one_or_none()


def _check_ca(
    *,
    preset: VendorPreset,
    directory_url: str | None,
    eab_kid: str | None,
    has_eab_hmac: bool,
    ca_bundle: str | None,
) -> str:
    """Validate a CA configuration; returns the directory URL to store."""
    url = directory_url or preset.directory_url
    if not url:
        raise ConfigError(detail=f"the {preset.label} vendor needs an ACME directory URL")
    url = _validate_url(url, "directory_url")
    if bool(eab_kid) != has_eab_hmac:
        raise ConfigError(detail="External Account Binding needs both eab_kid and eab_hmac_key")
    if preset.eab_required and not eab_kid:
        raise ConfigError(
            detail=f"{preset.label} requires External Account Binding (eab_kid and eab_hmac_key)"
        )
    if ca_bundle is not None and "-----BEGIN CERTIFICATE-----" not in ca_bundle:
        raise ConfigError(detail="ca_bundle must be PEM certificates")
    return url


def add_ca(
    s: Session,
    *,
    name: str,
    vendor: str,
    email: str,
    directory_url: str | None = None,
    eab_kid: str | None = None,
    eab_hmac_key: str | None = None,
    ca_bundle: str | None = None,
    renew_days: int | None = None,
    profile: str | None = None,
    preferred_chain: str | None = None,
    active: bool = True,
    box: SecretBox | None = None,
) -> CAVendor:
    """Add a CA vendor. ``eab_hmac_key`` is a literal or a reference; it is sealed here."""
    _validate_name(name, "CA vendor")
    preset = vendor_preset(vendor)
    contacts = validate_contacts(email)
    url = _check_ca(
        preset=preset,
        directory_url=directory_url,
        eab_kid=eab_kid,
        has_eab_hmac=bool(eab_hmac_key),
        ca_bundle=ca_bundle,
    )
    days = _validate_renew_days(preset.default_renew_days if renew_days is None else renew_days)
    if _find_ca(s, name) is not None:
        raise ConfigError(detail=f"a CA vendor named {name!r} already exists")
    ca = CAVendor(
        name=name,
        vendor=preset.id,
        email=contacts,
        directory_url=url,
        eab_kid=eab_kid or None,
        eab_hmac_key=_box(box).seal(eab_hmac_key) if eab_hmac_key else None,
        ca_bundle=ca_bundle,
        renew_days=days,
        profile=profile or None,
        preferred_chain=preferred_chain or None,
        issuer_names=list(preset.issuer_names),
        active=active,
    )
    s.add(ca)
    s.flush()
    return ca


def get_ca(s: Session, name: str | None) -> CAVendor:
    """The active CA vendor ``name``; missing, empty or inactive raises CAConfigMissing."""
    if not name or not name.strip():
        raise CAConfigMissing(detail="no CA vendor given")
    ca = _find_ca(s, name)
    if ca is None:
        raise CAConfigMissing(detail=f"no CA vendor named {name!r}")
    if not ca.active:
        raise CAConfigMissing(detail=f"CA vendor {name!r} is not active")
    return ca


def list_cas(s: Session, *, include_inactive: bool = True) -> list[CAVendor]:
    """Every CA vendor, by name."""
    q = select(CAVendor).order_by(CAVendor.name)
    if not include_inactive:
        q = q.where(CAVendor.active.is_(True))
    return list(s.scalars(q))


def update_ca(
    s: Session, name: str, /, *, box: SecretBox | None = None, **changes: Any
) -> CAVendor:
    """Change fields of CA vendor ``name`` (active or not); same checks as :func:`add_ca`.

    ``eab_hmac_key`` is sealed; ``None`` for an optional field clears it; ``name=`` renames.
    """
    unknown = set(changes) - _CA_FIELDS
    if unknown:
        raise ConfigError(detail=f"unknown CA vendor field(s): {', '.join(sorted(unknown))}")
    ca = _find_ca(s, name)
    if ca is None:
        raise CAConfigMissing(detail=f"no CA vendor named {name!r}")
    new: dict[str, Any] = {}
    if "name" in changes and changes["name"] != ca.name:
        new_name = _validate_name(changes["name"], "CA vendor")
        if _find_ca(s, new_name) is not None:
            raise ConfigError(detail=f"a CA vendor named {new_name!r} already exists")
        new["name"] = new_name
    preset = vendor_preset(changes.get("vendor", ca.vendor))
    if "vendor" in changes:
        new["vendor"] = preset.id
    if "email" in changes:
        new["email"] = validate_contacts(changes["email"])
    if "renew_days" in changes:
        new["renew_days"] = _validate_renew_days(changes["renew_days"])
    has_hmac = bool(changes["eab_hmac_key"]) if "eab_hmac_key" in changes else bool(ca.eab_hmac_key)
    directory_url = changes.get("directory_url", ca.directory_url)
    if "vendor" in changes and "directory_url" not in changes and preset.directory_url:
        directory_url = preset.directory_url  # switching vendor moves to its directory
    new["directory_url"] = _check_ca(
        preset=preset,
        directory_url=directory_url,
        eab_kid=changes.get("eab_kid", ca.eab_kid),
        has_eab_hmac=has_hmac,
        ca_bundle=changes.get("ca_bundle", ca.ca_bundle),
    )
    for field in ("eab_kid", "ca_bundle", "profile", "preferred_chain"):
        if field in changes:
            new[field] = changes[field] or None
    if "eab_hmac_key" in changes:
        hmac = changes["eab_hmac_key"]
        new["eab_hmac_key"] = _box(box).seal(hmac) if hmac else None
    if "issuer_names" in changes:
        new["issuer_names"] = _clean_issuer_names(changes["issuer_names"] or [])
    if "active" in changes:
        new["active"] = bool(changes["active"])
    for field, value in new.items():
        setattr(ca, field, value)
    s.flush()
    return ca


def _clean_issuer_names(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for n in names:
        n = n.strip()
        if n and n.casefold() not in seen:
            seen.add(n.casefold())
            out.append(n)
    return out


def add_issuer_names(s: Session, ca: CAVendor, names: Iterable[str]) -> list[str]:
    """Teach ``ca`` more issuer CN/O values (e.g. learned from a certificate it issued)."""
    merged = _clean_issuer_names([*ca.issuer_names, *names])
    if merged != list(ca.issuer_names):
        ca.issuer_names = merged
        s.flush()
    return merged


def remove_ca(s: Session, name: str, *, force: bool = False) -> None:
    """Remove CA vendor ``name`` and its ACME account.

    Certificates enrolled for automatic renewal under it block the removal unless
    ``force``: then they move to manual renewal with no CA.
    """
    ca = _find_ca(s, name)
    if ca is None:
        raise CAConfigMissing(detail=f"no CA vendor named {name!r}")
    enrolled = s.scalar(
        select(func.count())
        .select_from(Certificate)
        .where(
            Certificate.ca_vendor_id == ca.id,
            Certificate.enrollment == "auto",
            Certificate.status == "active",
        )
    )
    if enrolled and not force:
        raise ConfigError(
            detail=f"{enrolled} certificate(s) are enrolled for automatic renewal under "
            f"CA vendor {name!r}; move them to another CA or to manual renewal first"
        )
    s.execute(
        update(Certificate)
        .where(Certificate.ca_vendor_id == ca.id, Certificate.enrollment == "auto")
        .values(enrollment="manual")
    )
    s.execute(
        update(Certificate).where(Certificate.ca_vendor_id == ca.id).values(ca_vendor_id=None)
    )
    s.delete(ca)
    s.flush()


# --- ACME accounts -----------------------------------------------------------------------------


def get_account(s: Session, ca: CAVendor) -> AcmeAccount | None:
    """The ACME account of ``ca`` for its current directory URL (``None`` if none yet)."""
    account = s.scalars(select(AcmeAccount).where(AcmeAccount.ca_vendor_id == ca.id)).one_or_none()
    if account is None or account.directory_url != ca.directory_url:
        return None
    return account


def save_account(
    s: Session,
    ca: CAVendor,
    *,
    account_url: str,
    key_pem: bytes | str,
    contact: str | None,
    key_type: str,
    box: SecretBox | None = None,
) -> AcmeAccount:
    """Record (or replace) the ACME account of ``ca``; the key is stored encrypted."""
    _validate_url(account_url, "account_url")
    pem = key_pem.decode("ascii") if isinstance(key_pem, bytes) else key_pem
    if "PRIVATE KEY-----" not in pem:
        raise ConfigError(detail="the account key must be a PEM private key")
    sealed = _box(box).encrypt(pem)
    account = s.scalars(select(AcmeAccount).where(AcmeAccount.ca_vendor_id == ca.id)).one_or_none()
    if account is None:
        account = AcmeAccount(ca_vendor_id=ca.id)
        s.add(account)
    account.directory_url = ca.directory_url
    account.account_url = account_url
    account.contact = contact
    account.key_pem = "enc:" + sealed
    account.key_type = key_type
    account.created_at = utcnow()
    s.flush()
    return account


def account_key_pem(account: AcmeAccount, *, box: SecretBox | None = None) -> bytes:
    """The account's private key PEM (decrypted: keep it in memory only)."""
    return _box(box).unseal(account.key_pem).encode("ascii")


# --- DNS providers and domain mappings ---------------------------------------------------------


def _find_provider(s: Session, name: str) -> DNSProviderConfig | None:
    return s.scalars(select(DNSProviderConfig).where(DNSProviderConfig.name == name)).one_or_none()


def apply_changes(
    current: Mapping[str, Any], changes: Mapping[str, Any], *, replace: bool = False
) -> dict[str, Any]:
    """``current`` (or nothing, with ``replace``) with ``changes`` applied: a ``None`` value
    removes its key, any other value sets it."""
    result = {} if replace else dict(current)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def apply_secret_changes(
    current: Mapping[str, str],
    changes: Mapping[str, str | None],
    *,
    box: SecretBox | None,
    replace: bool = False,
) -> dict[str, str]:
    """:func:`apply_changes` for sealed secrets: new values (literals or references) are
    sealed first, so a bad one changes nothing."""
    sealed = seal_all({k: v for k, v in changes.items() if v is not None}, box=box)
    removed = {k: None for k, v in changes.items() if v is None}
    return apply_changes(current, {**removed, **sealed}, replace=replace)


def add_dns_provider(
    s: Session,
    *,
    name: str,
    type: str,
    settings: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    active: bool = True,
    box: SecretBox | None = None,
) -> DNSProviderConfig:
    """Add a DNS provider; each secret (literal or reference) is sealed."""
    _validate_name(name, "DNS provider")
    if not type or not type.strip():
        raise ConfigError(detail="a DNS provider type is required")
    sealed = seal_all(secrets or {}, box=_box(box))
    if _find_provider(s, name) is not None:
        raise ConfigError(detail=f"a DNS provider named {name!r} already exists")
    provider = DNSProviderConfig(
        name=name, type=type.strip(), settings=dict(settings or {}), secrets=sealed, active=active
    )
    s.add(provider)
    s.flush()
    return provider


def update_dns_provider(
    s: Session,
    name: str,
    *,
    new_name: str | None = None,
    type: str | None = None,
    settings: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str | None] | None = None,
    replace: bool = False,
    active: bool | None = None,
    box: SecretBox | None = None,
) -> DNSProviderConfig:
    """Change a DNS provider (active or not).

    ``settings`` / ``secrets`` are merged into the current ones (a ``None`` value removes a
    key); ``replace=True`` replaces them wholesale instead.
    """
    provider = _find_provider(s, name)
    if provider is None:
        raise DNSProviderUnavailable(name)
    if new_name is not None and new_name != provider.name:
        _validate_name(new_name, "DNS provider")
        if _find_provider(s, new_name) is not None:
            raise ConfigError(detail=f"a DNS provider named {new_name!r} already exists")
    if type is not None and not type.strip():
        raise ConfigError(detail="a DNS provider type is required")
    new_settings = None
    if settings is not None:
        new_settings = apply_changes(provider.settings, settings, replace=replace)
    new_secrets = None
    if secrets is not None:
        new_secrets = apply_secret_changes(
            provider.secrets, secrets, box=_box(box), replace=replace
        )
    if new_name is not None:
        provider.name = new_name
    if type is not None:
        provider.type = type.strip()
    if new_settings is not None:
        provider.settings = new_settings
    if new_secrets is not None:
        provider.secrets = new_secrets
    if active is not None:
        provider.active = active
    s.flush()
    return provider


def get_dns_provider(s: Session, name: str, *, include_inactive: bool = False) -> DNSProviderConfig:
    """The active DNS provider ``name`` (or disabled too with ``include_inactive``); unknown
    or (by default) disabled raises DNSProviderUnavailable."""
    provider = _find_provider(s, name) if name else None
    if provider is None:
        raise DNSProviderUnavailable(name or "", detail=f"no DNS provider named {name!r}")
    if not provider.active and not include_inactive:
        raise DNSProviderUnavailable(name, detail=f"DNS provider {name!r} is disabled")
    return provider


def list_dns_providers(s: Session, *, include_inactive: bool = True) -> list[DNSProviderConfig]:
    """Every DNS provider, by name."""
    q = select(DNSProviderConfig).order_by(DNSProviderConfig.name)
    if not include_inactive:
        q = q.where(DNSProviderConfig.active.is_(True))
    return list(s.scalars(q))


def remove_dns_provider(s: Session, name: str) -> None:
    """Remove a DNS provider and its domain mappings."""
    provider = get_dns_provider(s, name, include_inactive=True)
    s.delete(provider)
    s.flush()


def set_dns_provider_active(s: Session, name: str, active: bool) -> DNSProviderConfig:
    """Enable or disable a DNS provider (its mappings stay)."""
    provider = get_dns_provider(s, name, include_inactive=True)
    provider.active = active
    s.flush()
    return provider


def provider_secrets(
    provider: DNSProviderConfig,
    *,
    box: SecretBox | None = None,
    block_resolver: BlockResolver | None = None,
) -> dict[str, str]:
    """The provider's secrets, unsealed (for the adapter layer only: never print them)."""
    return unseal_all(provider.secrets, box=box, block_resolver=block_resolver)


def map_domains(s: Session, provider_name: str, domains: Iterable[str]) -> list[str]:
    """Map domains (and their subdomains) to a provider; returns the normalised domains.

    A domain already mapped to another provider raises ConfigError naming it; nothing is
    mapped then.
    """
    provider = get_dns_provider(s, provider_name, include_inactive=True)
    wanted = list(dict.fromkeys(normalize_domain(d) for d in domains))
    if not wanted:
        raise ConfigError(detail="no domain given")
    existing = {
        m.domain: m
        for m in s.scalars(select(DomainMapping).where(DomainMapping.domain.in_(wanted)))
    }
    taken = [
        f"{d} is already mapped to DNS provider {existing[d].provider.name!r}"
        for d in wanted
        if d in existing and existing[d].provider_id != provider.id
    ]
    if taken:
        raise ConfigError(detail="; ".join(taken) + " (unmap it first)")
    for d in wanted:
        if d not in existing:
            s.add(DomainMapping(provider_id=provider.id, domain=d))
    s.flush()
    s.expire(provider, ["domains"])
    return wanted


def unmap_domains(s: Session, provider_name: str, domains: Iterable[str]) -> list[str]:
    """Remove domain mappings of a provider (all or nothing); returns the domains."""
    provider = get_dns_provider(s, provider_name, include_inactive=True)
    wanted = list(dict.fromkeys(normalize_domain(d) for d in domains))
    rows = {
        m.domain: m
        for m in s.scalars(
            select(DomainMapping).where(
                DomainMapping.provider_id == provider.id, DomainMapping.domain.in_(wanted)
            )
        )
    }
    missing = [d for d in wanted if d not in rows]
    if missing:
        raise ConfigError(
            detail=f"not mapped to DNS provider {provider_name!r}: {', '.join(missing)}"
        )
    for row in rows.values():
        s.delete(row)
    s.flush()
    s.expire(provider, ["domains"])
    return wanted


def mapped_domains(s: Session, provider_name: str) -> list[str]:
    """The domains mapped to a provider, sorted."""
    provider = get_dns_provider(s, provider_name, include_inactive=True)
    return list(
        s.scalars(
            select(DomainMapping.domain)
            .where(DomainMapping.provider_id == provider.id)
            .order_by(DomainMapping.domain)
        )
    )


def list_domain_mappings(s: Session) -> dict[str, str]:
    """Every mapping: domain -> provider name."""
    rows = s.execute(
        select(DomainMapping.domain, DNSProviderConfig.name)
        .join(DNSProviderConfig, DomainMapping.provider_id == DNSProviderConfig.id)
        .order_by(DomainMapping.domain)
    )
    return {domain: provider for domain, provider in rows}


# --- certificates ------------------------------------------------------------------------------

_CERT_FIELDS = {c.key for c in Certificate.__table__.columns} - {"id", "names_key", "created_at"}
_CHOICES: dict[str, tuple[str, ...]] = {
    "store": STORE_KINDS,
    "enrollment": ENROLLMENTS,
    "status": CERT_STATUSES,
    "source": CERT_SOURCES,
}


def _check_cert_fields(fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - _CERT_FIELDS
    if unknown:
        raise ConfigError(detail=f"unknown certificate field(s): {', '.join(sorted(unknown))}")
    for field, allowed in _CHOICES.items():
        if field in fields and fields[field] not in allowed:
            raise ConfigError(
                detail=f"{field} must be one of {', '.join(allowed)} (got {fields[field]!r})"
            )
    for field in ("not_before", "not_after", "renewal_due_at", "next_attempt_at"):
        value = fields.get(field)
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise ConfigError(detail=f"{field} must be an aware datetime")


def add_certificate(s: Session, **fields: Any) -> Certificate:
    """Record a certificate (``store``, ``folder`` and ``names`` are required)."""
    _check_cert_fields(fields)
    missing = [f for f in ("store", "folder", "names") if fields.get(f) is None]
    if missing or not str(fields["folder"]):
        raise ConfigError(detail=f"a certificate needs {', '.join(missing) or 'folder'}")
    folder = str(fields["folder"])
    dup = s.scalars(
        select(Certificate.id).where(
            Certificate.store == fields["store"], Certificate.folder == folder
        )
    ).first()
    if dup is not None:
        raise ConfigError(
            detail=f"certificate {dup} is already recorded at {folder} in the "
            f"{fields['store']} store"
        )
    cert = Certificate(**{**fields, "folder": folder})
    s.add(cert)
    s.flush()
    return cert


def get_certificate(s: Session, cert_id: int) -> Certificate:
    """The certificate ``cert_id``; unknown raises NotFound."""
    cert = s.get(Certificate, cert_id)
    if cert is None:
        raise NotFound(detail=f"no certificate with id {cert_id}")
    return cert


def certificates_by_id(s: Session, certificate_ids: Iterable[int]) -> list[Certificate]:
    """The certificates ``certificate_ids`` in the order given (duplicates once); none given
    raises ConfigError, unknown ids raise one NotFound listing them."""
    ids = list(dict.fromkeys(int(i) for i in certificate_ids))
    if not ids:
        raise ConfigError(detail="give at least one certificate id")
    found: dict[int, Certificate] = {}
    for i in range(0, len(ids), 500):
        for cert in s.scalars(select(Certificate).where(Certificate.id.in_(ids[i : i + 500]))):
            found[cert.id] = cert
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise NotFound(detail=f"no certificate with id {', '.join(missing)}")
    return [found[i] for i in ids]


def get_certificate_by_folder(s: Session, store: str, folder: str) -> Certificate | None:
    """The certificate recorded at ``folder`` in ``store`` (``None`` when none)."""
    return s.scalars(
        select(Certificate).where(Certificate.store == store, Certificate.folder == str(folder))
    ).one_or_none()


def list_certificates(
    s: Session,
    *,
    store: str | None = None,
    enrollment: str | None = None,
    ca: str | CAVendor | None = None,
    status: str | None = "active",
) -> list[Certificate]:
    """Certificates filtered by store, enrollment, CA vendor (name or row) and status
    (``None`` = any), ordered by id."""
    q = select(Certificate).order_by(Certificate.id)
    if store is not None:
        q = q.where(Certificate.store == store)
    if enrollment is not None:
        q = q.where(Certificate.enrollment == enrollment)
    if status is not None:
        q = q.where(Certificate.status == status)
    if ca is not None:
        row = ca if isinstance(ca, CAVendor) else _find_ca(s, ca)
        if row is None:
            raise CAConfigMissing(detail=f"no CA vendor named {ca!r}")
        q = q.where(Certificate.ca_vendor_id == row.id)
    return list(s.scalars(q))


def find_identical(
    s: Session, names: Iterable[str], ca_vendor_id: int | None, store: str
) -> Certificate | None:
    """A still-valid active certificate with the same name set, CA and store, if any
    (the caller raises DuplicateCertificate)."""
    q = select(Certificate).where(
        Certificate.names_key == names_digest(names),
        Certificate.store == store,
        Certificate.status == "active",
        Certificate.not_after > utcnow(),
    )
    q = q.where(
        Certificate.ca_vendor_id.is_(None)
        if ca_vendor_id is None
        else Certificate.ca_vendor_id == ca_vendor_id
    )
    return s.scalars(q.order_by(Certificate.not_after.desc())).first()


def find_by_fingerprint(s: Session, fingerprint_sha256: str) -> list[Certificate]:
    """Active certificates with this fingerprint (one per store when duplicated)."""
    return list(
        s.scalars(
            select(Certificate)
            .where(
                Certificate.fingerprint_sha256 == fingerprint_sha256.lower().replace(":", ""),
                Certificate.status == "active",
            )
            .order_by(Certificate.id)
        )
    )


def update_certificate(s: Session, cert: Certificate, **fields: Any) -> Certificate:
    """Change fields of a certificate (validated first)."""
    _check_cert_fields(fields)
    if "folder" in fields or "store" in fields:
        store = fields.get("store", cert.store)
        folder = str(fields.get("folder", cert.folder))
        other = get_certificate_by_folder(s, store, folder)
        if other is not None and other.id != cert.id:
            raise ConfigError(
                detail=f"certificate {other.id} is already recorded at {folder} in the "
                f"{store} store"
            )
        fields = {**fields, "folder": folder}
    for key, value in fields.items():
        setattr(cert, key, value)
    s.flush()
    return cert


def certificates_due(
    s: Session, *, now: datetime | None = None, ca: CAVendor | None = None, limit: int | None = None
) -> list[Certificate]:
    """Active auto-enrolled certificates whose renewal is due and whose retry time has come."""
    now = now or utcnow()
    q = (
        select(Certificate)
        .where(
            Certificate.status == "active",
            Certificate.enrollment == "auto",
            Certificate.ca_vendor_id.is_not(None),
            Certificate.renewal_due_at <= now,
            (Certificate.next_attempt_at.is_(None)) | (Certificate.next_attempt_at <= now),
        )
        .order_by(Certificate.renewal_due_at, Certificate.id)
    )
    if ca is not None:
        q = q.where(Certificate.ca_vendor_id == ca.id)
    if limit is not None:
        q = q.limit(limit)
    return list(s.scalars(q))


# --- issuance log ------------------------------------------------------------------------------


def log_start(
    s: Session,
    *,
    kind: str,
    names: Iterable[str],
    ca_name: str | None,
    store: str | None,
    certificate_id: int | None = None,
    flow_run_id: str | None = None,
) -> LogEntry:
    """Open a history entry (status ``running``)."""
    if kind not in LOG_KINDS:
        raise ConfigError(detail=f"kind must be one of {', '.join(LOG_KINDS)} (got {kind!r})")
    entry = LogEntry(
        kind=kind,
        names=list(names),
        ca_name=ca_name,
        store=store,
        certificate_id=certificate_id,
        flow_run_id=str(flow_run_id) if flow_run_id is not None else None,
        status="running",
        started_at=utcnow(),
    )
    s.add(entry)
    s.flush()
    return entry


def log_finish(
    s: Session,
    entry: LogEntry,
    *,
    status: str,
    message: str | None = None,
    detail: str | None = None,
    root_cause: str | None = None,
    serial: str | None = None,
    certificate_id: int | None = None,
) -> LogEntry:
    """Close a history entry with its outcome (texts must already be free of secrets)."""
    if status not in LOG_STATUSES or status == "running":
        raise ConfigError(detail=f"a finished entry is success, failed or skipped (got {status!r})")
    entry.status = status
    entry.message = message
    entry.detail = detail
    entry.root_cause = root_cause
    if serial is not None:
        entry.serial = serial
    if certificate_id is not None:
        entry.certificate_id = certificate_id
    entry.finished_at = utcnow()
    s.flush()
    return entry


def close_interrupted(s: Session, *, started_before: datetime) -> list[LogEntry]:
    """Close as failed every ``running`` history entry opened before ``started_before``: its
    run was killed (no run takes that long), so nobody else will ever close it."""
    rows = list(
        s.scalars(
            select(LogEntry).where(
                LogEntry.status == "running", LogEntry.started_at < started_before
            )
        )
    )
    for entry in rows:
        run = f"run {entry.flow_run_id}" if entry.flow_run_id else "its process"
        log_finish(
            s,
            entry,
            status="failed",
            message=f"interrupted: {run} ended without closing this entry",
            detail=f"still running at {started_before:%Y-%m-%d %H:%M:%S} UTC; closed by sweep",
            root_cause="Interrupted",
        )
    return rows


def get_log_entry(s: Session, entry_id: int) -> LogEntry:
    """The history entry ``entry_id``; unknown raises NotFound."""
    entry = s.get(LogEntry, entry_id)
    if entry is None:
        raise NotFound(detail=f"no history entry with id {entry_id}")
    return entry


def list_log(
    s: Session,
    *,
    failed_only: bool = False,
    certificate_id: int | None = None,
    since: datetime | None = None,
    limit: int | None = 200,
) -> list[LogEntry]:
    """History entries, newest first."""
    q = select(LogEntry).order_by(LogEntry.started_at.desc(), LogEntry.id.desc())
    if failed_only:
        q = q.where(LogEntry.status == "failed")
    if certificate_id is not None:
        q = q.where(LogEntry.certificate_id == certificate_id)
    if since is not None:
        q = q.where(LogEntry.started_at >= since)
    if limit is not None:
        q = q.limit(limit)
    return list(s.scalars(q))
