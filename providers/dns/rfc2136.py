"""RFC 2136 dynamic updates with TSIG (BIND nsupdate, Knot DNS, PowerDNS, ...) via dnspython.

Updates go over TCP to ``server``; ``present`` adds one TXT rdata (other values in the RRset
stay), ``cleanup`` deletes exactly that rdata; ``present_all``/``cleanup_all`` do the values of
a whole order with one UPDATE per zone. Reads are direct queries to the same server.
"""

from __future__ import annotations

import binascii
import socket
from collections.abc import Mapping, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update

from acmeflow.core.dnsprovider import ProviderField, ProviderType
from acmeflow.core.errors import ConfigError
from acmeflow.core.names import canonical_name
from acmeflow.providers.dns._base import (
    DEFAULT_TTL,
    NAMESERVERS_FIELD,
    TTL_FIELD,
    ProviderBase,
    quote_txt,
    unquote_txt,
)
from acmeflow.providers.settings import require, setting_float, split_host_port

TSIG_ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}

FIELDS: tuple[ProviderField, ...] = (
    ProviderField("server", help="primary server accepting updates, host[:port]"),
    ProviderField("tsig_name", required=False, help="TSIG key name"),
    ProviderField("tsig_secret", kind="secret", required=False, help="TSIG key (base64)"),
    ProviderField(
        "tsig_algorithm",
        required=False,
        help="hmac-sha256 (default), hmac-sha384 or hmac-sha512",
    ),
    ProviderField("zone", required=False, help="zone to update (default: found by SOA query)"),
    ProviderField("timeout", required=False, help="seconds per DNS exchange (default 10)"),
    TTL_FIELD,
    NAMESERVERS_FIELD,
)


MAX_REMEMBERED_ZONES = 10_000  # zones found by SOA that one provider remembers


class RFC2136Provider(ProviderBase):
    """Writes TXT records with RFC 2136 dynamic updates, TSIG-signed when a key is configured."""

    def __init__(
        self,
        settings: Mapping[str, str],
        secrets: Mapping[str, str],
        *,
        type_name: str = "rfc2136",
    ) -> None:
        self.type_name = type_name
        super().__init__(settings, secrets)
        server = require(settings, "server", type_name)
        host, self._port = split_host_port(server, 53, type_name, "server")
        self._host = _resolve_host(host, type_name)
        self._timeout = setting_float(settings, "timeout", 10.0, type_name)
        self._ttl = int(setting_float(settings, "ttl", DEFAULT_TTL, type_name))
        zone = (settings.get("zone") or "").strip()
        self._zone: str | None = canonical_name(zone) if zone else None
        self._key = _make_key(settings, secrets, type_name)
        self._found_zones: dict[str, str] = {}  # fqdn -> zone found by SOA (bounded below)

    # -- DNSProvider ------------------------------------------------------------------------

    def present(self, fqdn: str, value: str) -> None:
        """Add ``value`` to the TXT RRset of ``fqdn`` (a no-op if it is already there)."""
        fqdn = canonical_name(fqdn)
        update = self._update(self._zone_for(fqdn))
        update.add(dns.name.from_text(fqdn), self._ttl, dns.rdatatype.TXT, quote_txt(value))
        self._send(update, f"adding TXT {fqdn}")

    def cleanup(self, fqdn: str, value: str) -> None:
        """Delete only the ``value`` rdata of ``fqdn`` (deleting an absent rdata is a no-op)."""
        fqdn = canonical_name(fqdn)
        update = self._update(self._zone_for(fqdn))
        update.delete(dns.name.from_text(fqdn), dns.rdatatype.TXT, quote_txt(value))
        self._send(update, f"deleting TXT {fqdn}")

    def present_all(self, items: Sequence[tuple[str, str]]) -> None:
        """Add every (fqdn, value) with one UPDATE per zone (atomic at the server)."""
        for zone, group in self._by_zone(items).items():
            update = self._update(zone)
            for fqdn, value in group:
                update.add(dns.name.from_text(fqdn), self._ttl, dns.rdatatype.TXT, quote_txt(value))
            self._send(update, f"adding TXT {', '.join(sorted({f for f, _ in group}))}")

    def cleanup_all(self, items: Sequence[tuple[str, str]]) -> None:
        """Delete exactly each (fqdn, value) rdata with one UPDATE per zone."""
        for zone, group in self._by_zone(items).items():
            update = self._update(zone)
            for fqdn, value in group:
                update.delete(dns.name.from_text(fqdn), dns.rdatatype.TXT, quote_txt(value))
            self._send(update, f"deleting TXT {', '.join(sorted({f for f, _ in group}))}")

    def txt_values(self, fqdn: str) -> list[str]:
        """The TXT values ``server`` answers for ``fqdn`` (its own data, no recursion)."""
        fqdn = canonical_name(fqdn)
        response = self._query(fqdn, dns.rdatatype.TXT)
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return []
        if rcode != dns.rcode.NOERROR:
            self._fail(f"query TXT {fqdn} at {self._server}: {dns.rcode.to_text(rcode)}")
        name = dns.name.from_text(fqdn)
        values: list[str] = []
        for rrset in response.answer:
            if rrset.name == name and rrset.rdtype == dns.rdatatype.TXT:
                values.extend(unquote_txt(rdata.to_text()) for rdata in rrset)
        return values

    # -- ZoneFindingDNSProvider --------------------------------------------------------------

    @property
    def primary_nameserver(self) -> str:
        """``host:port`` of the server updates go to."""
        return f"{self._host}:{self._port}"

    def find_zone(self, fqdn: str) -> str:
        """The configured zone, else the zone whose SOA the server reports for ``fqdn``."""
        return self._zone_for(canonical_name(fqdn))

    # -- internals --------------------------------------------------------------------------

    @property
    def _server(self) -> str:
        return self.primary_nameserver

    def _update(self, zone: str) -> dns.update.UpdateMessage:
        if self._key is None:
            return dns.update.UpdateMessage(zone)
        return dns.update.UpdateMessage(zone, keyring=self._key, keyalgorithm=self._key.algorithm)

    def _send(self, update: dns.update.UpdateMessage, what: str) -> None:
        try:
            response = dns.query.tcp(update, self._host, port=self._port, timeout=self._timeout)
        except dns.tsig.PeerError as exc:
            self._fail(f"{what} at {self._server}: TSIG {type(exc).__name__} ({exc})")
        except (dns.exception.DNSException, OSError) as exc:
            self._fail(f"{what} at {self._server}: {type(exc).__name__}: {exc}")
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            self._fail(f"{what} at {self._server}: update refused: {dns.rcode.to_text(rcode)}")

    def _query(self, qname: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        query = dns.message.make_query(qname, rdtype)
        query.flags &= ~dns.flags.RD
        try:
            response = dns.query.udp(query, self._host, port=self._port, timeout=self._timeout)
            if response.flags & dns.flags.TC:
                response = dns.query.tcp(query, self._host, port=self._port, timeout=self._timeout)
        except (dns.exception.DNSException, OSError) as exc:
            self._fail(f"query {qname} at {self._server}: {type(exc).__name__}: {exc}")
        return response

    def _by_zone(self, items: Sequence[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
        groups: dict[str, list[tuple[str, str]]] = {}
        for fqdn, value in items:
            name = canonical_name(fqdn)
            groups.setdefault(self._zone_for(name), []).append((name, value))
        return groups

    def _zone_for(self, fqdn: str) -> str:
        """The configured zone, else the zone whose SOA ``server`` reports for ``fqdn``."""
        if self._zone is not None:
            if fqdn != self._zone and not fqdn.endswith("." + self._zone):
                self._fail(f"{fqdn} is not inside the configured zone {self._zone}")
            return self._zone
        if fqdn in self._found_zones:
            return self._found_zones[fqdn]
        response = self._query(fqdn, dns.rdatatype.SOA)
        rcode = response.rcode()
        if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            for section in (response.answer, response.authority):
                for rrset in section:
                    if rrset.rdtype == dns.rdatatype.SOA:
                        zone = canonical_name(rrset.name.to_text())
                        if len(self._found_zones) >= MAX_REMEMBERED_ZONES:
                            self._found_zones.clear()
                        self._found_zones[fqdn] = zone  # present and cleanup ask the same
                        return zone
        self._fail(
            f"no zone found for {fqdn} at {self._server} "
            f"({dns.rcode.to_text(rcode)}); set 'zone' explicitly"
        )

    def __repr__(self) -> str:
        key = self._key.name.to_text(omit_final_dot=True) if self._key is not None else None
        return f"<RFC2136Provider type={self.type_name!r} server={self._server!r} key={key!r}>"


def _resolve_host(host: str, type_name: str) -> str:
    """dnspython needs an address: resolve a host name once with the system resolver."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigError(detail=f"{type_name}: cannot resolve server {host!r}: {exc}") from None
    return str(infos[0][4][0])


def _make_key(
    settings: Mapping[str, str], secrets: Mapping[str, str], type_name: str
) -> dns.tsig.Key | None:
    name = (settings.get("tsig_name") or "").strip()
    secret = (secrets.get("tsig_secret") or "").strip()
    algorithm_text = (settings.get("tsig_algorithm") or "hmac-sha256").strip().lower()
    algorithm = TSIG_ALGORITHMS.get(algorithm_text.rstrip("."))
    if algorithm is None:
        raise ConfigError(
            detail=f"{type_name}: unsupported tsig_algorithm {algorithm_text!r} "
            f"(use one of {', '.join(TSIG_ALGORITHMS)})"
        )
    if not name and not secret:
        return None
    if not name:
        raise ConfigError(detail=f"{type_name}: missing field 'tsig_name'")
    if not secret:
        raise ConfigError(detail=f"{type_name}: missing field 'tsig_secret'")
    try:
        return dns.tsig.Key(name, secret, algorithm)
    except (binascii.Error, ValueError):
        raise ConfigError(detail=f"{type_name}: field 'tsig_secret' is not valid base64") from None


def _knot_factory(settings: Mapping[str, str], secrets: Mapping[str, str]) -> RFC2136Provider:
    return RFC2136Provider(settings, secrets, type_name="knot")


PROVIDER = ProviderType(
    name="rfc2136",
    label="nsupdate (RFC 2136)",
    backing="native",
    fields=FIELDS,
    factory=RFC2136Provider,
    reason="dnspython dynamic updates (TSIG hmac-sha256/384/512) over TCP",
    aliases=("nsupdate", "rfc 2136", "ddns", "bind", "dynamic update"),
)

KNOT_PROVIDER = ProviderType(
    name="knot",
    label="Knot DNS",
    backing="native",
    fields=FIELDS,
    factory=_knot_factory,
    reason="Knot DNS accepts RFC 2136 dynamic updates: served by the rfc2136 adapter",
    aliases=("knotdns", "knot-dns"),
)
