"""DNS providers (F4) with their sealed credentials, and the domains mapped to them.

Functions over a :class:`~sqlalchemy.orm.Session`: they validate all their input before
changing anything, flush but never commit (the caller's ``session_scope`` does), and raise
catalog errors (:mod:`acmeflow.core.errors`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from acmeflow.core.errors import (
    ConfigError,
    DNSProviderUnavailable,
)
from acmeflow.core.names import normalize_domain
from acmeflow.core.secrets import BlockResolver, SecretBox, seal_all, unseal_all
from acmeflow.core.state.models import (
    DNSProviderConfig,
    DomainMapping,
)
from acmeflow.core.state.validation import sealing_box, validate_name


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
    validate_name(name, "DNS provider")
    if not type or not type.strip():
        raise ConfigError(detail="a DNS provider type is required")
    sealed = seal_all(secrets or {}, box=sealing_box(box))
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
        validate_name(new_name, "DNS provider")
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
            provider.secrets, secrets, box=sealing_box(box), replace=replace
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
