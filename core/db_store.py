"""The ``database`` store backend: certificate sets and staged keys in the state database.

Every worker of a pool that shares the state database (PostgreSQL) sees the same
certificates, so any of them can renew, deploy or export one. A certificate's locator (the
``folder`` of its certificate row) is ``database:<store>/<slug>-<hash8>``; its versions are
rows of ``stored_versions`` (one ``live``, the newest ``keep_previous`` earlier ones kept) with
the private key sealed by the settings' Fernet key, like every other secret acmeflow keeps.

A write and the caller's certificate row go into one transaction (pass the caller's session to
:meth:`DatabaseStore.replacing`): the new version turns live, the old one becomes a previous
version and the row names the new serial in the same commit, or none of it happens.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from acmeflow.core.errors import InvalidKey, NotFound
from acmeflow.core.locator_store import LocatorStore
from acmeflow.core.state.db import session_scope
from acmeflow.core.state.models import StagedKey, StoredVersion, utcnow
from acmeflow.core.stores import (
    DATABASE_PREFIX,
    CertificateSet,
    as_bytes,
    check_request_id,
    new_version_name,
    serial_of,
)


def is_database_folder(folder: Path | str) -> bool:
    """Whether a certificate's ``folder`` is a locator of the database backend."""
    return str(folder).startswith(DATABASE_PREFIX)


class DatabaseStore(LocatorStore):
    """One store (``certificate`` or ``zero-touch``) held in the state database."""

    backend = "database"
    PREFIX = DATABASE_PREFIX

    def __repr__(self) -> str:
        return f"DatabaseStore({self.kind!r})"

    # -- write / read

    @contextlib.contextmanager
    def replacing(
        self,
        folder: Path,
        *,
        cert_pem: bytes | str,
        chain_pem: bytes | str,
        fullchain_pem: bytes | str,
        key_pem: bytes | str | None,
        metadata: dict[str, Any],
        session: Session | None = None,
    ) -> Iterator[Path]:
        """Make a new version of ``folder`` live in ``session``'s transaction (one of its own
        when none is given, committed after the body). The body records the new set (its
        certificate row) and commits; when it raises, the transaction is rolled back and the
        version that was live stays live. ``key_pem=None`` keeps the live key."""
        locator = self._own(folder)
        if session is None:
            with (
                session_scope() as own,
                self.replacing(
                    folder,
                    cert_pem=cert_pem,
                    chain_pem=chain_pem,
                    fullchain_pem=fullchain_pem,
                    key_pem=key_pem,
                    metadata=metadata,
                    session=own,
                ) as stored,
            ):
                yield stored
            return
        try:
            live = self._live_row(session, locator, lock=True)
            new = CertificateSet.checked(
                cert_pem=cert_pem,
                chain_pem=chain_pem,
                fullchain_pem=fullchain_pem,
                key_pem=self._reused_key(live) if key_pem is None else key_pem,
                metadata=metadata,
            )
            self._put(session, locator, new)
            yield Path(locator)
        except BaseException:
            session.rollback()
            raise

    def _reused_key(self, live: StoredVersion | None) -> bytes:
        if live is None:
            raise InvalidKey(detail="no private key to reuse in the database store; give the key")
        return self.box.decrypt(live.key_sealed).encode()

    def _put(self, s: Session, locator: str, new: CertificateSet) -> None:
        """Add ``new`` as the live version; the replaced one and the newest earlier ones stay."""
        s.execute(
            update(StoredVersion)
            .where(*self._of(locator), StoredVersion.live.is_(True))
            .values(live=False)
            .execution_options(synchronize_session=False)
        )
        s.add(
            StoredVersion(
                store=self.kind,
                folder=locator,
                version=new_version_name(),
                live=True,
                serial=serial_of(new.cert),
                cert_sha256=hashlib.sha256(new.cert).hexdigest(),
                cert_pem=new.cert.decode(),
                chain_pem=new.chain.decode(),
                fullchain_pem=new.fullchain.decode(),
                key_sealed=self.box.encrypt(new.key.decode()),
                set_metadata=new.metadata,
            )
        )
        s.flush()
        if self.keep_previous is not None:
            previous = s.scalars(
                select(StoredVersion.id)
                .where(*self._of(locator), StoredVersion.live.is_(False))
                .order_by(StoredVersion.id.desc())
                .offset(self.keep_previous)
            ).all()
            if previous:
                s.execute(delete(StoredVersion).where(StoredVersion.id.in_(previous)))

    def add_version(self, s: Session, folder: Path | str, version: CertificateSet) -> None:
        """Add ``version`` as the live one in ``s``'s transaction (a migration replaying a
        certificate's versions, oldest first)."""
        version.check()
        self._put(s, self._own(folder), version)

    def live_set(self, s: Session, folder: Path | str) -> CertificateSet:
        """The live set of ``folder`` as ``s`` sees it (its own writes included)."""
        row = self._live_row(s, self._own(folder))
        if row is None:
            raise NotFound(detail=f"no certificate in the database store at {str(folder)!r}")
        return self._set_of(row)

    def _of(self, locator: str) -> tuple[Any, ...]:
        return StoredVersion.store == self.kind, StoredVersion.folder == locator

    def _live_row(self, s: Session, locator: str, *, lock: bool = False) -> StoredVersion | None:
        query = select(StoredVersion).where(*self._of(locator), StoredVersion.live.is_(True))
        return s.scalars(query.with_for_update() if lock else query).first()

    def _set_of(self, row: StoredVersion) -> CertificateSet:
        return CertificateSet(
            cert=row.cert_pem.encode(),
            chain=row.chain_pem.encode(),
            fullchain=row.fullchain_pem.encode(),
            key=self.box.decrypt(row.key_sealed).encode(),
            metadata=dict(row.set_metadata or {}),
        )

    def read_set(self, folder: Path | str) -> CertificateSet:
        """The live set of ``folder``."""
        with session_scope() as s:
            return self.live_set(s, folder)

    def versions(self, folder: Path | str) -> list[CertificateSet]:
        """Every version of ``folder``, oldest first, the live one last."""
        locator = self._own(folder)
        with session_scope() as s:
            rows = s.scalars(
                select(StoredVersion)
                .where(*self._of(locator))
                .order_by(StoredVersion.live, StoredVersion.id)
            ).all()
            return [self._set_of(row) for row in rows]

    def forget(self, s: Session, folder: Path | str) -> None:
        """Delete every version of ``folder`` in ``s``'s transaction (it moved elsewhere)."""
        s.execute(delete(StoredVersion).where(*self._of(self._own(folder))))

    # -- keys of orders in flight

    def write_staging_key(self, request_id: str, key_pem: bytes | str) -> None:
        """Park a generated key, sealed, while its order is in flight (committed at once)."""
        check_request_id(request_id)
        sealed = self.box.encrypt(as_bytes(key_pem).decode())
        with session_scope() as s:
            row = s.get(StagedKey, (self.kind, request_id))
            if row is None:
                s.add(StagedKey(store=self.kind, request_id=request_id, key_sealed=sealed))
            else:
                row.key_sealed, row.created_at = sealed, utcnow()

    def read_staging_key(self, request_id: str) -> bytes:
        """The parked key of ``request_id``."""
        check_request_id(request_id)
        with session_scope() as s:
            row = s.get(StagedKey, (self.kind, request_id))
            if row is None:
                raise NotFound(detail=f"no staged key for request {request_id!r}")
            return self.box.decrypt(row.key_sealed).encode()

    def discard_staging_key(self, request_id: str) -> None:
        """Delete the parked key of ``request_id`` (absent is fine: then nothing is written,
        so a directory-backed pipeline never takes the database's write lock for it)."""
        check_request_id(request_id)
        with session_scope() as s:
            if s.get(StagedKey, (self.kind, request_id)) is not None:
                s.execute(
                    delete(StagedKey).where(
                        StagedKey.store == self.kind, StagedKey.request_id == request_id
                    )
                )

    def staged_requests(self) -> list[str]:
        """The request ids whose keys are parked here."""
        with session_scope() as s:
            return sorted(
                s.scalars(select(StagedKey.request_id).where(StagedKey.store == self.kind))
            )

    def prune_staging_keys(
        self, older_than: dt.timedelta, keep: Collection[str] = frozenset()
    ) -> list[str]:
        """Delete parked keys older than ``older_than`` but those of ``keep``; their ids."""
        cutoff = utcnow() - older_than
        with session_scope() as s:
            old = [
                request_id
                for request_id in s.scalars(
                    select(StagedKey.request_id).where(
                        StagedKey.store == self.kind, StagedKey.created_at < cutoff
                    )
                )
                if request_id not in keep
            ]
            if old:
                s.execute(
                    delete(StagedKey).where(
                        StagedKey.store == self.kind, StagedKey.request_id.in_(old)
                    )
                )
        return sorted(old)
