"""Which DNS provider writes the TXT record of a name: the domain mapping with the longest
matching suffix. One resolver for issue checks, renewal planning, CNAME targets met while an
order is solved, ``dns check`` and ``certs show``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from acmeflow.core.errors import DNSProviderUnavailable, MissingDNSProvider, NoActiveDNSProvider
from acmeflow.core.names import name_suffixes
from acmeflow.core.state import dns_providers
from acmeflow.core.state.models import DNSProviderConfig, DomainMapping


@dataclass(frozen=True)
class ProviderIndex:
    """Every domain mapping in memory: resolves many certificates' names with one query."""

    mappings: dict[str, tuple[str, bool]]  # domain -> (provider name, active)
    active_count: int

    def provider_for(self, name: str) -> str:
        """The provider name of ``name``: the longest mapped suffix. No mapping raises
        MissingDNSProvider; a disabled provider raises DNSProviderUnavailable."""
        hit = next(
            (self.mappings[sfx] for sfx in name_suffixes(name) if sfx in self.mappings), None
        )
        if hit is None:
            raise MissingDNSProvider(detail=f"no DNS provider is mapped for {name}")
        provider, active = hit
        if not active:
            raise DNSProviderUnavailable(
                provider, detail=f"{name} is mapped to disabled DNS provider {provider!r}"
            )
        return provider

    def providers_for(self, names: Iterable[str]) -> dict[str, str]:
        """Provider name per name, all checked at once: no active provider at all raises
        NoActiveDNSProvider; unmapped names raise one MissingDNSProvider listing them all."""
        if not self.active_count:
            raise NoActiveDNSProvider(detail="enable or add a DNS provider and map its domains")
        names = list(dict.fromkeys(names))
        missing = [n for n in names if not any(s in self.mappings for s in name_suffixes(n))]
        if missing:
            raise MissingDNSProvider(detail=f"no DNS provider is mapped for {', '.join(missing)}")
        return {name: self.provider_for(name) for name in names}


def provider_index(s: Session) -> ProviderIndex:
    """Load every domain mapping and the number of active providers."""
    rows = s.execute(
        select(DomainMapping.domain, DNSProviderConfig.name, DNSProviderConfig.active).join(
            DNSProviderConfig, DomainMapping.provider_id == DNSProviderConfig.id
        )
    )
    mappings = {domain: (name, bool(active)) for domain, name, active in rows}
    active = s.scalar(
        select(func.count()).select_from(DNSProviderConfig).where(DNSProviderConfig.active)
    )
    return ProviderIndex(mappings=mappings, active_count=int(active or 0))


def provider_for_name(s: Session, name: str) -> DNSProviderConfig:
    """The configured provider of one name (see :meth:`ProviderIndex.provider_for`)."""
    return dns_providers.get_dns_provider(s, provider_index(s).provider_for(name))


def providers_for_names(s: Session, names: Iterable[str]) -> dict[str, DNSProviderConfig]:
    """The configured provider of every name (see :meth:`ProviderIndex.providers_for`)."""
    by_name = provider_index(s).providers_for(names)
    configs = {p: dns_providers.get_dns_provider(s, p) for p in set(by_name.values())}
    return {name: configs[provider] for name, provider in by_name.items()}
