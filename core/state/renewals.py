"""Renewal queries (F6): which certificates to look at, their DNS providers, and what a
renewal attempt changes on the certificate row (ARI window, backoff, success).

Like the other state modules (:mod:`core.state.cas` and its siblings) these functions flush
but never commit; times are aware UTC and always passed in (``now``), so a what-if run with
another clock behaves the same.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from acmeflow.core import renewal
from acmeflow.core.errors import (
    CAConfigMissing,
    ConfigError,
    NotFound,
)
from acmeflow.core.state import certificates, leases
from acmeflow.core.state.models import CAVendor, Certificate


@dataclass(frozen=True)
class RenewalCandidate:
    """A certificate to consider for renewal, as plain data (safe to hand to Prefect tasks)."""

    id: int
    names: list[str]
    common_name: str | None
    store: str
    folder: str
    enrollment: str
    ca_name: str | None
    ca_id: int | None
    renew_days: int | None
    not_after: dt.datetime | None
    key_type: str | None
    reuse_key: bool
    csr_fields: dict[str, Any] = field(default_factory=dict)
    ari_cert_id: str | None = None
    ari_window_start: dt.datetime | None = None
    ari_window_end: dt.datetime | None = None
    ari_checked_at: dt.datetime | None = None
    ari_retry_after: dt.datetime | None = None
    failure_count: int = 0

    @property
    def ari_window(self) -> renewal.AriWindow | None:
        """The stored ARI window, if the CA gave one."""
        if self.ari_window_start is None or self.ari_window_end is None:
            return None
        return renewal.AriWindow(self.ari_window_start, self.ari_window_end)


def _candidate(cert: Certificate, ca: CAVendor | None) -> RenewalCandidate:
    return RenewalCandidate(
        id=cert.id,
        names=list(cert.names),
        common_name=cert.common_name,
        store=cert.store,
        folder=cert.folder,
        enrollment=cert.enrollment,
        ca_name=ca.name if ca is not None else None,
        ca_id=ca.id if ca is not None else None,
        renew_days=ca.renew_days if ca is not None else None,
        not_after=cert.not_after,
        key_type=cert.key_type,
        reuse_key=bool(cert.reuse_key),
        csr_fields=dict(cert.csr_fields or {}),
        ari_cert_id=cert.ari_cert_id,
        ari_window_start=cert.ari_window_start,
        ari_window_end=cert.ari_window_end,
        ari_checked_at=cert.ari_checked_at,
        ari_retry_after=cert.ari_retry_after,
        failure_count=cert.failure_count or 0,
    )


def renewal_cas(s: Session, ca: str | None = None) -> list[CAVendor]:
    """The active CA vendors a scheduled run covers (only ``ca`` when given)."""
    if ca is not None:
        row = s.scalars(select(CAVendor).where(CAVendor.name == ca)).one_or_none()
        if row is None:
            raise CAConfigMissing(detail=f"no CA vendor named {ca!r}")
        if not row.active:
            raise CAConfigMissing(detail=f"CA vendor {ca!r} is not active")
        return [row]
    return list(s.scalars(select(CAVendor).where(CAVendor.active.is_(True)).order_by(CAVendor.id)))


def _maybe_due(
    *, now: dt.datetime, cas: Sequence[CAVendor], ari_ca_ids: Iterable[int]
) -> list[ColumnElement[bool]]:
    """The conditions of an active auto-enrolled certificate of ``cas`` that may be due at
    ``now`` and is not in backoff (see :func:`due_candidates`)."""
    by_id = {ca.id for ca in cas}
    ari_ids = [i for i in ari_ca_ids if i in by_id]
    per_ca = [
        and_(
            Certificate.ca_vendor_id == ca.id,
            Certificate.not_after <= now + dt.timedelta(days=ca.renew_days),
        )
        for ca in cas
    ]
    return [
        Certificate.status == "active",
        Certificate.enrollment == "auto",
        Certificate.ca_vendor_id.in_(list(by_id)),
        or_(Certificate.next_attempt_at.is_(None), Certificate.next_attempt_at <= now),
        or_(
            *per_ca,
            Certificate.ari_window_start <= now,
            and_(
                Certificate.ca_vendor_id.in_(ari_ids or [-1]),
                Certificate.ari_cert_id.is_not(None),
                or_(Certificate.ari_retry_after.is_(None), Certificate.ari_retry_after <= now),
            ),
        ),
    ]


def due_candidates(
    s: Session,
    *,
    now: dt.datetime,
    cas: Sequence[CAVendor],
    ari_ca_ids: Iterable[int] = (),
) -> list[RenewalCandidate]:
    """Active auto-enrolled certificates of ``cas`` that may be due at ``now``.

    Certificates in backoff (``next_attempt_at`` later than ``now``) are left out. The query
    only narrows the set (expiring within the CA's ``renew_days``, an ARI window already open,
    or an ARI check due at a CA in ``ari_ca_ids``); :func:`core.renewal.is_due` decides.
    """
    if not cas:
        return []
    by_id = {ca.id: ca for ca in cas}
    q = (
        select(Certificate)
        .where(*_maybe_due(now=now, cas=cas, ari_ca_ids=ari_ca_ids))
        .order_by(Certificate.not_after, Certificate.id)
    )
    return [_candidate(cert, by_id[cert.ca_vendor_id or 0]) for cert in s.scalars(q)]


def lock_unclaimed(s: Session, certificate_ids: Sequence[int]) -> set[int]:
    """Of ``certificate_ids``, those no other transaction is claiming right now, their rows
    locked until ``s`` commits. On PostgreSQL ``FOR NO KEY UPDATE SKIP LOCKED``: a run
    opening a batch skips at once the certificates another run is opening (or a scan is
    writing) instead of waiting for its commit, so claims never wait on each other; the lock
    does not hold up rows that merely reference the certificate (history entries). SQLite,
    which serializes writers anyway, gets every id."""
    if not certificate_ids:
        return set()
    if s.get_bind().dialect.name != "postgresql":
        return set(certificate_ids)
    return set(
        s.scalars(
            select(Certificate.id)
            .where(Certificate.id.in_(certificate_ids))
            .order_by(Certificate.id)
            .with_for_update(skip_locked=True, key_share=True)
        )
    )


def claim_due(
    s: Session,
    *,
    now: dt.datetime,
    cas: Sequence[CAVendor],
    ari_ca_ids: Iterable[int] = (),
    owner: str,
    flow_run_id: str | None = None,
    limit: int = 500,
    ttl: dt.timedelta = leases.DEFAULT_TTL,
) -> list[RenewalCandidate]:
    """Claim up to ``limit`` of the certificates :func:`due_candidates` would return, soonest
    expiry first, by taking their leases: certificates whose lease another run holds are left
    out. On PostgreSQL the candidate rows are locked with ``FOR UPDATE SKIP LOCKED``, so
    workers claiming at the same time get disjoint batches without waiting for each other.
    Commit ``s`` before acting on the claim.
    """
    if not cas:
        return []
    lease_key = leases.certificate_key_sql(Certificate.id)
    q = (
        select(Certificate.id)
        .where(
            *_maybe_due(now=now, cas=cas, ari_ca_ids=ari_ca_ids),
            ~leases.unexpired_lease_on(lease_key, now),
        )
        .order_by(Certificate.not_after, Certificate.id)
        .limit(limit)
    )
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True, of=Certificate)
    ids = list(s.scalars(q))
    taken = leases.acquire_free(
        s,
        [leases.certificate_key(i) for i in ids],
        owner=owner,
        flow_run_id=flow_run_id,
        ttl=ttl,
        now=now,
    )
    claimed = sorted(int(key.rpartition(":")[2]) for key in taken)
    by_id = {ca.id: ca for ca in cas}
    certs = s.scalars(
        select(Certificate)
        .where(Certificate.id.in_(claimed))
        .order_by(Certificate.not_after, Certificate.id)
    )
    return [_candidate(cert, by_id[cert.ca_vendor_id or 0]) for cert in certs]


def candidates_by_id(
    s: Session, certificate_ids: Sequence[int], *, ca: str | None = None
) -> list[RenewalCandidate]:
    """The certificates ``certificate_ids`` for an on-demand renewal (any enrollment).

    Unknown ids raise NotFound. ``ca`` names the CA to renew through for a certificate that
    has none; a certificate under another CA raises ConfigError (enroll it under the new CA
    first: that is a vendor change).
    """
    certs = certificates.certificates_by_id(s, certificate_ids)
    override = None
    if ca is not None:
        override = s.scalars(select(CAVendor).where(CAVendor.name == ca)).one_or_none()
        if override is None:
            raise CAConfigMissing(detail=f"no CA vendor named {ca!r}")
    result = []
    for cert in certs:
        if cert.status != "active":
            raise NotFound(
                detail=f"certificate {cert.id} is no longer in its store (status {cert.status})"
            )
        vendor = cert.ca_vendor
        if override is not None:
            if vendor is not None and vendor.id != override.id:
                raise ConfigError(
                    detail=f"certificate {cert.id} renews through CA vendor {vendor.name!r}; "
                    f"enroll it under {override.name!r} first (vendor change)"
                )
            vendor = override
        result.append(_candidate(cert, vendor))
    return result


# --- what an attempt changes -------------------------------------------------------------------


def record_ari(
    s: Session,
    certificate_id: int,
    result: renewal.AriResult,
    *,
    renewal_due_at: dt.datetime | None,
) -> None:
    """Store the CA's ARI answer (window, when asked, when to ask again) and the due time."""
    cert = s.get(Certificate, certificate_id)
    if cert is None:
        return
    window = result.window
    cert.ari_window_start = window.start if window else None
    cert.ari_window_end = window.end if window else None
    cert.ari_explanation_url = window.explanation_url if window else None
    cert.ari_checked_at = result.checked_at
    cert.ari_retry_after = result.retry_after
    cert.renewal_due_at = renewal_due_at
    s.flush()


def record_due(s: Session, due_at: dict[int, dt.datetime | None]) -> None:
    """Remember when each certificate becomes due (shown by listings, used by schedules)."""
    for cert_id, when in due_at.items():
        cert = s.get(Certificate, cert_id)
        if cert is not None and cert.renewal_due_at != when:
            cert.renewal_due_at = when
    s.flush()


def record_failure(
    s: Session,
    certificate_id: int,
    message: str,
    *,
    now: dt.datetime,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> dt.datetime | None:
    """Count a failed attempt and push the next one back (exponential backoff, jittered).

    The certificate in service is not touched. Returns the next attempt time.
    """
    cert = s.get(Certificate, certificate_id)
    if cert is None:
        return None
    cert.failure_count = (cert.failure_count or 0) + 1
    cert.last_error = message
    cert.last_attempt_at = now
    cert.next_attempt_at = renewal.next_attempt_at(
        now, cert.failure_count, retry_after=retry_after, rand=rand
    )
    s.flush()
    return cert.next_attempt_at


def record_skip(s: Session, certificate_id: int, message: str, *, now: dt.datetime) -> None:
    """Note why a due certificate was skipped (a configuration problem: no backoff, it is
    renewed as soon as the configuration is fixed)."""
    cert = s.get(Certificate, certificate_id)
    if cert is None:
        return
    cert.last_error = message
    cert.last_attempt_at = now
    s.flush()


def record_success(
    s: Session, certificate_id: int, *, now: dt.datetime, renew_days: int | None
) -> None:
    """After the new certificate is stored: forget the old ARI window (the new certificate
    has its own), clear the backoff and set the next due time from ``renew_days``."""
    cert = s.get(Certificate, certificate_id)
    if cert is None:
        return
    cert.ari_window_start = None
    cert.ari_window_end = None
    cert.ari_explanation_url = None
    cert.ari_checked_at = None
    cert.ari_retry_after = None
    cert.failure_count = 0
    cert.next_attempt_at = None
    cert.last_error = None
    cert.last_attempt_at = now
    cert.renewal_due_at = (
        renewal.fallback_due_at(cert.not_after, renew_days)
        if cert.not_after is not None and renew_days is not None
        else None
    )
    s.flush()
