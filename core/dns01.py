"""DNS-01 mechanics: where a challenge record really lives, and when the world can see it.

* ``_acme-challenge.NAME`` may be a CNAME into another zone (delegation): the record is written
  and checked at the end of the CNAME chain (lego's and cert-manager's behaviour).
* Propagation is checked at **every** authoritative nameserver of the record's zone, found by
  walking SOA/NS, or at the nameservers a provider names (split horizon). No fixed sleeps: all
  pending (record, nameserver) pairs are polled together until each serves its value.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.resolver

from acmeflow.core import errors

log = logging.getLogger(__name__)

MAX_CNAME_HOPS = 8


@dataclass(frozen=True)
class ChallengeRecord:
    """One TXT value to publish: ``target`` is where it is written (after CNAMEs)."""

    identifier: str
    record_name: str
    target: str
    value: str
    provider: str = ""  # name of the DNS provider that writes it (filled in by the caller)


def _host_port(spec: str, default_port: int) -> tuple[str, int]:
    """Parse ``host``, ``host:port`` or ``[v6]:port``."""
    spec = spec.strip()
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return host, int(port)
    return spec, default_port


class DNSLookup:
    """Recursive lookups (SOA, NS, CNAME, A) and direct queries to authoritative servers."""

    def __init__(
        self,
        resolvers: Sequence[str] = (),
        *,
        query_port: int = 53,
        timeout: float = 2.0,
        servers_ttl: float = 60.0,
    ) -> None:
        if resolvers:
            self.resolver = dns.resolver.Resolver(configure=False)
            hosts = [_host_port(r, 53) for r in resolvers]
            self.resolver.nameservers = [h for h, _ in hosts]
            self.resolver.port = hosts[0][1]
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.lifetime = timeout * 2
        self.resolver.timeout = timeout
        self.query_port = query_port
        self.timeout = timeout
        self.servers_ttl = servers_ttl
        self._servers: dict[str, tuple[float, list[tuple[str, int]]]] = {}
        self._servers_lock = threading.Lock()

    def follow_cnames(self, name: str) -> str:
        """The end of the CNAME chain starting at ``name`` (``name`` itself when none)."""
        current = name
        for _ in range(MAX_CNAME_HOPS):
            try:
                answer = self.resolver.resolve(current, "CNAME", raise_on_no_answer=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers, dns.exception.Timeout):
                return current
            if answer.rrset is None:
                return current
            current = answer.rrset[0].target.to_text(omit_final_dot=True).lower()
        raise errors.TXTRecordError(detail=f"dns01: CNAME chain from {name} is too long")

    def zone_of(self, name: str) -> str:
        """The zone (SOA owner) that holds ``name``."""
        try:
            zone = dns.resolver.zone_for_name(name, resolver=self.resolver)
        except (dns.exception.DNSException, dns.resolver.NoRootSOA) as exc:
            raise errors.TXTRecordError(
                detail=f"dns01: cannot find the zone of {name}: {exc}"
            ) from None
        return zone.to_text(omit_final_dot=True).lower()

    def authoritative_servers(self, zone: str) -> list[tuple[str, int]]:
        """(address, port) of every nameserver the zone's NS set names (remembered for
        ``servers_ttl`` seconds: a bulk run checks many records in few zones)."""
        now = time.monotonic()
        with self._servers_lock:
            known = self._servers.get(zone)
        if known is not None and now - known[0] < self.servers_ttl:
            return known[1]
        servers = self._lookup_servers(zone)
        with self._servers_lock:
            self._servers[zone] = (now, servers)
        return servers

    def _lookup_servers(self, zone: str) -> list[tuple[str, int]]:
        try:
            ns_answer = self.resolver.resolve(zone, "NS")
        except dns.exception.DNSException as exc:
            raise errors.TXTRecordError(
                detail=f"dns01: cannot list the nameservers of {zone}: {exc}"
            ) from None
        servers: list[tuple[str, int]] = []
        for ns in ns_answer:
            host = ns.target.to_text(omit_final_dot=True)
            for rdtype in ("A", "AAAA"):
                try:
                    for addr in self.resolver.resolve(host, rdtype):
                        servers.append((addr.to_text(), self.query_port))
                except dns.exception.DNSException:
                    continue
        if not servers:
            raise errors.TXTRecordError(detail=f"dns01: no address for any nameserver of {zone}")
        return sorted(set(servers))

    def txt_at(self, server: tuple[str, int], name: str) -> set[str] | None:
        """TXT values ``server`` answers for ``name`` (``None`` when it did not answer)."""
        query = dns.message.make_query(name, dns.rdatatype.TXT)
        query.flags &= ~dns.flags.RD
        try:
            response = dns.query.udp(query, server[0], port=server[1], timeout=self.timeout)
            if response.flags & dns.flags.TC:
                response = dns.query.tcp(query, server[0], port=server[1], timeout=self.timeout)
        except (dns.exception.DNSException, OSError):
            return None
        values: set[str] = set()
        qname = dns.name.from_text(name)
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.TXT and rrset.name == qname:
                for rdata in rrset:
                    values.add(b"".join(rdata.strings).decode())
        return values


def plan_records(
    items: Iterable[tuple[str, str, str]], lookup: DNSLookup, *, follow_cname: bool = True
) -> list[ChallengeRecord]:
    """Turn (identifier, record name, value) triples into records with their CNAME target."""
    targets: dict[str, str] = {}
    records = []
    for identifier, record_name, value in items:
        if record_name not in targets:
            targets[record_name] = (
                lookup.follow_cnames(record_name) if follow_cname else record_name
            )
        records.append(ChallengeRecord(identifier, record_name, targets[record_name], value))
    return records


def await_propagation(
    records: Sequence[ChallengeRecord],
    lookup: DNSLookup,
    *,
    nameservers_for: Callable[[ChallengeRecord], Sequence[str] | None] = lambda _r: None,
    timeout: float = 180.0,
    interval: float = 0.1,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, list[str]]:
    """Wait until every authoritative nameserver serves every record's value.

    Returns, per target name, the servers that were checked. Raises ``PropagationTimeout``
    naming what is still missing where.
    """
    zone_servers: dict[str, list[tuple[str, int]]] = {}
    pending: set[tuple[str, str, tuple[str, int]]] = set()
    checked: dict[str, list[str]] = {}
    zones: dict[str, str] = {}  # target -> zone (a name and its wildcard share a target)
    for record in records:
        override = nameservers_for(record)
        if override:
            servers = [_host_port(s, lookup.query_port) for s in override]
        else:
            if record.target not in zones:
                zones[record.target] = lookup.zone_of(record.target)
            zone = zones[record.target]
            if zone not in zone_servers:
                zone_servers[zone] = lookup.authoritative_servers(zone)
            servers = zone_servers[zone]
        checked[record.target] = [f"{h}:{p}" for h, p in servers]
        pending.update((record.target, record.value, server) for server in servers)
    end = clock() + timeout
    total = len(pending)
    while True:
        answers: dict[tuple[str, tuple[str, int]], set[str] | None] = {}
        for target, value, server in sorted(pending):
            if (target, server) not in answers:
                answers[(target, server)] = lookup.txt_at(server, target)
            served = answers[(target, server)]
            if served is not None and value in served:
                pending.discard((target, value, server))
        if not pending:
            progress(f"propagation seen: {total} value(s) at every authoritative nameserver")
            return checked
        if clock() >= end:
            missing = ", ".join(sorted({f"{t} at {h}:{p}" for t, _v, (h, p) in pending}))
            raise errors.PropagationTimeout(
                detail=f"after {timeout:.0f} s still not served: {missing}"
            )
        sleep(interval)
