"""The inventory in the database: scan results (F2) and enrollment (F3, F6 migrate).

:func:`record_scan` turns :class:`core.scan.StoreScan` results into certificate rows in one
go (bulk inserts and updates, no per-file round trip): a file is matched to its row by store
and folder key, then (a file moved or renamed) by store and fingerprint; a row whose file
disappeared is marked ``gone`` (with ``gone_at``), never deleted, and comes back when the
file does. Certificates held by the database or s3 store backends have no file here: the
scan leaves them alone. Every certificate is classified by the configured CA vendor whose
issuer names match its issuer (``issued_by_ca_id``), which is separate from the CA it is
renewed through (``ca_vendor_id``).

Enrollment: :func:`enroll` puts certificates on automatic renewal under a CA (a certificate
issued by another CA needs ``confirm_vendor_change``; one already under another CA must be
unenrolled first), :func:`unenroll` removes them from their CA, :func:`migrate` moves them
between automatic and manual renewal. Each validates every certificate before it changes
any (all or nothing). Functions flush but never commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from acmeflow.config.vendors import UnknownVendor, get_preset, issuer_matches
from acmeflow.core.certinfo import CertificateInfo
from acmeflow.core.errors import ConfigError, NotFound
from acmeflow.core.names import canonical_name
from acmeflow.core.renewal import fallback_due_at
from acmeflow.core.scan import (
    OTHER_CA,
    CAIssuers,
    Duplicate,
    KnownFile,
    ScanProblem,
    StoreScan,
    classify,
    counts_line,
    find_duplicates,
)
from acmeflow.core.secrets import ENCRYPTED_PREFIX, SecretBox, default_box, unseal
from acmeflow.core.state import cas, certificates
from acmeflow.core.state.models import AppSetting, CAVendor, Certificate, utcnow
from acmeflow.core.stores import OFF_DISK_PREFIXES, names_digest

__all__ = [
    "P12_PASSWORDS_SETTING",
    "InventoryReport",
    "ScanChanges",
    "StoreSummary",
    "ca_issuers",
    "ca_labels",
    "ca_names",
    "certificates_issued_by",
    "enroll",
    "get_setting",
    "inventory_report",
    "issued_by",
    "known_files",
    "match_scan",
    "migrate",
    "reclassify",
    "record_scan",
    "save_scan_passwords",
    "scan_passwords",
    "set_setting",
    "unenroll",
    "unseal_passwords",
]

P12_PASSWORDS_SETTING = "scan.p12_passwords"
_CHUNK = 1000  # rows per bulk statement, ids per IN list
T = TypeVar("T")


# --- settings ----------------------------------------------------------------------------------


def get_setting(s: Session, key: str) -> str | None:
    """The value of setting ``key`` (``None`` when unset)."""
    row = s.get(AppSetting, key)
    return row.value if row is not None else None


def set_setting(s: Session, key: str, value: str | None) -> None:
    """Set (or with ``None`` remove) setting ``key``."""
    row = s.get(AppSetting, key)
    if value is None:
        if row is not None:
            s.delete(row)
    elif row is None:
        s.add(AppSetting(key=key, value=value))
    else:
        row.value = value
    s.flush()


def save_scan_passwords(
    s: Session, passwords: Sequence[str], *, box: SecretBox | None = None
) -> list[str]:
    """Remember the PKCS#12 passwords of the scan (references kept, literals encrypted,
    values already sealed as ``enc:`` kept as they are).

    An empty list forgets them. Returns the stored (sealed) values.
    """
    box = box or default_box()
    sealed = [p if p.startswith(ENCRYPTED_PREFIX) else box.seal(p) for p in passwords if p]
    set_setting(s, P12_PASSWORDS_SETTING, json.dumps(sealed) if sealed else None)
    return sealed


def scan_passwords(s: Session) -> list[str]:
    """The remembered PKCS#12 passwords of the scan, sealed (``unseal`` them to use)."""
    raw = get_setting(s, P12_PASSWORDS_SETTING)
    if not raw:
        return []
    values = json.loads(raw)
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


def unseal_passwords(sealed: Sequence[str], **kwargs: Any) -> list[bytes]:
    """Sealed or referenced passwords as bytes (keep them in memory only)."""
    return [unseal(value, **kwargs).encode("utf-8") for value in sealed]


# --- CA vendors as the scan sees them --------------------------------------------------------


def ca_labels(cas: Sequence[CAVendor]) -> dict[int, str]:
    """How each CA is named in counts: the vendor's label ("Let's Encrypt") when it is the
    only configured CA of that vendor, else the CA's own name (always for custom CAs)."""
    per_vendor: dict[str, int] = {}
    for ca in cas:
        per_vendor[ca.vendor] = per_vendor.get(ca.vendor, 0) + 1
    labels: dict[int, str] = {}
    for ca in cas:
        label = ca.name
        if ca.vendor != "custom" and per_vendor[ca.vendor] == 1:
            try:
                label = get_preset(ca.vendor).label
            except UnknownVendor:
                label = ca.name
        labels[ca.id] = label
    return labels


def ca_issuers(s: Session) -> list[CAIssuers]:
    """Every configured CA vendor with the issuer names that identify its certificates."""
    cas = list(s.scalars(select(CAVendor).order_by(CAVendor.id)))
    labels = ca_labels(cas)
    return [
        CAIssuers(
            ca_id=ca.id,
            name=ca.name,
            label=labels[ca.id],
            issuer_names=tuple(ca.issuer_names or ()),
            active=ca.active,
        )
        for ca in cas
    ]


def reclassify(s: Session, *, cas: Sequence[CAIssuers] | None = None) -> int:
    """Classify every certificate by issuing CA again (after CA vendors changed).

    Returns how many certificates changed class.
    """
    cas = ca_issuers(s) if cas is None else cas
    c = Certificate.__table__.c
    changes = []
    memo: dict[tuple[str | None, str | None, int | None], int | None] = {}
    for cert_id, cn, org, under, current in s.execute(
        select(c.id, c.issuer_common_name, c.issuer_organization, c.ca_vendor_id, c.issued_by_ca_id)
    ):
        key = (cn, org, under)
        if key not in memo:
            memo[key] = classify(cn, org, cas, prefer=under)
        if memo[key] != current:
            changes.append({"id": cert_id, "issued_by_ca_id": memo[key]})
    for chunk in _chunks(changes):
        s.execute(update(Certificate), chunk)
    return len(changes)


# --- recording a scan --------------------------------------------------------------------------


def known_files(s: Session, store: str) -> dict[str, KnownFile]:
    """What the last scan recorded per file path of ``store`` (to skip unchanged files)."""
    c = Certificate.__table__.c
    rows = s.execute(
        select(c.path, c.file_size, c.file_mtime_ns, c.fingerprint_sha256).where(
            c.store == store, c.path.is_not(None)
        )
    )
    return {
        path: KnownFile(size=size, mtime_ns=mtime, fingerprint_sha256=fp)
        for path, size, mtime, fp in rows
    }


@dataclass
class StoreSummary:
    """What one scan did in one store."""

    store: str
    root: str
    exists: bool
    files: int = 0
    read: int = 0
    unchanged: int = 0
    new: int = 0
    updated: int = 0
    gone: int = 0
    returned: int = 0
    problems: int = 0
    aliases: int = 0
    ca_files: int = 0
    seconds: float = 0.0


@dataclass
class InventoryReport:
    """The inventory after a scan: counts per issuing CA, duplicates, soonest expiries."""

    scanned_at: datetime
    counts: dict[str, int]
    total: int
    stores: dict[str, StoreSummary] = field(default_factory=dict)
    duplicates: list[Duplicate] = field(default_factory=list)
    expiring: list[dict[str, Any]] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    aliases: list[dict[str, str]] = field(default_factory=list)
    reclassified: int = 0

    def counts_line(self) -> str:
        """``Let's Encrypt: 2, Other CA: 2``."""
        return counts_line(self.counts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (timestamps as ISO strings)."""
        return {
            "scanned_at": self.scanned_at.isoformat(),
            "summary": self.counts_line(),
            "counts": dict(self.counts),
            "total": self.total,
            "stores": {k: vars(v).copy() for k, v in self.stores.items()},
            "duplicates": [
                {
                    "fingerprint_sha256": d.fingerprint_sha256,
                    "names": list(d.names),
                    "locations": [vars(loc).copy() for loc in d.locations],
                    "warning": d.warning(),
                }
                for d in self.duplicates
            ],
            "expiring": [
                {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
                for row in self.expiring
            ],
            "problems": [vars(p).copy() for p in self.problems],
            "aliases": list(self.aliases),
            "reclassified": self.reclassified,
        }


def certificate_columns(info: CertificateInfo) -> dict[str, Any]:
    """Columns of a certificate row from a parsed certificate (names as the validator does)."""
    ordered = [n for n in dict.fromkeys(canonical_name(n) for n in info.names) if n]
    return {
        "common_name": info.common_name,
        "names": ordered,
        "subject": info.subject[:1000],
        "issuer": info.issuer[:1000],
        "issuer_common_name": info.issuer_common_name,
        "issuer_organization": info.issuer_organization,
        "serial": info.serial,
        "not_before": info.not_before,
        "not_after": info.not_after,
        "key_type": info.key_type,
        "fingerprint_sha256": info.fingerprint_sha256,
        "ari_cert_id": info.ari_cert_id,
    }


_ROW_COLUMNS = (
    "id",
    "store",
    "folder",
    "path",
    "fingerprint_sha256",
    "status",
    "ca_vendor_id",
    "not_after",
)


@dataclass
class ScanChanges:
    """What a scan changes in the certificate rows, decided by :func:`match_scan`."""

    summaries: dict[str, StoreSummary] = field(default_factory=dict)
    problems: list[ScanProblem] = field(default_factory=list)
    aliases: list[dict[str, str]] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)  # new rows
    updates: list[dict[str, Any]] = field(default_factory=list)  # changed rows, by id
    touched: list[int] = field(default_factory=list)  # unchanged files: seen again
    returned: list[int] = field(default_factory=list)  # unchanged files whose row was gone
    gone: list[int] = field(default_factory=list)  # rows whose file disappeared


def _summary(scan: StoreScan) -> StoreSummary:
    return StoreSummary(
        store=scan.store,
        root=scan.root,
        exists=scan.exists,
        files=scan.files,
        read=len(scan.certificates),
        unchanged=len(scan.unchanged),
        problems=len(scan.problems),
        aliases=len(scan.aliases),
        ca_files=len(scan.ca_files),
        seconds=round(scan.seconds, 3),
    )


def _match_store(
    scan: StoreScan,
    rows: Sequence[Mapping[str, Any]],
    changes: ScanChanges,
    *,
    now: datetime,
    cas: Sequence[CAIssuers],
    renew_days: Mapping[int, int],
) -> None:
    """Match one store's scan to its known rows (by folder or path, then by fingerprint for a
    moved file) and add the resulting changes."""
    summary = changes.summaries[scan.store] = _summary(scan)
    changes.problems.extend(scan.problems)
    changes.aliases.extend(
        {"store": a.store, "path": a.path, "same_as": a.same_as} for a in scan.aliases
    )
    by_folder = {r["folder"]: r for r in rows}
    by_path = {r["path"]: r for r in rows if r["path"]}
    by_fp: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r["fingerprint_sha256"]:
            by_fp.setdefault(r["fingerprint_sha256"], []).append(r)
    seen_paths = scan.seen_paths
    folders_seen = {x.file.folder for x in scan.certificates} | {f.folder for f in scan.unchanged}
    claimed: set[int] = set()

    for found in scan.unchanged:
        row = by_path.get(found.path) or by_folder.get(found.folder)
        if row is None:
            continue
        claimed.add(row["id"])
        if row["status"] != "active":
            changes.returned.append(row["id"])
            summary.returned += 1
        else:
            changes.touched.append(row["id"])
    for problem in scan.problems:  # unreadable now, but still there: not gone
        row = by_path.get(problem.path) or by_folder.get(problem.path)
        if row is not None:
            claimed.add(row["id"])

    for scanned in scan.certificates:
        found, info = scanned.file, scanned.info
        row = by_folder.get(found.folder)
        if row is not None and row["id"] in claimed:
            row = None
        if row is None:  # moved or renamed: same certificate, its old file is gone
            row = next(
                (
                    r
                    for r in by_fp.get(info.fingerprint_sha256, ())
                    if r["id"] not in claimed
                    and (r["path"] or r["folder"]) not in seen_paths
                    and r["folder"] not in folders_seen
                ),
                None,
            )
        fields = certificate_columns(info)
        fields.update(
            names_key=names_digest(fields["names"]),  # bulk writes skip the ORM validator
            path=found.path,
            file_size=found.size,
            file_mtime_ns=found.mtime_ns,
            last_seen_at=now,
            status="active",
            gone_at=None,
        )
        if row is None:
            fields.update(
                store=scan.store,
                folder=found.folder,
                source="scan",
                enrollment="manual",
                csr_fields={},
                created_at=now,
                updated_at=now,
                issued_by_ca_id=classify(info.issuer_common_name, info.issuer_organization, cas),
            )
            changes.inserts.append(fields)
            summary.new += 1
            continue
        claimed.add(row["id"])
        if row["status"] != "active":
            summary.returned += 1
        fields.update(id=row["id"], folder=found.folder, updated_at=now)
        if row["fingerprint_sha256"] != info.fingerprint_sha256:
            # replaced by hand (renewed offline): a new certificate in the same place
            fields.update(
                failure_count=0,
                next_attempt_at=None,
                last_error=None,
                ari_window_start=None,
                ari_window_end=None,
                ari_checked_at=None,
            )
            ca_id = row["ca_vendor_id"]
            if ca_id is not None and ca_id in renew_days:
                fields["renewal_due_at"] = fallback_due_at(info.not_after, renew_days[ca_id])
            summary.updated += 1
        changes.updates.append(fields)

    if scan.exists:  # a missing store folder (unmounted volume) is not a deletion
        for r in rows:
            if r["id"] not in claimed and r["status"] == "active":
                changes.gone.append(r["id"])
                summary.gone += 1


def match_scan(
    scans: Sequence[StoreScan],
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    now: datetime,
    cas: Sequence[CAIssuers],
    renew_days: Mapping[int, int],
) -> ScanChanges:
    """Decide, without touching the database, what the scans change: ``rows`` are the known
    rows (columns ``_ROW_COLUMNS``) per store, ``renew_days`` the CA vendors' windows."""
    changes = ScanChanges()
    for scan in scans:
        _match_store(
            scan, rows.get(scan.store, ()), changes, now=now, cas=cas, renew_days=renew_days
        )
    return changes


def _write_changes(s: Session, changes: ScanChanges, now: datetime) -> None:
    """Apply :class:`ScanChanges` in bulk (Core executemany and chunked UPDATEs)."""
    s.flush()
    connection = s.connection()
    for chunk in _chunks(changes.inserts):  # Core executemany: no ORM work per row
        connection.execute(insert(Certificate), chunk)
    _bulk_update(s, changes.updates)
    _set_where_id(s, changes.touched, last_seen_at=now)
    _set_where_id(
        s, changes.returned, last_seen_at=now, status="active", gone_at=None, updated_at=now
    )
    _set_where_id(s, changes.gone, status="gone", gone_at=now, updated_at=now)


def record_scan(
    s: Session,
    scans: Sequence[StoreScan],
    *,
    now: datetime | None = None,
    expiring_limit: int = 10,
    with_report: bool = True,
) -> InventoryReport:
    """Record what the scan read (see the module doc) and report the inventory.

    With ``with_report=False`` only the store summaries, problems and aliases are filled in
    (no counts, duplicates or expiries: the caller reports once after every store).

    A store whose folder does not exist is reported (``exists`` false in its summary) but its
    rows are not marked gone (an unmounted volume is not a deletion).
    """
    now = now or utcnow()
    cas = ca_issuers(s)
    renew_days = dict(s.execute(select(CAVendor.id, CAVendor.renew_days)).tuples().all())
    c = Certificate.__table__.c
    rows = {
        scan.store: [
            dict(zip(_ROW_COLUMNS, r, strict=True))
            for r in s.execute(
                select(*(c[k] for k in _ROW_COLUMNS)).where(
                    c.store == scan.store,
                    *(~c.folder.startswith(prefix) for prefix in OFF_DISK_PREFIXES),
                )
            )
        ]
        for scan in scans
    }
    changes = match_scan(scans, rows, now=now, cas=cas, renew_days=renew_days)
    _write_changes(s, changes, now)
    reclassified = reclassify(s, cas=cas)
    s.flush()
    if with_report:
        report = inventory_report(s, expiring_limit=expiring_limit, now=now, cas=cas)
    else:
        report = InventoryReport(scanned_at=now, counts={}, total=0)
    report.stores = changes.summaries
    report.problems = changes.problems
    report.aliases = changes.aliases
    report.reclassified = reclassified
    return report


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in slices of :data:`_CHUNK` (bounded statements and parameter lists)."""
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _set_where_id(s: Session, ids: Sequence[int], **values: Any) -> None:
    """One UPDATE per chunk of ids, setting the same values on each row."""
    for chunk in _chunks(ids):
        s.execute(
            update(Certificate)
            .where(Certificate.id.in_(chunk))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def _bulk_update(s: Session, updates: list[dict[str, Any]]) -> None:
    """ORM bulk UPDATE by primary key, grouped by the set of columns changed."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change in updates:
        groups.setdefault(tuple(sorted(change)), []).append(change)
    for batch in groups.values():
        for chunk in _chunks(batch):
            s.execute(update(Certificate), chunk)


def inventory_report(
    s: Session,
    *,
    expiring_limit: int = 10,
    now: datetime | None = None,
    cas: Sequence[CAIssuers] | None = None,
) -> InventoryReport:
    """Counts per issuing CA, duplicates across stores and the certificates expiring soonest
    (active certificates of both stores), from what the database holds."""
    now = now or utcnow()
    cas = ca_issuers(s) if cas is None else cas
    labels = {ca.ca_id: ca.label for ca in cas}
    names = {ca.ca_id: ca.name for ca in cas}
    c = Certificate.__table__.c
    per_ca: dict[int | None, int] = {}
    dup_items = []
    total = 0
    for cert_id, store, folder, path, fp, names_, issued_by in s.execute(
        select(c.id, c.store, c.folder, c.path, c.fingerprint_sha256, c.names, c.issued_by_ca_id)
        .where(c.status == "active")
        .order_by(c.id)
    ):
        total += 1
        per_ca[issued_by] = per_ca.get(issued_by, 0) + 1
        dup_items.append((fp, store, cert_id, path or folder, names_ or []))
    counts: dict[str, int] = {}
    for ca in sorted(cas, key=lambda ca: ca.name):
        if ca.active or per_ca.get(ca.ca_id):
            counts[ca.label] = counts.get(ca.label, 0) + per_ca.get(ca.ca_id, 0)
    counts[OTHER_CA] = counts.get(OTHER_CA, 0) + per_ca.get(None, 0)
    expiring = []
    for row in s.execute(
        select(
            c.id,
            c.names,
            c.store,
            c.not_after,
            c.issued_by_ca_id,
            c.ca_vendor_id,
            c.enrollment,
            c.path,
            c.folder,
        )
        .where(c.status == "active", c.not_after.is_not(None))
        .order_by(c.not_after, c.id)
        .limit(expiring_limit)
    ):
        not_after = row.not_after
        if not_after.tzinfo is None:
            not_after = not_after.replace(tzinfo=UTC)
        expiring.append(
            {
                "id": row.id,
                "names": list(row.names or []),
                "store": row.store,
                "not_after": not_after,
                "days_left": (not_after - now).days,
                "issued_by": labels.get(row.issued_by_ca_id, OTHER_CA)
                if row.issued_by_ca_id is not None
                else OTHER_CA,
                "ca": names.get(row.ca_vendor_id) if row.ca_vendor_id is not None else None,
                "renewal": row.enrollment,
                "path": row.path or row.folder,
            }
        )
    return InventoryReport(
        scanned_at=now,
        counts=counts,
        total=total,
        duplicates=find_duplicates(dup_items),
        expiring=expiring,
    )


# --- enrollment --------------------------------------------------------------------------------


def _load(s: Session, ids: Iterable[int]) -> list[Certificate]:
    certs = certificates.certificates_by_id(s, ids)
    gone = [c.id for c in certs if c.status != "active"]
    if gone:
        raise NotFound(
            detail=f"certificate {', '.join(map(str, gone))} is gone from its store "
            "(its file was removed); scan again after restoring it"
        )
    return certs


def _ids(certs: Iterable[Certificate]) -> str:
    return ", ".join(str(c.id) for c in certs)


def _issuer_text(cert: Certificate) -> str:
    return cert.issuer_common_name or cert.issuer_organization or cert.issuer or "unknown issuer"


def issued_by(cert: Certificate, ca: CAVendor) -> bool:
    """Whether ``ca`` issued ``cert`` (by classification or by its issuer names now)."""
    return cert.issued_by_ca_id == ca.id or issuer_matches(
        ca.issuer_names or (), cert.issuer_common_name, cert.issuer_organization
    )


def _put_under(cert: Certificate, ca: CAVendor) -> None:
    if cert.ca_vendor_id != ca.id or cert.renewal_due_at is None:
        cert.renewal_due_at = (
            fallback_due_at(cert.not_after, ca.renew_days) if cert.not_after else None
        )
    if cert.ca_vendor_id != ca.id:
        cert.failure_count = 0
        cert.next_attempt_at = None
        cert.last_error = None
    cert.ca_vendor_id = ca.id
    cert.enrollment = "auto"


def enroll(
    s: Session,
    cert_ids: Iterable[int],
    ca_name: str,
    *,
    confirm_vendor_change: bool = False,
) -> list[Certificate]:
    """Put certificates on automatic renewal under CA vendor ``ca_name`` (all or nothing).

    A certificate already under another CA raises ConfigError (unenroll it first); one issued
    by another CA (or by a CA acmeflow does not know) needs ``confirm_vendor_change``: it is
    then renewed through ``ca_name`` when its window opens.
    """
    ca = cas.get_ca(s, ca_name)
    certs = _load(s, cert_ids)
    taken = [c for c in certs if c.ca_vendor_id is not None and c.ca_vendor_id != ca.id]
    if taken:
        by_id = ca_names(s)
        lines = [
            f"certificate {c.id} is under CA vendor {by_id.get(c.ca_vendor_id or 0, '?')!r}"
            for c in taken
        ]
        raise ConfigError(
            detail="; ".join(lines)
            + f". Remove it from that CA first: acmeflow certs unenroll {_ids(taken)}"
        )
    changing = [c for c in certs if c.ca_vendor_id != ca.id and not issued_by(c, ca)]
    if changing and not confirm_vendor_change:
        lines = [f"certificate {c.id} was issued by {_issuer_text(c)!r}" for c in changing]
        raise ConfigError(
            detail="; ".join(lines)
            + f", not by CA vendor {ca.name!r}. Renewing through {ca.name!r} changes the "
            "vendor: confirm with --confirm-vendor-change"
        )
    for cert in certs:
        _put_under(cert, ca)
    s.flush()
    return certs


def unenroll(s: Session, cert_ids: Iterable[int]) -> list[Certificate]:
    """Remove certificates from their CA vendor: manual renewal, no CA (all or nothing)."""
    certs = _load(s, cert_ids)
    for cert in certs:
        cert.ca_vendor_id = None
        cert.enrollment = "manual"
        cert.renewal_due_at = None
        cert.next_attempt_at = None
    s.flush()
    return certs


def migrate(
    s: Session, cert_ids: Iterable[int], to: Literal["auto", "manual"]
) -> list[Certificate]:
    """Move certificates between automatic and manual renewal, many at once (all or nothing).

    To ``auto``, a certificate must be under a CA vendor, or have been issued by a
    configured one (it then goes under that CA); others must be enrolled with a CA first.
    To ``manual``, certificates keep their CA (so "renew now" still works).
    """
    if to not in ("auto", "manual"):
        raise ConfigError(detail=f"migrate to 'auto' or 'manual' (got {to!r})")
    certs = _load(s, cert_ids)
    if to == "manual":
        for cert in certs:
            cert.enrollment = "manual"
        s.flush()
        return certs
    cas = {ca.id: ca for ca in s.scalars(select(CAVendor))}
    homeless = [
        c
        for c in certs
        if (c.ca_vendor_id or c.issued_by_ca_id) is None
        or not cas[c.ca_vendor_id or c.issued_by_ca_id].active  # type: ignore[index]
    ]
    if homeless:
        raise ConfigError(
            detail=f"certificate {_ids(homeless)} is not under an active CA vendor: enroll it "
            f"with one first (acmeflow certs enroll {_ids(homeless)} --ca NAME)"
        )
    for cert in certs:
        _put_under(cert, cas[cert.ca_vendor_id or cert.issued_by_ca_id])  # type: ignore[index]
    s.flush()
    return certs


def certificates_issued_by(s: Session, ca_name: str, *, unassigned_only: bool = True) -> list[int]:
    """Ids of active certificates classified as issued by ``ca_name`` (by default only those
    under no CA yet): the selection list of that CA."""
    ca = cas.get_ca(s, ca_name)
    q = select(Certificate.id).where(
        Certificate.status == "active", Certificate.issued_by_ca_id == ca.id
    )
    if unassigned_only:
        q = q.where(Certificate.ca_vendor_id.is_(None))
    return list(s.scalars(q.order_by(Certificate.id)))


def ca_names(s: Session) -> Mapping[int, str]:
    """CA vendor id -> name."""
    return dict(s.execute(select(CAVendor.id, CAVendor.name)).tuples().all())
