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
import dns.rcode
import dns.rdatatype
import dns.resolver

from acmeflow.core import errors

log = logging.getLogger(__name__)

MAX_CNAME_HOPS = 8
PRIVATE_ZONE_HINT = (
    "for a private zone set nameservers= on the DNS provider, or point ACMEFLOW_DNS_RESOLVERS "
    "at a server that knows the zone"
)


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

    @property
    def resolvers_text(self) -> str:
        """The resolvers asked, for messages (``host:port, ...``)."""
        return ", ".join(f"{h}:{self.resolver.port}" for h in self.resolver.nameservers)

    def follow_cnames(self, name: str, nameservers: Sequence[str] | None = None) -> str:
        """The end of the CNAME chain starting at ``name`` (``name`` itself when none).

        With ``nameservers`` (a provider's ``nameservers=``: split horizon, private zones)
        each hop is asked there first, then the resolvers. No CNAME (NXDOMAIN, no answer) ends
        the chain; a lookup that fails (time-out, SERVFAIL) raises ``DNSLookupFailed``.
        """
        servers = [_host_port(s, self.query_port) for s in nameservers or ()]
        current = name
        for _ in range(MAX_CNAME_HOPS):
            target = self._cname_at(servers, current) if servers else None
            if target is None:  # no provider nameservers, or the name is not in their zones
                target = self._cname(current)
            if not target:
                return current
            current = target
        raise errors.TXTRecordError(detail=f"dns01: CNAME chain from {name} is too long")

    def _cname(self, name: str) -> str | None:
        """The CNAME target of ``name`` at the resolvers (``None``: no CNAME)."""
        try:
            answer = self.resolver.resolve(name, "CNAME", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise errors.DNSLookupFailed(
                detail=f"CNAME lookup of {name} at {self.resolvers_text} failed: {exc}"
            ) from None
        if answer.rrset is None:
            return None
        return str(answer.rrset[0].target.to_text(omit_final_dot=True).lower())

    def _cname_at(self, servers: Sequence[tuple[str, int]], name: str) -> str | None:
        """The CNAME target of ``name`` asked directly at ``servers`` (``""``: none there,
        ``None``: none of them is authoritative for it)."""
        response = self._ask(servers, name, dns.rdatatype.CNAME, "CNAME lookup")
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return ""
        if rcode != dns.rcode.NOERROR or not response.flags & dns.flags.AA:
            return None
        qname = dns.name.from_text(name)
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == qname:
                return str(rrset[0].target.to_text(omit_final_dot=True).lower())
        return ""

    def _ask(
        self,
        servers: Sequence[tuple[str, int]],
        name: str,
        rdtype: dns.rdatatype.RdataType,
        what: str,
    ) -> dns.message.Message:
        """The first answer of ``servers`` to a non-recursive query (``DNSLookupFailed`` when
        none answers)."""
        query = dns.message.make_query(name, rdtype)
        query.flags &= ~dns.flags.RD
        problems: list[str] = []
        for host, port in servers:
            try:
                response = dns.query.udp(query, host, port=port, timeout=self.timeout)
                if response.flags & dns.flags.TC:
                    response = dns.query.tcp(query, host, port=port, timeout=self.timeout)
            except (dns.exception.DNSException, OSError) as exc:
                problems.append(f"{host}:{port}: {type(exc).__name__}")
                continue
            if response.rcode() == dns.rcode.SERVFAIL:
                problems.append(f"{host}:{port}: SERVFAIL")
                continue
            return response
        raise errors.DNSLookupFailed(
            detail=f"{what} of {name} failed at the provider's nameservers: {'; '.join(problems)}"
        )

    def zone_of(self, name: str) -> str:
        """The zone (SOA owner) that holds ``name``, as the resolvers see it."""
        try:
            zone = dns.resolver.zone_for_name(name, resolver=self.resolver)
        except dns.resolver.NoRootSOA:
            raise errors.DNSLookupFailed(
                detail=f"no zone holds {name} as seen by the resolver(s) {self.resolvers_text}; "
                f"{PRIVATE_ZONE_HINT}"
            ) from None
        except dns.exception.DNSException as exc:
            raise errors.DNSLookupFailed(
                detail=f"cannot find the zone of {name} at the resolver(s) "
                f"{self.resolvers_text}: {exc}; {PRIVATE_ZONE_HINT}"
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
            raise errors.DNSLookupFailed(
                detail=f"cannot list the nameservers of {zone} at the resolver(s) "
                f"{self.resolvers_text}: {exc}"
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
            raise errors.DNSLookupFailed(
                detail=f"no address for any nameserver of {zone} at the resolver(s) "
                f"{self.resolvers_text}"
            )
        return sorted(set(servers))

    def txt_at(
        self, server: tuple[str, int], name: str, *, timeout: float | None = None
    ) -> set[str] | None:
        """TXT values ``server`` answers for ``name`` (``None`` when it did not answer within
        ``timeout`` seconds, by default the lookup's)."""
        query = dns.message.make_query(name, dns.rdatatype.TXT)
        query.flags &= ~dns.flags.RD
        wait = self.timeout if timeout is None else timeout
        try:
            response = dns.query.udp(query, server[0], port=server[1], timeout=wait)
            if response.flags & dns.flags.TC:
                response = dns.query.tcp(query, server[0], port=server[1], timeout=wait)
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
    items: Iterable[tuple[str, str, str]],
    lookup: DNSLookup,
    *,
    follow_cname: bool = True,
    nameservers_for: Callable[[str], Sequence[str] | None] = lambda _n: None,
) -> list[ChallengeRecord]:
    """Turn (identifier, record name, value) triples into records with their CNAME target.

    ``nameservers_for(record_name)``: the nameservers of the provider of that name (its
    ``nameservers=``), where CNAMEs are looked up first.
    """
    targets: dict[str, str] = {}
    records = []
    for identifier, record_name, value in items:
        if record_name not in targets:
            targets[record_name] = (
                lookup.follow_cnames(record_name, nameservers_for(record_name))
                if follow_cname
                else record_name
            )
        records.append(ChallengeRecord(identifier, record_name, targets[record_name], value))
    return records


Pending = tuple[str, str, tuple[str, int]]  # (target, value, server)


@dataclass(frozen=True)
class PropagationResult:
    """What :func:`watch_propagation` saw: where each target was checked, the values still
    missing at the deadline, the servers that answered, and the records whose nameservers could
    not be found (with the error)."""

    checked: dict[str, list[str]]
    missing: frozenset[Pending]
    answered: frozenset[tuple[str, int]]
    unresolved: dict[tuple[str, str], errors.AcmeflowError]
    timeout: float

    def error_for(self, records: Sequence[ChallengeRecord]) -> errors.AcmeflowError | None:
        """Why ``records`` are not all served everywhere (``None``: they are)."""
        keys = {(r.target, r.value) for r in records}
        for key in sorted(keys):
            if key in self.unresolved:
                return self.unresolved[key]
        pending = {p for p in self.missing if (p[0], p[1]) in keys}
        return _missing_error(pending, set(self.answered), self.timeout) if pending else None


def watch_propagation(
    records: Sequence[ChallengeRecord],
    lookup: DNSLookup,
    *,
    nameservers_for: Callable[[ChallengeRecord], Sequence[str] | None] = lambda _r: None,
    timeout: float = 180.0,
    interval: float = 0.1,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] = lambda _m: None,
) -> PropagationResult:
    """Wait until every authoritative nameserver serves every record's value, or the timeout.

    Each zone's nameservers are looked up once for all records. A record whose nameservers
    cannot be found is set aside (``unresolved``) and the others are still watched. No query
    outlives the deadline.
    """
    zone_servers: dict[str, list[tuple[str, int]]] = {}
    pending: set[Pending] = set()
    checked: dict[str, list[str]] = {}
    unresolved: dict[tuple[str, str], errors.AcmeflowError] = {}
    zones: dict[str, str] = {}  # target -> zone (a name and its wildcard share a target)
    for record in records:
        try:
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
        except errors.AcmeflowError as exc:
            unresolved[(record.target, record.value)] = exc
            continue
        checked[record.target] = [f"{h}:{p}" for h, p in servers]
        pending.update((record.target, record.value, server) for server in servers)
    end = clock() + timeout
    total = len(pending)
    answered: set[tuple[str, int]] = set()
    while pending:
        answers: dict[tuple[str, tuple[str, int]], set[str] | None] = {}
        for target, value, server in sorted(pending):
            if (target, server) not in answers:
                answers[(target, server)] = lookup.txt_at(
                    server, target, timeout=max(0.1, min(lookup.timeout, end - clock()))
                )
            served = answers[(target, server)]
            if served is not None:
                answered.add(server)
                if value in served:
                    pending.discard((target, value, server))
        if not pending or clock() + interval >= end:
            break
        sleep(interval)
    if total and not pending:
        progress(f"propagation seen: {total} value(s) at every authoritative nameserver")
    return PropagationResult(
        checked=checked,
        missing=frozenset(pending),
        answered=frozenset(answered),
        unresolved=unresolved,
        timeout=timeout,
    )


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
    """:func:`watch_propagation` that raises: at the deadline ``NameserverNotAnswering`` when
    a server never answered, else ``PropagationTimeout`` naming what is still missing where.
    Returns, per target name, the servers that were checked."""
    result = watch_propagation(
        records,
        lookup,
        nameservers_for=nameservers_for,
        timeout=timeout,
        interval=interval,
        sleep=sleep,
        clock=clock,
        progress=progress,
    )
    error = result.error_for(records)
    if error is not None:
        raise error
    return result.checked


def _missing_error(
    pending: set[Pending], answered: set[tuple[str, int]], timeout: float
) -> errors.AcmeflowError:
    """The error for what is still pending at the deadline: silent servers first."""
    silent = sorted({server for _t, _v, server in pending} - answered)
    if silent:
        names = ", ".join(sorted({t for t, _v, server in pending if server in silent}))
        return errors.NameserverNotAnswering(
            ", ".join(f"{h}:{p}" for h, p in silent),
            detail=f"no answer to TXT queries for {names} in {timeout:.0f} s",
        )
    missing = ", ".join(sorted({f"{t} at {h}:{p}" for t, _v, (h, p) in pending}))
    return errors.PropagationTimeout(detail=f"after {timeout:.0f} s still not served: {missing}")
