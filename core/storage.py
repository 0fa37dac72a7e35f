"""The two stores as every flow, task and command sees them, whichever backend holds a
certificate.

Each store (``certificate``, ``zero-touch``) has two backends: ``directory`` (folders on this
machine, :mod:`core.stores`) and ``database`` (the state database, shared by every worker of
a pool, :mod:`core.db_store`). The settings choose where *new* certificates go
(``ACMEFLOW_STORE_BACKEND``, or per store ``ACMEFLOW_CERTIFICATE_STORE_BACKEND`` and
``ACMEFLOW_ZERO_TOUCH_STORE_BACKEND``); a stored certificate stays in the backend its locator
names until ``acmeflow stores migrate`` moves it, so workers never disagree about where a
certificate is, even while their settings are being changed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from acmeflow.config.settings import Settings, StoreBackend, get_settings
from acmeflow.core.db_store import DatabaseStore, is_database_folder
from acmeflow.core.errors import NotFound
from acmeflow.core.stores import STORE_KINDS, CertificateSet, CertificateStore, recover_once


class Store:
    """One store: its directory and database backends, and where new certificates go."""

    def __init__(
        self, directory: CertificateStore, database: DatabaseStore, backend: StoreBackend
    ) -> None:
        self.directory = directory
        self.database = database
        self.backend: StoreBackend = backend
        self.kind = directory.kind

    def __repr__(self) -> str:
        return f"Store({self.kind!r}, new certificates: {self.backend})"

    @property
    def root(self) -> Path:
        """The directory backend's folder (what the scan reads)."""
        return self.directory.root

    @property
    def _new(self) -> CertificateStore | DatabaseStore:
        return self.database if self.backend == "database" else self.directory

    def holding(self, folder: Path | str) -> CertificateStore | DatabaseStore:
        """The backend a certificate's ``folder`` (its locator) lives in."""
        return self.database if is_database_folder(folder) else self.directory

    def folder_for(self, names: list[str]) -> Path:
        """Where a new certificate for ``names`` goes (in the configured backend)."""
        return self._new.folder_for(names)

    def holds(self, folder: Path | str) -> bool:
        """Whether ``folder`` is a certificate of this store (not a loose file)."""
        return self.holding(folder).holds(Path(folder))

    @contextlib.contextmanager
    def replacing(
        self,
        folder: Path,
        *,
        session: Session | None = None,
        **new_set: Any,
    ) -> Iterator[Path]:
        """Make a new set live in ``folder``, undone when the body raises; the body records
        it (in ``session``, whose transaction the database backend shares). Yields the folder.
        ``new_set``: ``cert_pem``, ``chain_pem``, ``fullchain_pem``, ``key_pem``, ``metadata``."""
        backend = self.holding(folder)
        if isinstance(backend, DatabaseStore):
            with backend.replacing(folder, session=session, **new_set) as stored:
                yield stored
        else:
            with backend.replacing(folder, **new_set) as live:
                yield live.folder

    def write(self, folder: Path, **new_set: Any) -> Path:
        """:meth:`replacing` with nothing else to record."""
        with self.replacing(folder, **new_set) as stored:
            return stored

    def read_set(self, folder: Path | str) -> CertificateSet:
        """The live set of ``folder``."""
        return self.holding(folder).read_set(Path(folder))

    def versions(self, folder: Path | str) -> list[CertificateSet]:
        """Every complete version of ``folder``, oldest first, the live one last."""
        return self.holding(folder).versions(Path(folder))

    def export(self, folder: Path, target: Path, *, overwrite: bool = False) -> list[Path]:
        """Write the live set of ``folder`` to the folder ``target``."""
        return self.holding(folder).export(folder, target, overwrite=overwrite)

    # -- keys of orders in flight: parked in the configured backend, found in either

    def write_staging_key(self, request_id: str, key_pem: bytes | str) -> None:
        """Park a generated key while its order is in flight."""
        self._new.write_staging_key(request_id, key_pem)

    def read_staging_key(self, request_id: str) -> bytes:
        """The parked key of ``request_id``."""
        try:
            return self._new.read_staging_key(request_id)
        except NotFound:
            other = self.directory if self._new is self.database else self.database
            return other.read_staging_key(request_id)

    def discard_staging_key(self, request_id: str) -> None:
        """Delete the parked key of ``request_id`` (absent is fine)."""
        self.directory.discard_staging_key(request_id)
        self.database.discard_staging_key(request_id)

    def staged_requests(self) -> list[str]:
        """The request ids whose keys are parked, in either backend."""
        return sorted({*self.directory.staged_requests(), *self.database.staged_requests()})

    def prune_staging_keys(
        self, older_than: dt.timedelta, keep: Collection[str] = frozenset()
    ) -> list[str]:
        """Delete parked keys older than ``older_than`` but those of ``keep``; their ids."""
        return sorted(
            {
                *self.directory.prune_staging_keys(older_than, keep),
                *self.database.prune_staging_keys(older_than, keep),
            }
        )


def stores_from_settings(settings: Settings | None = None) -> dict[str, Store]:
    """Both stores, as the settings configure them, with interrupted directory writes
    recovered (once per process): every flow, task and command that reads a store opens it
    here."""
    settings = settings or get_settings()
    stores: dict[str, Store] = {}
    for kind in STORE_KINDS:
        directory = CertificateStore(settings.store_path(kind), kind)
        recover_once(directory)
        stores[kind] = Store(directory, DatabaseStore(kind), settings.store_backend_of(kind))
    return stores
