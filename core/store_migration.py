"""``acmeflow stores migrate``: move a store's certificates between its backends
(``directory``, ``database``, ``s3``).

Each certificate moves on its own, under its lease (a renewal of it waits for the next run,
and the migration skips a certificate a renewal holds): every version (previous ones oldest
first, then the live one) is written to the other backend, the live set read back there must
have the source's fingerprint (certificate and key), and only then does the certificate's
row name its new locator, in the same transaction as the database side of the write. A crash
at any point leaves the row naming a complete set. A directory source is kept, out of the
scan's way, in the store's hidden ``.migrated/`` folder; database versions are deleted in the
transaction that moves the row; objects once the row has moved. Running it again moves what
is left and finishes what a crash interrupted; certificates already there are counted, not
rewritten.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from acmeflow.config.settings import StoreBackend
from acmeflow.core.db_store import is_database_folder
from acmeflow.core.errors import AcmeflowError, LeaseHeld, MigrationMismatch
from acmeflow.core.object_store import ObjectStore
from acmeflow.core.state import leases
from acmeflow.core.state.models import Certificate
from acmeflow.core.storage import Store
from acmeflow.core.stores import CertificateSet, set_in_folder

#: Where a directory folder goes once its certificate lives in the database (hidden: the scan
#: skips it; delete it once the migration is verified and backed up).
MIGRATED_DIR = ".migrated"


@dataclass
class MigrationReport:
    """What one ``stores migrate`` did in one store."""

    store: str
    to: StoreBackend
    moved: list[int] = field(default_factory=list)
    already: int = 0
    loose: list[int] = field(default_factory=list)  # files placed by hand: move on renewal
    skipped: dict[int, str] = field(default_factory=dict)  # id -> why (held, unreadable)
    versions: int = 0

    @property
    def complete(self) -> bool:
        """Whether every certificate acmeflow stores is in the target backend now."""
        return not self.skipped


Sessions = Callable[[], contextlib.AbstractContextManager[Session]]


def placement(s: Session, store: Store) -> dict[str, int]:
    """How many certificates of ``store`` each backend holds, and the loose files."""
    counts = {"directory": 0, "database": 0, "s3": 0, "loose": 0}
    for (folder,) in s.execute(select(Certificate.folder).where(Certificate.store == store.kind)):
        backend: str = store.backend_of(folder)
        if backend == "directory" and not store.directory.holds(Path(folder)):
            backend = "loose"
        counts[backend] += 1
    return counts


def migrate_store(
    store: Store,
    to: StoreBackend,
    database: Sessions,
    *,
    progress: Callable[[str], None] = lambda _line: None,
) -> MigrationReport:
    """Move every certificate of ``store`` that acmeflow manages into the backend ``to``."""
    report = MigrationReport(store=store.kind, to=to)
    store.backend_named(to)  # a backend this process cannot reach: refused before anything
    with database() as s:
        rows = s.execute(
            select(Certificate.id, Certificate.folder).where(Certificate.store == store.kind)
        ).all()
    for cert_id, folder in rows:
        if store.backend_of(folder) == to:
            report.already += 1
            if to != "directory":
                _set_aside(store, Path(folder).name)  # a crash may have left it
            continue
        if not store.holds(folder):
            report.loose.append(cert_id)
            continue
        try:
            report.versions += _migrate_one(store, to, database, cert_id, Path(folder))
        except (AcmeflowError, OSError, ValueError) as exc:
            report.skipped[cert_id] = _reason(exc)
            progress(f"certificate {cert_id}: skipped: {report.skipped[cert_id]}")
            continue
        report.moved.append(cert_id)
        progress(f"certificate {cert_id}: moved to the {to} backend")
    return report


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LeaseHeld):
        return exc.message
    if isinstance(exc, AcmeflowError):
        return f"{exc.message} {exc.detail}" if exc.detail else exc.message
    return str(exc)


def _migrate_one(
    store: Store, to: StoreBackend, database: Sessions, cert_id: int, folder: Path
) -> int:
    """Move one certificate under its lease; the number of versions written."""
    key, owner = leases.certificate_key(cert_id), leases.this_process()
    with database() as s:
        leases.acquire(s, key, what="Renewal", owner=owner)
    try:
        source = store.holding(folder)
        sets = source.versions(folder)
        target = store.backend_named(to).root / folder.name
        if to == "database":
            _into_database(store, database, cert_id, target, sets)
        else:
            _into_files(store, to, database, cert_id, folder, target, sets)
        # the source is kept out of the way (a folder) or removed (objects); the row moved
        if isinstance(source, ObjectStore):
            source.forget(folder)
        if to != "directory":
            _set_aside(store, folder.name)
        return len(sets)
    finally:
        with database() as s:
            leases.release(s, [key], owner=owner)


def _check(written: CertificateSet, source: CertificateSet) -> None:
    if written.fingerprint != source.fingerprint:
        raise MigrationMismatch(
            detail=f"fingerprint {written.fingerprint} read back, {source.fingerprint} expected"
        )


def _into_database(
    store: Store, database: Sessions, cert_id: int, locator: Path, sets: list[CertificateSet]
) -> None:
    with database() as s:
        store.database.forget(s, locator)  # versions of an earlier move back, if any
        for version in sets:
            store.database.add_version(s, str(locator), version)
        _check(store.database.live_set(s, str(locator)), sets[-1])
        _move_row(s, cert_id, locator)


def _into_files(
    store: Store,
    to: StoreBackend,
    database: Sessions,
    cert_id: int,
    source: Path,
    target: Path,
    sets: list[CertificateSet],
) -> None:
    """Write the versions to the directory or s3 backend; the last one switches live in the
    same step as the row (and the database versions of a certificate leaving the database)."""
    for version in sets[:-1]:
        store.write(target, **_files_of(version))
    backend = store.backend_named(to)
    with database() as s, store.replacing(target, **_files_of(sets[-1])) as written:
        # the directory is read under the write's lock (its read_set would wait for it)
        live = set_in_folder(written) if to == "directory" else backend.read_set(written)
        _check(live, sets[-1])
        if is_database_folder(source):
            store.database.forget(s, source)
        _move_row(s, cert_id, target)
        s.commit()


def _files_of(version: CertificateSet) -> dict[str, Any]:
    return {
        "cert_pem": version.cert,
        "chain_pem": version.chain,
        "fullchain_pem": version.fullchain,
        "key_pem": version.key,
        "metadata": version.metadata,
    }


def _move_row(s: Session, cert_id: int, folder: Path) -> None:
    cert = s.get(Certificate, cert_id)
    assert cert is not None
    cert.folder, cert.path = str(folder), None
    cert.file_size = cert.file_mtime_ns = None


def _set_aside(store: Store, name: str) -> None:
    """Move the directory folder ``name`` into ``.migrated/`` (kept, out of the scan's way)."""
    source = store.directory.root / name
    if not source.is_dir():
        return
    aside = store.directory.root / MIGRATED_DIR
    aside.mkdir(mode=0o700, exist_ok=True)
    target = aside / name
    if target.exists():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        target = aside / f"{name}-{stamp}-{secrets.token_hex(3)}"
    os.rename(source, target)
