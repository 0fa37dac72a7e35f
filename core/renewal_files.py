"""Where a renewed certificate goes in its store, and which key a key-reusing renewal signs
with: a certificate found in acmeflow's layout renews in its folder; a loose file (placed by
hand) moves into a new acmeflow folder of the same store on its first renewal (in whichever
backend the settings choose for new certificates)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from acmeflow.core import errors
from acmeflow.core.renewal_plan import RenewalJob
from acmeflow.core.storage import Store
from acmeflow.core.stores import CERT_FILE, PREVIOUS_DIR, off_disk

#: Where a loose file replaced by a certificate of the database or s3 backend is kept
#: (hidden: the scan skips it).
ADOPTED_DIR = ".adopted"


def managed_folder(store: Store, folder: str) -> Path | None:
    """The acmeflow folder (or database locator) a certificate lives in, or ``None`` for a
    loose file."""
    path = Path(folder)
    if path.name == CERT_FILE:
        path = path.parent
    return path if store.holds(path) else None


def reused_key(store: Store, folder: str) -> bytes:
    """The certificate's current key, for a renewal that reuses it (it stays stored)."""
    managed = managed_folder(store, folder)
    if managed is None:
        raise errors.InvalidKey(
            detail=f"{folder}: the certificate is set to reuse its key, but no privkey.pem is "
            "stored with it"
        )
    try:
        return store.read_set(managed).key
    except (FileNotFoundError, errors.NotFound):
        raise errors.InvalidKey(detail=f"no private key to reuse in {managed}") from None


def place_folder(job: RenewalJob, store: Store) -> tuple[Path, Path | None]:
    """The folder the renewed set goes to, and the loose file it replaces (if any)."""
    managed = managed_folder(store, job.folder)
    if managed is not None:
        return managed, None
    return store.folder_for(job.names), Path(job.folder)


def adopt_loose_file(store: Store, target_folder: Path, loose: Path, serial: str | None) -> None:
    """Keep a replaced loose certificate file as a previous version of its new folder (in
    the store's hidden ``.adopted/`` folder when the new one is in the database)."""
    if not loose.is_file():
        return
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    kept = (
        store.root / ADOPTED_DIR / target_folder.name
        if off_disk(target_folder)
        else target_folder / PREVIOUS_DIR
    )
    dest = kept / f"{stamp}-{serial or 'unknown'}-adopted"
    dest.mkdir(parents=True, mode=0o700)
    shutil.move(str(loose), dest / loose.name)
