"""Prefect tasks of the ``sweep`` flow: find stale challenge values, remove them per provider.

Every TXT value acmeflow presents is journaled before it is written and forgotten after its
cleanup (``core.state.challenge_journal``). A journal row older than the grace period is a
value a crashed run left behind: :func:`sweep_provider` removes exactly that value through its
provider (cleanup is idempotent and keeps other values) and deletes the row. It also *reports*
values it sees at ``_acme-challenge`` names of the provider that are not journaled (made by
hand, by another tool, or by a crash before the journal existed); it never deletes those.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from sqlalchemy import select
from sqlalchemy.orm import Session

from acmeflow.core import errors, leftovers
from acmeflow.core.dnsprovider import DNSProvider
from acmeflow.core.leftovers import Leftovers
from acmeflow.core.names import CHALLENGE_LABEL
from acmeflow.core.state import dns_providers
from acmeflow.core.state.challenge_journal import JournalEntry, delete_entries, stale_entries
from acmeflow.core.state.models import ChallengeJournalEntry, utcnow
from acmeflow.core.storage import stores_from_settings
from acmeflow.providers.configured import ConfiguredProviders
from acmeflow.tasks.common import db, progress, settings

STEP = {"cache_policy": NO_CACHE, "persist_result": False}


@dataclass(frozen=True)
class ProviderJob:
    """What to do at one DNS provider: stale entries to remove, names to inspect."""

    provider: str
    entries: list[JournalEntry]
    inspect: list[str]


@dataclass(frozen=True)
class SweepPlan:
    """The work of one sweep, per provider."""

    cutoff: str  # ISO 8601: journal rows created before it are stale
    jobs: list[ProviderJob]

    @property
    def stale(self) -> int:
        """Number of stale journal entries."""
        return sum(len(j.entries) for j in self.jobs)


@dataclass
class ProviderSweep:
    """What the sweep did at one provider (JSON-ready through :meth:`as_dict`)."""

    provider: str
    removed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    unjournaled: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the flow result and ``--json``."""
        return {
            "provider": self.provider,
            "removed": self.removed,
            "failed": self.failed,
            "unjournaled": self.unjournaled,
            "problems": self.problems,
        }


def _entry_row(entry: JournalEntry, **extra: Any) -> dict[str, Any]:
    return {
        "fqdn": entry.fqdn,
        "value": entry.value,
        "identifier": entry.identifier,
        "created_at": entry.created_at.isoformat(),
        "flow_run_id": entry.flow_run_id,
        **extra,
    }


def _detail(exc: BaseException, provider: DNSProvider | None = None) -> str:
    """An error as one line without secrets (providers mask theirs; others give the type)."""
    if isinstance(exc, errors.AcmeflowError):
        return exc.message if not exc.detail else f"{exc.message} {exc.detail}"
    prefix = f"{provider.type_name}: " if provider is not None else ""
    return f"{prefix}{type(exc).__name__}"


def failed_sweep(job: ProviderJob, exc: BaseException) -> ProviderSweep:
    """The result of a provider whose sweep task itself failed (its rows stay journaled)."""
    why = f"sweep failed: {_detail(exc)}"
    return ProviderSweep(
        provider=job.provider,
        failed=[_entry_row(e, error=why) for e in job.entries],
        problems=[why],
    )


@task(name="close_crashed_run", **STEP)  # type: ignore[call-overload]
def close_crashed_run(flow_run_id: str) -> Leftovers:
    """Close the history entries of a crashed or cancelled run and release its leases."""
    state = _run_state(flow_run_id)
    with db() as s:
        found = leftovers.close_crashed_run(s, flow_run_id, state=state)
    progress(
        f"sweep: run {flow_run_id} {state.lower()}: {len(found.interrupted)} history entr(ies) "
        f"closed, {len(found.leases)} lease(s) released"
    )
    return found


def _run_state(flow_run_id: str) -> str:
    """The state name of flow run ``flow_run_id`` ("Crashed" when it cannot be read)."""
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
    except Exception:  # an unknown id or no server: the automation said it crashed
        return "Crashed"
    return state.name if state is not None and state.name else "Crashed"


@task(name="clean_leftovers", **STEP)  # type: ignore[call-overload]
def clean_leftovers(
    older_than_seconds: float, staged_key_seconds: float | None = None
) -> Leftovers:
    """Remove what killed runs left besides TXT values: staged keys, ``running`` history
    entries (closed as interrupted) and expired leases, older than the grace period
    (``staged_key_seconds`` for staged keys, when given)."""
    now = utcnow()
    with db() as s:
        found = leftovers.clean_leftovers(
            s,
            stores_from_settings(settings()).values(),
            older_than=dt.timedelta(seconds=older_than_seconds),
            now=now,
            staged_older_than=(
                None if staged_key_seconds is None else dt.timedelta(seconds=staged_key_seconds)
            ),
        )
    if found.staged_keys or found.interrupted or found.leases:
        progress(
            f"sweep: {len(found.staged_keys)} staged key(s) removed, {len(found.interrupted)} "
            f"interrupted history entr(ies) closed, {len(found.leases)} expired lease(s) released"
        )
    return found


@task(name="plan_sweep", **STEP)  # type: ignore[call-overload]
def plan_sweep(
    older_than_seconds: float, inspect_limit: int = 100, crashed_run: str | None = None
) -> SweepPlan:
    """Stale journal entries grouped by provider, and per active provider the names to
    inspect for values that are not journaled (mapped domains first, at most
    ``inspect_limit`` per provider; 0 inspects nothing). Every value journaled by flow run
    ``crashed_run`` is stale whatever its age."""
    if older_than_seconds < 0:
        raise errors.ConfigError(
            detail=f"older_than_seconds must be >= 0 (got {older_than_seconds})"
        )
    cutoff = utcnow() - dt.timedelta(seconds=older_than_seconds)
    with db() as s:
        entries = stale_entries(s, cutoff, flow_run_id=crashed_run)
        by_provider: dict[str, list[JournalEntry]] = {}
        for entry in entries:
            by_provider.setdefault(entry.provider, []).append(entry)
        inspect: dict[str, list[str]] = {}
        if inspect_limit > 0:
            mapped: dict[str, list[str]] = {}
            for domain, provider in dns_providers.list_domain_mappings(s).items():
                mapped.setdefault(provider, []).append(f"{CHALLENGE_LABEL}.{domain}")
            active = {p.name for p in dns_providers.list_dns_providers(s, include_inactive=False)}
            for name in sorted(active & (set(mapped) | set(by_provider))):
                names = mapped.get(name, []) + [e.fqdn for e in by_provider.get(name, [])]
                inspect[name] = list(dict.fromkeys(names))[:inspect_limit]
    jobs = [
        ProviderJob(provider=name, entries=by_provider.get(name, []), inspect=inspect.get(name, []))
        for name in sorted(set(by_provider) | set(inspect))
    ]
    progress(
        f"sweep: {len(entries)} stale challenge value(s) older than {cutoff:%Y-%m-%d %H:%M:%S} "
        f"UTC at {sum(1 for j in jobs if j.entries)} DNS provider(s)"
    )
    return SweepPlan(cutoff=cutoff.isoformat(), jobs=jobs)


def _journaled_values(s: Session, fqdns: Iterable[str]) -> set[tuple[str, str]]:
    """(fqdn, value) of every journal row at these names, whichever provider wrote it."""
    wanted = sorted(set(fqdns))
    found: set[tuple[str, str]] = set()
    for i in range(0, len(wanted), 200):
        found.update(
            (f, v)
            for f, v in s.execute(
                select(ChallengeJournalEntry.fqdn, ChallengeJournalEntry.value).where(
                    ChallengeJournalEntry.fqdn.in_(wanted[i : i + 200])
                )
            )
        )
    return found


def _remove(provider: DNSProvider, entry: JournalEntry) -> tuple[bool, str]:
    """Remove one stale value; ``(True, note)`` when it is gone afterwards."""
    try:
        provider.cleanup(entry.fqdn, entry.value)
        return True, ""
    except Exception as exc:
        problem = _detail(exc, provider)
    try:  # a refused cleanup of a value that is not there leaves nothing behind either
        if entry.value not in provider.txt_values(entry.fqdn):
            return True, "already gone"
    except Exception:
        pass
    return False, problem


@task(name="sweep_provider", task_run_name="sweep_provider-{job.provider}", **STEP)  # type: ignore[call-overload]
def sweep_provider(job: ProviderJob) -> ProviderSweep:
    """Remove the stale values of one provider, delete their journal rows, and report values
    seen at its challenge names that no journal row explains. Never raises for a provider
    failure: the rows stay for the next sweep and the failure is reported."""
    result = ProviderSweep(provider=job.provider)
    try:
        with db() as s:
            provider = ConfiguredProviders(s).get(job.provider)
    except Exception as exc:
        why = _detail(exc)
        result.failed = [_entry_row(e, error=why) for e in job.entries]
        if job.entries or job.inspect:
            result.problems.append(why)
        progress(f"sweep {job.provider}: cannot use the provider: {why}")
        return result

    if job.entries:
        workers = max(1, min(settings().per_dns_provider_concurrency, len(job.entries)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(lambda e: _remove(provider, e), job.entries))
        done: list[int] = []
        for entry, (ok, note) in zip(job.entries, outcomes, strict=True):
            if ok:
                done.append(entry.id)
                result.removed.append(_entry_row(entry, note=note))
            else:
                result.failed.append(_entry_row(entry, error=note))
        with db() as s:
            delete_entries(s, done)
        progress(
            f"sweep {job.provider}: removed {len(result.removed)} stale value(s)"
            + (f", {len(result.failed)} could not be removed" if result.failed else "")
        )

    seen: dict[str, list[str]] = {}
    for fqdn in job.inspect:
        try:
            seen[fqdn] = provider.txt_values(fqdn)
        except Exception as exc:
            result.problems.append(f"{fqdn}: {_detail(exc, provider)}")
    # read the journal *after* the provider: a value written meanwhile was journaled first
    with db() as s:
        journaled = _journaled_values(s, seen)
    for fqdn, values in seen.items():
        result.unjournaled.extend(
            {"fqdn": fqdn, "value": v} for v in values if (fqdn, v) not in journaled
        )
    if result.unjournaled:
        progress(
            f"sweep {job.provider}: {len(result.unjournaled)} challenge value(s) not written "
            "by acmeflow (left in place)"
        )
    return result
