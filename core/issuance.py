"""One certificate order solved end to end, as separate steps (Present / Check / CleanUp).

The Prefect tasks call these steps one by one; :func:`issue_certificate` runs them in order for
code that does not need Prefect (benchmarks, scripts). Every DNS-01 challenge of an order is
solved at once: all TXT values written, all checked at every authoritative nameserver, then all
answered. Cleanup always runs and removes only our own values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol

from acmeflow.core import errors
from acmeflow.core.acme_client import AcmeSession, DNSChallenge, IssuedCertificate, OrderHandle
from acmeflow.core.deadline import Deadline
from acmeflow.core.dns01 import ChallengeRecord, DNSLookup, await_propagation, plan_records
from acmeflow.core.dnsprovider import DNSProvider, ZoneFindingDNSProvider

log = logging.getLogger(__name__)


class Progress(Protocol):
    """Reports a step (``problem=True``: something went wrong that does not stop the order)."""

    def __call__(self, message: str, *, problem: bool = False) -> None:
        """Report ``message``."""
        ...


def no_progress(message: str, *, problem: bool = False) -> None:
    """A :class:`Progress` that reports nothing."""


class ChallengeJournal(Protocol):
    """Where presented TXT values are remembered until cleaned up (crash recovery: ``sweep``).

    ``record`` must have stored the values durably when it returns (it runs before any value
    is presented); ``forget`` drops values that were removed.
    """

    def record(self, records: Sequence[ChallengeRecord]) -> None:
        """Remember values that are about to be presented."""
        ...

    def forget(self, records: Sequence[ChallengeRecord]) -> None:
        """Forget values that were cleaned up."""
        ...


@dataclass(frozen=True)
class Timeouts:
    """Time limits of an order, in seconds: each slow step has its own, and ``total`` is the
    one deadline of the whole order (every step, retry and wait) that none may outlive."""

    propagation: float = 180.0
    propagation_interval: float = 0.1
    validation: float = 180.0
    finalize: float = 180.0
    order: float = 180.0  # placing the order and reading its challenges
    total: float = 540.0

    def deadline(self) -> Deadline:
        """The deadline of an order that starts now."""
        return Deadline.after(self.total)


def plan_challenge_records(
    challenges: Sequence[DNSChallenge],
    lookup: DNSLookup,
    provider_for: Callable[[str], str],
    providers: Callable[[str], DNSProvider] | None = None,
) -> list[ChallengeRecord]:
    """Where each challenge value goes (CNAME followed) and which provider writes it.

    ``provider_for(target_name)`` returns the configured provider name for a name; it raises
    the catalog errors for unmapped names or inactive providers. With ``providers`` (name ->
    provider), CNAMEs are first looked up at the ``nameservers=`` of the record's provider.
    """

    def nameservers_for(record_name: str) -> Sequence[str] | None:
        if providers is None:
            return None
        try:
            return providers(provider_for(record_name)).check_nameservers()
        except errors.AcmeflowError:  # the name itself may be unmapped: only its target counts
            return None

    items = ((c.identifier, c.record_name, c.value) for c in challenges)
    records = plan_records(items, lookup, nameservers_for=nameservers_for)
    return [replace(r, provider=provider_for(r.target)) for r in records]


def _each(
    units: Sequence[list[ChallengeRecord]], action: Callable[[list[ChallengeRecord]], None]
) -> None:
    if len(units) <= 1:
        for unit in units:
            action(unit)
        return
    with ThreadPoolExecutor(max_workers=min(8, len(units))) as pool:
        for future in [pool.submit(action, u) for u in units]:
            future.result()


def _provider(providers: Mapping[str, DNSProvider], record: ChallengeRecord) -> DNSProvider:
    return provider_named(providers, record.provider)


def provider_named(providers: Mapping[str, DNSProvider], name: str) -> DNSProvider:
    """``providers[name]``, or the catalog error for a provider that is not there."""
    try:
        return providers[name]
    except KeyError:
        raise errors.DNSProviderUnavailable(name or "(none)") from None


def _units(
    records: Sequence[ChallengeRecord], providers: Mapping[str, DNSProvider], batch: str
) -> list[list[ChallengeRecord]]:
    """Work units: all records of a provider that has the ``batch`` method (one exchange),
    else one record each (run in parallel)."""
    by_provider: dict[str, list[ChallengeRecord]] = {}
    units: list[list[ChallengeRecord]] = []
    for record in records:
        if hasattr(providers.get(record.provider), batch):
            by_provider.setdefault(record.provider, []).append(record)
        else:
            units.append([record])
    return list(by_provider.values()) + units


def _apply(provider: DNSProvider, unit: list[ChallengeRecord], single: str, batch: str) -> None:
    """``provider.<batch>(all of unit)`` when the provider batches, else ``<single>`` once."""
    if hasattr(provider, batch):
        getattr(provider, batch)([(r.target, r.value) for r in unit])
    else:
        (record,) = unit
        getattr(provider, single)(record.target, record.value)


def add_txt_records(
    records: Sequence[ChallengeRecord],
    providers: Mapping[str, DNSProvider],
    progress: Progress = no_progress,
    journal: ChallengeJournal | None = None,
) -> None:
    """Present every value through its provider (providers keep other values).

    Providers with ``present_all`` (:class:`core.dnsprovider.BatchDNSProvider`) get all their
    values at once. With a ``journal`` every value is recorded there before the first one is
    presented.
    """

    def present(unit: list[ChallengeRecord]) -> None:
        provider = _provider(providers, unit[0])
        try:
            _apply(provider, unit, "present", "present_all")
        except errors.AcmeflowError:
            raise
        except Exception as exc:  # an adapter bug must still surface as the catalog error
            raise errors.TXTRecordError(
                detail=f"{provider.type_name}: {type(exc).__name__}: {exc}"
            ) from None
        for record in unit:
            progress(
                f"TXT record written: {record.target} ({record.identifier}) via {record.provider}"
            )

    if journal is not None:
        journal.record(records)
    _each(_units(records, providers, "present_all"), present)


def cleanup_txt_records(
    records: Sequence[ChallengeRecord],
    providers: Mapping[str, DNSProvider],
    progress: Progress = no_progress,
    journal: ChallengeJournal | None = None,
) -> list[str]:
    """Remove our own values; never raises. Returns the problems met (for the log).

    With a ``journal`` the values removed are forgotten there; the others stay for ``sweep``.
    """
    problems: list[str] = []
    removed: list[ChallengeRecord] = []

    def remove(unit: list[ChallengeRecord]) -> None:
        try:
            _apply(_provider(providers, unit[0]), unit, "cleanup", "cleanup_all")
        except Exception as exc:
            detail = (
                (exc.detail or exc.message) if isinstance(exc, errors.AcmeflowError) else str(exc)
            )
            for record in unit:
                problems.append(f"{record.target}: {detail}")
                log.warning("cleanup of %s failed: %s", record.target, detail)
        else:
            removed.extend(unit)

    _each(_units(records, providers, "cleanup_all"), remove)
    if journal is not None and removed:
        try:
            journal.forget(removed)
        except Exception as exc:  # the values are gone; a stale row only costs a sweep
            problems.append(f"challenge journal: {type(exc).__name__}")
            log.warning("could not update the challenge journal: %s", type(exc).__name__)
    left = len(records) - len(removed)
    if left:
        causes = "; ".join(p for p in problems if not p.startswith("challenge journal"))
        progress(
            f"TXT records not cleaned up: {left} of {len(records)} left behind "
            f"(`acmeflow sweep` removes them later): {causes}",
            problem=True,
        )
    elif records:
        progress(f"TXT records cleaned up: {len(removed)} of {len(records)}")
    return problems


def check_propagation(
    records: Sequence[ChallengeRecord],
    providers: Mapping[str, DNSProvider],
    lookup: DNSLookup,
    timeouts: Timeouts,
    progress: Progress = no_progress,
    deadline: Deadline | None = None,
) -> dict[str, list[str]]:
    """Wait until every authoritative nameserver serves every value (provider overrides win),
    within the propagation timeout and the order's ``deadline``."""
    timeout = timeouts.propagation
    if deadline is not None:
        deadline.check("propagation check")
        timeout = deadline.cap(timeout)
    return await_propagation(
        records,
        lookup,
        nameservers_for=lambda r: servers_to_check(_provider(providers, r), r.target, lookup),
        timeout=timeout,
        interval=timeouts.propagation_interval,
        progress=progress,
    )


def servers_to_check(provider: DNSProvider, target: str, lookup: DNSLookup) -> Sequence[str] | None:
    """Where to check ``target``: the provider's ``nameservers=``; for a provider that finds
    zones at its own server (RFC 2136) the zone's nameservers, or that server when the
    resolvers do not know the zone (private zones); else ``None`` (the public delegation)."""
    override = provider.check_nameservers()
    if override or not isinstance(provider, ZoneFindingDNSProvider):
        return override
    zone = provider.find_zone(target)
    try:
        return [f"{host}:{port}" for host, port in lookup.authoritative_servers(zone)]
    except errors.DNSLookupFailed as exc:
        log.info("zone %s: %s; checking at %s", zone, exc.detail, provider.primary_nameserver)
        return [provider.primary_nameserver]


def issue_certificate(
    session: AcmeSession,
    csr_pem: bytes,
    *,
    lookup: DNSLookup,
    provider_for: Callable[[str], str],
    providers: Mapping[str, DNSProvider],
    timeouts: Timeouts = Timeouts(),
    replaces: str | None = None,
    progress: Progress = no_progress,
    journal: ChallengeJournal | None = None,
) -> IssuedCertificate:
    """Order, solve every DNS-01 challenge at once, finalize, download; always clean up.

    One deadline (``timeouts.total``) covers every step; cleanup runs after it all the same.
    """
    deadline = timeouts.deadline()
    with session.within(deadline):
        with session.deadline(timeouts.order):
            order: OrderHandle = session.place_order(csr_pem, replaces=replaces)
            progress(f"order placed: {', '.join(order.identifiers)}")
            challenges = session.dns_challenges(order)
        records: list[ChallengeRecord] = []
        try:
            records = plan_challenge_records(
                challenges, lookup, provider_for, partial(provider_named, providers)
            )
            add_txt_records(records, providers, progress, journal)
            check_propagation(records, providers, lookup, timeouts, progress, deadline)
            session.answer_challenges(challenges, timeout=timeouts.validation)
            progress(f"validated: {len(challenges)} challenge(s)")
            issued = session.finalize(order, timeout=timeouts.finalize)
            progress("finalized: certificate downloaded")
            return issued
        finally:
            cleanup_txt_records(records, providers, progress, journal)
