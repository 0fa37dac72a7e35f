"""Certificate rows: add, read, find identical or by fingerprint, update, due ones.

Functions over a :class:`~sqlalchemy.orm.Session`: they validate all their input before
changing anything, flush but never commit (the caller's ``session_scope`` does), and raise
catalog errors (:mod:`acmeflow.core.errors`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from acmeflow.core.errors import (
    CAConfigMissing,
    ConfigError,
    NotFound,
)
from acmeflow.core.state.cas import find_ca
from acmeflow.core.state.models import (
    CERT_SOURCES,
    CERT_STATUSES,
    ENROLLMENTS,
    CAVendor,
    Certificate,
    utcnow,
)
from acmeflow.core.stores import STORE_KINDS, names_digest

_CERT_FIELDS = {c.key for c in Certificate.__table__.columns} - {"id", "names_key", "created_at"}
_CHOICES: dict[str, tuple[str, ...]] = {
    "store": STORE_KINDS,
    "enrollment": ENROLLMENTS,
    "status": CERT_STATUSES,
    "source": CERT_SOURCES,
}


def _check_cert_fields(fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - _CERT_FIELDS
    if unknown:
        raise ConfigError(detail=f"unknown certificate field(s): {', '.join(sorted(unknown))}")
    for field, allowed in _CHOICES.items():
        if field in fields and fields[field] not in allowed:
            raise ConfigError(
                detail=f"{field} must be one of {', '.join(allowed)} (got {fields[field]!r})"
            )
    for field in ("not_before", "not_after", "renewal_due_at", "next_attempt_at"):
        value = fields.get(field)
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise ConfigError(detail=f"{field} must be an aware datetime")


def add_certificate(s: Session, **fields: Any) -> Certificate:
    """Record a certificate (``store``, ``folder`` and ``names`` are required)."""
    _check_cert_fields(fields)
    missing = [f for f in ("store", "folder", "names") if fields.get(f) is None]
    if missing or not str(fields["folder"]):
        raise ConfigError(detail=f"a certificate needs {', '.join(missing) or 'folder'}")
    folder = str(fields["folder"])
    dup = s.scalars(
        select(Certificate.id).where(
            Certificate.store == fields["store"], Certificate.folder == folder
        )
    ).first()
    if dup is not None:
        raise ConfigError(
            detail=f"certificate {dup} is already recorded at {folder} in the "
            f"{fields['store']} store"
        )
    cert = Certificate(**{**fields, "folder": folder})
    s.add(cert)
    s.flush()
    return cert


def get_certificate(s: Session, cert_id: int) -> Certificate:
    """The certificate ``cert_id``; unknown raises NotFound."""
    cert = s.get(Certificate, cert_id)
    if cert is None:
        raise NotFound(detail=f"no certificate with id {cert_id}")
    return cert


def certificates_by_id(s: Session, certificate_ids: Iterable[int]) -> list[Certificate]:
    """The certificates ``certificate_ids`` in the order given (duplicates once); none given
    raises ConfigError, unknown ids raise one NotFound listing them."""
    ids = list(dict.fromkeys(int(i) for i in certificate_ids))
    if not ids:
        raise ConfigError(detail="give at least one certificate id")
    found = certificates_found(s, ids)
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise NotFound(detail=f"no certificate with id {', '.join(missing)}")
    return [found[i] for i in ids]


def certificates_found(s: Session, certificate_ids: Iterable[int]) -> dict[int, Certificate]:
    """The certificates of ``certificate_ids`` that exist, by id (none given: none)."""
    ids = list(dict.fromkeys(int(i) for i in certificate_ids))
    found: dict[int, Certificate] = {}
    for i in range(0, len(ids), 500):
        for cert in s.scalars(select(Certificate).where(Certificate.id.in_(ids[i : i + 500]))):
            found[cert.id] = cert
    return found


def get_certificate_by_folder(s: Session, store: str, folder: str) -> Certificate | None:
    """The certificate recorded at ``folder`` in ``store`` (``None`` when none)."""
    return s.scalars(
        select(Certificate).where(Certificate.store == store, Certificate.folder == str(folder))
    ).one_or_none()


def list_certificates(
    s: Session,
    *,
    store: str | None = None,
    enrollment: str | None = None,
    ca: str | CAVendor | None = None,
    status: str | None = "active",
) -> list[Certificate]:
    """Certificates filtered by store, enrollment, CA vendor (name or row) and status
    (``None`` = any), ordered by id."""
    q = select(Certificate).order_by(Certificate.id)
    if store is not None:
        q = q.where(Certificate.store == store)
    if enrollment is not None:
        q = q.where(Certificate.enrollment == enrollment)
    if status is not None:
        q = q.where(Certificate.status == status)
    if ca is not None:
        row = ca if isinstance(ca, CAVendor) else find_ca(s, ca)
        if row is None:
            raise CAConfigMissing(detail=f"no CA vendor named {ca!r}")
        q = q.where(Certificate.ca_vendor_id == row.id)
    return list(s.scalars(q))


def find_identical(
    s: Session, names: Iterable[str], ca_vendor_id: int | None, store: str
) -> Certificate | None:
    """A still-valid active certificate with the same name set, CA and store, if any
    (the caller raises DuplicateCertificate)."""
    q = select(Certificate).where(
        Certificate.names_key == names_digest(names),
        Certificate.store == store,
        Certificate.status == "active",
        Certificate.not_after > utcnow(),
    )
    q = q.where(
        Certificate.ca_vendor_id.is_(None)
        if ca_vendor_id is None
        else Certificate.ca_vendor_id == ca_vendor_id
    )
    return s.scalars(q.order_by(Certificate.not_after.desc())).first()


def find_by_fingerprint(s: Session, fingerprint_sha256: str) -> list[Certificate]:
    """Active certificates with this fingerprint (one per store when duplicated)."""
    return list(
        s.scalars(
            select(Certificate)
            .where(
                Certificate.fingerprint_sha256 == fingerprint_sha256.lower().replace(":", ""),
                Certificate.status == "active",
            )
            .order_by(Certificate.id)
        )
    )


def update_certificate(s: Session, cert: Certificate, **fields: Any) -> Certificate:
    """Change fields of a certificate (validated first)."""
    _check_cert_fields(fields)
    if "folder" in fields or "store" in fields:
        store = fields.get("store", cert.store)
        folder = str(fields.get("folder", cert.folder))
        other = get_certificate_by_folder(s, store, folder)
        if other is not None and other.id != cert.id:
            raise ConfigError(
                detail=f"certificate {other.id} is already recorded at {folder} in the "
                f"{store} store"
            )
        fields = {**fields, "folder": folder}
    for key, value in fields.items():
        setattr(cert, key, value)
    s.flush()
    return cert


def certificates_due(
    s: Session, *, now: datetime | None = None, ca: CAVendor | None = None, limit: int | None = None
) -> list[Certificate]:
    """Active auto-enrolled certificates whose renewal is due and whose retry time has come."""
    now = now or utcnow()
    q = (
        select(Certificate)
        .where(
            Certificate.status == "active",
            Certificate.enrollment == "auto",
            Certificate.ca_vendor_id.is_not(None),
            Certificate.renewal_due_at <= now,
            (Certificate.next_attempt_at.is_(None)) | (Certificate.next_attempt_at <= now),
        )
        .order_by(Certificate.renewal_due_at, Certificate.id)
    )
    if ca is not None:
        q = q.where(Certificate.ca_vendor_id == ca.id)
    if limit is not None:
        q = q.limit(limit)
    return list(s.scalars(q))


def still_due(
    s: Session, *, now: datetime, ca: CAVendor | None = None, ids: Iterable[int] | None = None
) -> list[Certificate]:
    """Active auto-enrolled certificates inside their renewal window at ``now`` (due and not
    renewed: a renewed one has its next due time ahead), of ``ca`` or ``ids`` when given."""
    q = select(Certificate).where(
        Certificate.status == "active",
        Certificate.enrollment == "auto",
        Certificate.renewal_due_at <= now,
    )
    if ca is not None:
        q = q.where(Certificate.ca_vendor_id == ca.id)
    if ids is not None:
        q = q.where(Certificate.id.in_(list(ids)))
    return list(s.scalars(q.order_by(Certificate.not_after, Certificate.id)))


def manual_expiring(s: Session, *, until: datetime) -> list[Certificate]:
    """Active certificates not enrolled for renewal that expire before ``until``."""
    q = select(Certificate).where(
        Certificate.status == "active",
        Certificate.enrollment != "auto",
        Certificate.not_after <= until,
    )
    return list(s.scalars(q.order_by(Certificate.not_after, Certificate.id)))
