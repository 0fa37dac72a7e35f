"""The contract every DNS provider fulfils (cert-manager's Present / CleanUp, lego's shape).

Implementations live in ``providers/dns/<type>.py``; the registry there builds them from a
configured provider (settings plus resolved secrets). Core code only sees this protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable


@runtime_checkable
class DNSProvider(Protocol):
    """Writes and removes DNS-01 TXT values at one DNS service.

    Names are absolute, lower-case, without the trailing dot (``_acme-challenge.example.com``).
    Every failure raises :class:`core.errors.TXTRecordError` whose detail starts with the
    provider type (``"route53: AccessDenied ..."``) and contains no secret.
    """

    type_name: str

    def present(self, fqdn: str, value: str) -> None:
        """Add ``value`` to the TXT record set of ``fqdn``; other values stay; idempotent."""
        ...

    def cleanup(self, fqdn: str, value: str) -> None:
        """Remove only ``value`` from the TXT set of ``fqdn``; absent value is no error."""
        ...

    def txt_values(self, fqdn: str) -> list[str]:
        """The TXT values the provider currently holds for ``fqdn`` (for checks and sweeps)."""
        ...

    def check_nameservers(self) -> Sequence[str] | None:
        """Nameservers (``host`` or ``host:port``) to check propagation at, overriding the
        SOA/NS walk (split horizon, private zones); ``None`` to walk the public delegation."""
        ...


@runtime_checkable
class BatchDNSProvider(DNSProvider, Protocol):
    """A provider that can also write or remove many values in one exchange (an RFC 2136
    UPDATE per zone): an order's values cost one round trip instead of one each. Optional:
    :mod:`core.issuance` uses these methods when a provider has them (``isinstance``)."""

    def present_all(self, items: Sequence[tuple[str, str]]) -> None:
        """``present`` every (fqdn, value)."""
        ...

    def cleanup_all(self, items: Sequence[tuple[str, str]]) -> None:
        """``cleanup`` every (fqdn, value)."""
        ...


FieldKind = Literal["setting", "secret"]


@dataclass(frozen=True)
class ProviderField:
    """One configuration field of a provider type."""

    name: str
    kind: FieldKind = "setting"
    required: bool = True
    help: str = ""


Backing = Literal["native", "lexicon", "unsupported"]


@dataclass(frozen=True)
class ProviderType:
    """A DNS provider type as the registry lists it (``acmeflow dns providers``).

    ``factory(settings, secrets)`` builds a :class:`DNSProvider`; it validates the fields and
    raises :class:`core.errors.ConfigError` naming the missing or bad field.
    """

    name: str  # the type id used on the command line, e.g. "rfc2136"
    label: str  # the name users look for (PRODUCT.md), e.g. "nsupdate (RFC 2136)"
    backing: Backing
    fields: tuple[ProviderField, ...] = ()
    factory: Callable[[Mapping[str, str], Mapping[str, str]], DNSProvider] | None = None
    reason: str = ""  # why it is unsupported, or a note on the backing
    aliases: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class ZoneFindingDNSProvider(DNSProvider, Protocol):
    """A provider that knows its own nameserver and finds a name's zone there (RFC 2136, as
    certbot's rfc2136 plugin does): private zones the resolvers do not know still work.
    Optional: :mod:`core.issuance` checks propagation with it when a provider has it."""

    @property
    def primary_nameserver(self) -> str:
        """``host:port`` of the server the provider updates."""
        ...

    def find_zone(self, fqdn: str) -> str:
        """The zone holding ``fqdn``, asked at :attr:`primary_nameserver`."""
        ...
