"""Shared helpers of the DNS provider adapters: names, settings, errors and secret masking."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NoReturn

from acmeflow.core.dnsprovider import ProviderField
from acmeflow.core.errors import TXTRecordError, mask_secrets
from acmeflow.core.names import canonical_name
from acmeflow.providers.settings import split_host_port

#: Every provider accepts this optional setting (split horizon, private zones).
NAMESERVERS_FIELD = ProviderField(
    "nameservers",
    required=False,
    help="comma-separated host[:port] to check propagation at instead of the public delegation",
)
TTL_FIELD = ProviderField("ttl", required=False, help="TTL of the TXT records (default 60)")

DEFAULT_TTL = 60


def relative_name(fqdn: str, zone: str) -> str:
    """``fqdn`` relative to ``zone`` (``"@"`` for the apex); both in normalised form."""
    fqdn, zone = canonical_name(fqdn), canonical_name(zone)
    if fqdn == zone:
        return "@"
    if not fqdn.endswith("." + zone):
        raise ValueError(f"{fqdn} is not inside zone {zone}")
    return fqdn[: -len(zone) - 1]


def longest_zone_match(fqdn: str, zones: Iterable[str]) -> str | None:
    """The zone of ``zones`` that is the longest suffix of ``fqdn`` (names compared normalised)."""
    fqdn = canonical_name(fqdn)
    best: str | None = None
    for zone in zones:
        z = canonical_name(zone)
        if (fqdn == z or fqdn.endswith("." + z)) and (best is None or len(z) > len(best)):
            best = z
    return best


def parse_nameservers(value: str | None, type_name: str) -> list[str] | None:
    """Parse the ``nameservers`` setting (``host[:port]``, comma-separated); ``None`` if unset."""
    if value is None or not value.strip():
        return None
    result: list[str] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        host, port = split_host_port(item, 53, type_name, "nameservers")
        result.append(host if port == 53 else f"{host}:{port}")
    return result or None


def quote_txt(value: str) -> str:
    """A TXT value as one quoted character-string (escaping quotes and backslashes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote_txt(value: str) -> str:
    """Undo :func:`quote_txt`; concatenates several quoted strings (``"a" "b"`` -> ``ab``)."""
    value = value.strip()
    if not value.startswith('"'):
        return value
    parts: list[str] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] != '"':
            i += 1
            continue
        i += 1
        buf: list[str] = []
        while i < n and value[i] != '"':
            if value[i] == "\\" and i + 1 < n:
                i += 1
            buf.append(value[i])
            i += 1
        parts.append("".join(buf))
        i += 1
    return "".join(parts)


class ProviderBase:
    """Common state of our adapters: type name, secrets to mask, nameservers override."""

    type_name: str = ""

    def __init__(self, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        self._secret_values: tuple[str, ...] = tuple(v for v in secrets.values() if v)
        self._nameservers = parse_nameservers(settings.get("nameservers"), self.type_name)

    def check_nameservers(self) -> Sequence[str] | None:
        """The configured ``nameservers`` override, or ``None``."""
        return list(self._nameservers) if self._nameservers else None

    def _mask(self, text: str) -> str:
        return mask_secrets(text, self._secret_values)

    def _fail(self, text: str) -> NoReturn:
        """Raise :class:`TXTRecordError` with ``"<type>: <text>"``, secrets masked.

        The exception chain is suppressed: the provider's own exception may echo a secret.
        """
        raise TXTRecordError(detail=self._mask(f"{self.type_name}: {text}")) from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} type={self.type_name!r}>"
