"""Build live DNS providers from their stored configuration (settings + unsealed secrets)."""

from __future__ import annotations

import hashlib
import threading

from sqlalchemy.orm import Session

from acmeflow.core.dnsprovider import DNSProvider
from acmeflow.core.state import dns_providers, provider_index
from acmeflow.core.state.models import DNSProviderConfig
from acmeflow.providers.dns.registry import build_provider

_thread_providers = threading.local()


def dns_provider_from_config(config: DNSProviderConfig) -> DNSProvider:
    """A ready provider for one configured DNS provider (its secrets resolved in memory).

    Built adapters are reused within a thread until the configuration or a resolved secret
    (a rotated ``file:``/``env:`` reference) changes.
    """
    cache: dict[tuple[int, str], tuple[object, DNSProvider]] = getattr(
        _thread_providers, "by_id", {}
    )
    _thread_providers.by_id = cache
    secrets = dns_providers.provider_secrets(config)  # resolved each time: rotated files/env apply
    slot = (config.id, config.name)
    version = (
        config.updated_at,
        config.type,
        hashlib.sha256(repr(sorted(secrets.items())).encode()).digest(),
    )
    cached = cache.get(slot)
    if cached is not None and cached[0] == version:
        return cached[1]
    provider = build_provider(config.type, dict(config.settings or {}), secrets)
    cache[slot] = (version, provider)
    return provider


class ConfiguredProviders:
    """Resolve names to configured providers (domain mapping) and cache built adapters."""

    def __init__(self, s: Session) -> None:
        self._session = s
        self._built: dict[str, DNSProvider] = {}

    def name_for(self, fqdn: str) -> str:
        """The configured provider name for ``fqdn`` (catalog errors when unmapped)."""
        config = provider_index.provider_for_name(self._session, fqdn)
        if config.name not in self._built:
            self._built[config.name] = dns_provider_from_config(config)
        return config.name

    def get(self, name: str) -> DNSProvider:
        """The built provider named ``name`` (building it when needed)."""
        if name not in self._built:
            self._built[name] = dns_provider_from_config(
                dns_providers.get_dns_provider(self._session, name)
            )
        return self._built[name]
