"""Prefect tasks of an ACME order: thin, retryable wrappers around one core call each.

No task takes or returns a private key or a secret: keys wait in the store's private staging
folder, account keys and provider credentials are loaded from the database inside the task.
Every ACME and DNS step uses ``NO_CACHE`` so a flow retry never reuses a stale order, and
spends the order's one :class:`~core.deadline.Deadline` (a retry starts only while time is
left, and no error raised at a spent deadline is retryable).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.orm import Session

from acmeflow.core import issuance
from acmeflow.core.accounts import open_session
from acmeflow.core.acme_client import DNSChallenge, IssuedCertificate, OrderHandle
from acmeflow.core.deadline import Deadline
from acmeflow.core.dns01 import ChallengeRecord
from acmeflow.core.dnsprovider import DNSProvider
from acmeflow.providers.configured import ConfiguredProviders
from acmeflow.tasks.common import (
    challenge_journal,
    db,
    dns_lookup,
    order_timeouts,
    progress,
    retry_if_retryable,
    settings,
)

ACME_TASK = {
    "cache_policy": NO_CACHE,
    "retries": 2,
    "retry_delay_seconds": [1, 5],
    "retry_condition_fn": retry_if_retryable,
    "persist_result": False,
}


def _providers_for(s: Session, records: list[ChallengeRecord]) -> dict[str, DNSProvider]:
    configured = ConfiguredProviders(s)
    return {r.provider: configured.get(r.provider) for r in records}


@task(name="place_order", **ACME_TASK)  # type: ignore[call-overload]
def place_order(
    ca: str, csr_pem: bytes, deadline: Deadline, replaces: str | None = None
) -> tuple[OrderHandle, list[DNSChallenge]]:
    """Create the order at the CA and list the DNS-01 challenges still to solve."""
    deadline.check("placing the order")
    with db() as s:
        session = open_session(s, ca, settings())
    with session.within(deadline), session.deadline(order_timeouts().order):
        order = session.place_order(csr_pem, replaces=replaces)
        progress(f"order placed at {ca}: {', '.join(order.identifiers)}")
        challenges = session.dns_challenges(order)
    if len(challenges) < len(order.authorization_urls):
        progress(f"{len(order.authorization_urls) - len(challenges)} authorization(s) reused")
    return order, challenges


@task(name="plan_txt_records", **ACME_TASK)  # type: ignore[call-overload]
def plan_txt_records(challenges: list[DNSChallenge]) -> list[ChallengeRecord]:
    """Where each TXT value goes (CNAME delegation followed) and through which provider."""
    with db() as s:
        configured = ConfiguredProviders(s)
        return issuance.plan_challenge_records(
            challenges, dns_lookup(), configured.name_for, configured.get
        )


@task(name="add_txt_records", **ACME_TASK)  # type: ignore[call-overload]
def add_txt_records(records: list[ChallengeRecord]) -> None:
    """Write every TXT value through its DNS provider (journaled first, for ``sweep``)."""
    with db() as s:
        providers = _providers_for(s, records)
    issuance.add_txt_records(records, providers, progress, challenge_journal())


@task(name="await_propagation", **ACME_TASK)  # type: ignore[call-overload]
def await_propagation(records: list[ChallengeRecord], deadline: Deadline) -> dict[str, list[str]]:
    """Wait until every authoritative nameserver serves every value."""
    with db() as s:
        providers = _providers_for(s, records)
    return issuance.check_propagation(
        records, providers, dns_lookup(), order_timeouts(), progress, deadline
    )


@task(name="answer_challenges", **ACME_TASK)  # type: ignore[call-overload]
def answer_challenges(ca: str, challenges: list[DNSChallenge], deadline: Deadline) -> None:
    """Tell the CA the records are there and wait until it validated them all."""
    deadline.check("answering the challenges")
    with db() as s:
        session = open_session(s, ca, settings())
    with session.within(deadline):
        session.answer_challenges(challenges, timeout=order_timeouts().validation)
    progress(f"validated: {len(challenges)} challenge(s)")


@task(name="finalize_order", **ACME_TASK)  # type: ignore[call-overload]
def finalize_order(ca: str, order: OrderHandle, deadline: Deadline) -> IssuedCertificate:
    """Finalize the order with its CSR and download the certificate chain."""
    deadline.check("finalizing the order")
    with db() as s:
        session = open_session(s, ca, settings())
    with session.within(deadline):
        issued = session.finalize(order, timeout=order_timeouts().finalize)
    progress("finalized: certificate downloaded")
    return issued


@task(name="cleanup_txt_records", cache_policy=NO_CACHE, persist_result=False)
def cleanup_txt_records(records: list[ChallengeRecord]) -> list[str]:
    """Remove our own TXT values; never fails the flow (problems are returned and logged)."""
    if not records:
        return []
    with db() as s:
        providers = _providers_for(s, records)
    return issuance.cleanup_txt_records(records, providers, progress, challenge_journal())
