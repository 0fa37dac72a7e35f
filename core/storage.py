"""The two stores as every flow, task and command sees them, whichever backend holds a
certificate.

Each store (``certificate``, ``zero-touch``) has up to three backends: ``directory`` (folders
on this machine, :mod:`core.stores`), ``database`` (the state database, shared by every
worker of a pool, :mod:`core.db_store`) and, when a bucket is configured, ``s3``
(S3-compatible object storage, :mod:`core.object_store`). The settings choose where *new*
certificates go
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
from acmeflow.core.errors import ConfigError, NotFound
from acmeflow.core.object_store import ObjectStore, is_object_folder
from acmeflow.core.stores import (
    STORE_KINDS,
    CertificateSet,
    CertificateStore,
    export_set,
    recover_once,
)

Backend = CertificateStore | DatabaseStore | ObjectStore


class Store:
    """One store: its backends, and the one new certificates go to."""

    def __init__(
        self,
        directory: CertificateStore,
        database: DatabaseStore,
        backend: StoreBackend,
        objects: ObjectStore | None = None,
    ) -> None:
        self.directory = directory
        self.database = database
        self.objects = objects
        self.backend: StoreBackend = backend
        self.kind = directory.kind
        self.backend_named(backend)  # s3 chosen without a bucket: refused now, not at a write

    def __repr__(self) -> str:
        return f"Store({self.kind!r}, new certificates: {self.backend})"

    @property
    def root(self) -> Path:
        """The directory backend's folder (what the scan reads)."""
        return self.directory.root

    def backend_named(self, name: StoreBackend) -> Backend:
        """The backend ``name`` of this store."""
        if name == "s3":
            if self.objects is None:
                raise ConfigError(detail="the s3 store backend needs ACMEFLOW_S3_BUCKET")
            return self.objects
        return self.database if name == "database" else self.directory

    @property
    def _new(self) -> Backend:
        return self.backend_named(self.backend)

    @property
    def _all(self) -> list[Backend]:
        """Every backend this process can reach, the one for new certificates first."""
        others = [b for b in (self.directory, self.database, self.objects) if b is not None]
        return [self._new, *(b for b in others if b is not self._new)]

    def backend_of(self, folder: Path | str) -> StoreBackend:
        """The name of the backend a certificate's ``folder`` (its locator) lives in."""
        if is_database_folder(folder):
            return "database"
        return "s3" if is_object_folder(folder) else "directory"

    def holding(self, folder: Path | str) -> Backend:
        """The backend a certificate's ``folder`` (its locator) lives in."""
        return self.backend_named(self.backend_of(folder))

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
        elif isinstance(backend, ObjectStore):
            with backend.replacing(folder, **new_set) as stored:
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
        return export_set(self.read_set(folder), target, overwrite=overwrite)

    # -- keys of orders in flight: parked in the configured backend, found in either

    def write_staging_key(self, request_id: str, key_pem: bytes | str) -> None:
        """Park a generated key while its order is in flight."""
        self._new.write_staging_key(request_id, key_pem)

    def read_staging_key(self, request_id: str) -> bytes:
        """The parked key of ``request_id``, from whichever backend holds it."""
        for backend in self._all[:-1]:
            with contextlib.suppress(NotFound):
                return backend.read_staging_key(request_id)
        return self._all[-1].read_staging_key(request_id)

    def discard_staging_key(self, request_id: str) -> None:
        """Delete the parked key of ``request_id`` (absent is fine)."""
        for backend in self._all:
            backend.discard_staging_key(request_id)

    def staged_requests(self) -> list[str]:
        """The request ids whose keys are parked, in any backend."""
        return sorted({r for backend in self._all for r in backend.staged_requests()})

    def prune_staging_keys(
        self, older_than: dt.timedelta, keep: Collection[str] = frozenset()
    ) -> list[str]:
        """Delete parked keys older than ``older_than`` but those of ``keep``; their ids."""
        return sorted(
            {r for backend in self._all for r in backend.prune_staging_keys(older_than, keep)}
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
        objects = (
            ObjectStore(
                kind,
                bucket=settings.s3_bucket,
                prefix=settings.s3_prefix,
                endpoint_url=settings.s3_endpoint_url,
            )
            if settings.s3_bucket
            else None
        )
        backend = settings.store_backend_of(kind)
        stores[kind] = Store(directory, DatabaseStore(kind), backend, objects)
    return stores
