"""ACME DNS (joohoi/acme-dns): a tiny REST API in front of its own DNS server.

The user points ``_acme-challenge.<domain>`` with a CNAME at ``<subdomain>.<acme-dns zone>``
(``fulldomain`` of the registration). ``present`` is ``POST /update`` with ``X-Api-User`` /
``X-Api-Key`` and ``{"subdomain", "txt"}``.

Documented limitation: acme-dns keeps only the two most recent values of a subdomain, which is
exactly what an apex + wildcard order needs, and has no delete call, so ``cleanup`` is a no-op
(the next ``present`` pushes old values out). ``txt_values`` asks acme-dns's DNS server for
``fulldomain`` directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import requests

from acmeflow.core.dnsprovider import ProviderField, ProviderType
from acmeflow.core.names import canonical_name
from acmeflow.providers.dns._base import (
    NAMESERVERS_FIELD,
    ProviderBase,
    unquote_txt,
)
from acmeflow.providers.settings import require, setting_float, split_host_port

TYPE = "acmedns"

FIELDS: tuple[ProviderField, ...] = (
    ProviderField("server", help="acme-dns API base URL, e.g. https://auth.example.org"),
    ProviderField("username", help="registration username (X-Api-User)"),
    ProviderField("password", kind="secret", help="registration password (X-Api-Key)"),
    ProviderField("subdomain", help="registration subdomain"),
    ProviderField("fulldomain", required=False, help="registration fulldomain (for reads)"),
    ProviderField(
        "dns_server", required=False, help="acme-dns DNS server host[:port] (default: API host)"
    ),
    ProviderField("timeout", required=False, help="seconds per request (default 10)"),
    NAMESERVERS_FIELD,
)


class AcmeDNSProvider(ProviderBase):
    """TXT values through an acme-dns registration (see the module notes on cleanup)."""

    type_name = TYPE

    def __init__(self, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().__init__(settings, secrets)
        self._server = require(settings, "server", TYPE).rstrip("/")
        self._username = require(settings, "username", TYPE)
        self._password = require(secrets, "password", TYPE)
        self._subdomain = require(settings, "subdomain", TYPE)
        self._fulldomain = canonical_name(settings.get("fulldomain") or "") or None
        self._timeout = setting_float(settings, "timeout", 10.0, TYPE)
        dns_server = (settings.get("dns_server") or "").strip()
        host = dns_server or (urlsplit(self._server).hostname or "")
        self._dns_host, self._dns_port = split_host_port(host, 53, TYPE, "dns_server")

    def present(self, fqdn: str, value: str) -> None:
        """``POST /update``: acme-dns then serves ``value`` and the previous value."""
        try:
            response = requests.post(
                f"{self._server}/update",
                json={"subdomain": self._subdomain, "txt": value},
                headers={"X-Api-User": self._username, "X-Api-Key": self._password},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            self._fail(f"POST {self._server}/update: {type(exc).__name__}: {exc}")
        if response.status_code != 200:
            body = " ".join(response.text.split())[:300]
            self._fail(f"adding TXT {canonical_name(fqdn)}: HTTP {response.status_code}: {body}")

    def cleanup(self, fqdn: str, value: str) -> None:
        """No-op: acme-dns has no delete; it keeps only the two latest values."""

    def txt_values(self, fqdn: str) -> list[str]:
        """The values acme-dns serves for the registration's ``fulldomain``."""
        name = self._fulldomain or canonical_name(fqdn)
        query = dns.message.make_query(name, dns.rdatatype.TXT)
        try:
            response = dns.query.udp(
                query, self._dns_host, port=self._dns_port, timeout=self._timeout
            )
        except (dns.exception.DNSException, OSError) as exc:
            self._fail(f"query TXT {name} at {self._dns_host}: {type(exc).__name__}: {exc}")
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            self._fail(f"query TXT {name}: {dns.rcode.to_text(response.rcode())}")
        return [
            unquote_txt(rdata.to_text())
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for rdata in rrset
        ]

    def __repr__(self) -> str:
        return f"<AcmeDNSProvider server={self._server!r} subdomain={self._subdomain!r}>"


PROVIDER = ProviderType(
    name=TYPE,
    label="ACME DNS",
    backing="native",
    fields=FIELDS,
    factory=AcmeDNSProvider,
    reason=(
        "acme-dns REST API; it keeps the two latest values (apex + wildcard) and has no "
        "delete, so cleanup is a no-op"
    ),
    aliases=("acme-dns", "acme_dns"),
)
