"""Where a renewed certificate goes in its store, and which key a key-reusing renewal signs
with: a certificate found in acmeflow's layout renews in its folder; a loose file (placed by
hand) moves into a new acmeflow folder of the same store on its first renewal."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from acmeflow.core import errors
from acmeflow.core.renewal_plan import RenewalJob
from acmeflow.core.stores import CERT_FILE, PREVIOUS_DIR, CertificateStore


def managed_folder(store: CertificateStore, folder: str) -> Path | None:
    """The acmeflow folder a certificate lives in, or ``None`` for a loose file."""
    path = Path(folder)
    if path.name == CERT_FILE:
        path = path.parent
    if path.is_dir() and path.parent.resolve() == store.root.resolve():
        return path
    return None


def reused_key(store: CertificateStore, folder: str) -> bytes:
    """The certificate's current key, for a renewal that reuses it (it stays on disk)."""
    managed = managed_folder(store, folder)
    if managed is None:
        raise errors.InvalidKey(
            detail=f"{folder}: the certificate is set to reuse its key, but no privkey.pem is "
            "stored with it"
        )
    try:
        return store.read(managed).privkey.read_bytes()
    except FileNotFoundError:
        raise errors.InvalidKey(detail=f"no private key to reuse in {managed}") from None


def place_folder(job: RenewalJob, store: CertificateStore) -> tuple[Path, Path | None]:
    """The folder the renewed set goes to, and the loose file it replaces (if any)."""
    managed = managed_folder(store, job.folder)
    if managed is not None:
        return managed, None
    return store.folder_for(job.names), Path(job.folder)


def adopt_loose_file(target_folder: Path, loose: Path, serial: str | None) -> None:
    """Keep a replaced loose certificate file as a previous version of its new folder."""
    if not loose.is_file():
        return
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    dest = target_folder / PREVIOUS_DIR / f"{stamp}-{serial or 'unknown'}-adopted"
    dest.mkdir(parents=True, mode=0o700)
    shutil.move(str(loose), dest / loose.name)
