"""The DNS side of DNS-01 (Present / Check / CleanUp) for many challenge values at once.

:mod:`core.pipeline` runs these for a whole batch of orders: every value planned (CNAMEs
followed), written through its provider (a batching provider gets all its values in one
exchange), checked at every authoritative nameserver, and always cleaned up (only our own
values). Also the order :class:`Timeouts` and the :class:`Progress` and
:class:`ChallengeJournal` protocols the steps use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol

from acmeflow.core import errors
from acmeflow.core.acme_client import DNSChallenge
from acmeflow.core.deadline import Deadline
from acmeflow.core.dns01 import (
    ChallengeRecord,
    DNSLookup,
    PropagationResult,
    plan_records,
    watch_propagation,
)
from acmeflow.core.dnsprovider import BatchDNSProvider, DNSProvider, ZoneFindingDNSProvider

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
    units: Sequence[list[ChallengeRecord]],
    action: Callable[[list[ChallengeRecord]], None],
    per_provider: int,
) -> None:
    """``action`` on every unit in parallel, at most ``per_provider`` at once per provider."""
    if len(units) <= 1:
        for unit in units:
            action(unit)
        return
    slots = {u[0].provider: threading.BoundedSemaphore(max(1, per_provider)) for u in units}

    def limited(unit: list[ChallengeRecord]) -> None:
        with slots[unit[0].provider]:
            action(unit)

    workers = min(len(units), max(1, per_provider) * len(slots), 64)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(limited, u) for u in units]:
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
    records: Sequence[ChallengeRecord], providers: Mapping[str, DNSProvider]
) -> list[list[ChallengeRecord]]:
    """Work units: all records of a :class:`BatchDNSProvider` (one exchange), else one record
    each (run in parallel)."""
    by_provider: dict[str, list[ChallengeRecord]] = {}
    units: list[list[ChallengeRecord]] = []
    for record in records:
        if isinstance(providers.get(record.provider), BatchDNSProvider):
            by_provider.setdefault(record.provider, []).append(record)
        else:
            units.append([record])
    return list(by_provider.values()) + units


def _present(provider: DNSProvider, unit: list[ChallengeRecord]) -> None:
    if isinstance(provider, BatchDNSProvider):
        provider.present_all([(r.target, r.value) for r in unit])
    else:
        (record,) = unit
        provider.present(record.target, record.value)


def _remove(provider: DNSProvider, unit: list[ChallengeRecord]) -> None:
    if isinstance(provider, BatchDNSProvider):
        provider.cleanup_all([(r.target, r.value) for r in unit])
    else:
        (record,) = unit
        provider.cleanup(record.target, record.value)


def add_txt_records(
    records: Sequence[ChallengeRecord],
    providers: Mapping[str, DNSProvider],
    progress: Progress = no_progress,
    journal: ChallengeJournal | None = None,
    on_error: Callable[[ChallengeRecord, errors.AcmeflowError], None] | None = None,
    per_provider: int = 8,
) -> None:
    """Present every value through its provider (providers keep other values).

    A :class:`~core.dnsprovider.BatchDNSProvider` gets all its values at once. With a
    ``journal`` every value is recorded there before the first one is presented. A failure
    raises its catalog error, or with ``on_error`` is reported for each record it concerns
    while the other providers' values are still written.
    """

    def present(unit: list[ChallengeRecord]) -> None:
        provider = _provider(providers, unit[0])
        try:
            try:
                _present(provider, unit)
            except errors.AcmeflowError:
                raise
            except Exception as exc:  # an adapter bug must still surface as the catalog error
                raise errors.TXTRecordError(
                    detail=f"{provider.type_name}: {type(exc).__name__}: {exc}"
                ) from None
        except errors.AcmeflowError as exc:
            if on_error is None:
                raise
            for record in unit:
                on_error(record, exc)
            return
        for record in unit:
            progress(
                f"TXT record written: {record.target} ({record.identifier}) via {record.provider}"
            )

    if journal is not None:
        journal.record(records)
    _each(_units(records, providers), present, per_provider)


def cleanup_txt_records(
    records: Sequence[ChallengeRecord],
    providers: Mapping[str, DNSProvider],
    progress: Progress = no_progress,
    journal: ChallengeJournal | None = None,
    per_provider: int = 8,
) -> list[str]:
    """Remove our own values; never raises (at most ``per_provider`` calls at once per
    provider that does not batch). Returns the problems met (for the log).

    With a ``journal`` the values removed are forgotten there; the others stay for ``sweep``.
    """
    problems: list[str] = []
    removed: list[ChallengeRecord] = []

    def remove(unit: list[ChallengeRecord]) -> None:
        try:
            _remove(_provider(providers, unit[0]), unit)
        except Exception as exc:
            detail = (
                (exc.detail or exc.message) if isinstance(exc, errors.AcmeflowError) else str(exc)
            )
            for record in unit:
                problems.append(f"{record.target}: {detail}")
                log.warning("cleanup of %s failed: %s", record.target, detail)
        else:
            removed.extend(unit)

    _each(_units(records, providers), remove, per_provider)
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
    deadline: Deadline,
    progress: Progress = no_progress,
) -> PropagationResult:
    """Watch until every authoritative nameserver serves every value (provider overrides win),
    within the propagation timeout and the ``deadline``; what is still missing is in the
    result, per record."""
    deadline.check("propagation check")
    return watch_propagation(
        records,
        lookup,
        nameservers_for=lambda r: servers_to_check(_provider(providers, r), r.target, lookup),
        timeout=deadline.cap(timeouts.propagation),
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
