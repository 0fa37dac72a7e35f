"""The ``directory`` backend of the two stores: one folder per certificate on disk.

Layout of a store root::

    <root>/
      .staging/<request-id>.key          keys of orders in flight (folder 0700, keys 0600)
      <slug>-<hash8>/                    one certificate (folder 0700)
        archive/<version>/               the live version: cert.pem chain.pem fullchain.pem
                                         privkey.pem (0600) metadata.json
        current -> archive/<version>     the one link that says which version is live
        cert.pem -> current/cert.pem     the user-facing names (likewise chain.pem,
                                         fullchain.pem, privkey.pem, metadata.json)
        previous/<UTC timestamp>-<serial>/   earlier versions, newest ``keep_previous`` kept

The folder name depends only on the certificate's name set, so a renewal replaces the
certificate in place and the previous version moves to ``previous/``.

Crash guarantee of :meth:`CertificateStore.write` (each step's files and folders are fsynced
before the next step depends on them):

1. the current set is hard-linked into ``previous/<ts>-<serial>/`` (made under a temporary
   name, then renamed, so a previous version is either complete or absent);
2. the new set is written to ``archive/.tmp-<random>/`` and renamed to ``archive/<version>``;
3. a new link to it is renamed over ``current`` -- the commit point, one atomic rename;
4. the replaced version is removed from ``archive/``.

Whoever opens the files through the user-facing names sees the old set before step 3 and
the new set after it, never a mix, also while a write runs. What a crash leaves (a temporary
or never-switched version, a temporary link) is removed by :meth:`CertificateStore.recover`,
which :func:`core.storage.stores_from_settings` runs once per process before anything reads
the store.
A folder of regular files (the layout before versioned folders) is read as it is; its next
write first moves it into a version (``current`` switched to a copy of the same set, then
each file replaced by its link: the same content at every step).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from acmeflow.core.errors import ConfigError, DiskWriteFailed, InvalidKey, NotFound
from acmeflow.core.files import atomic_write, fsync_dir, mkdir_private, write_new
from acmeflow.core.names import canonical_name

log = logging.getLogger(__name__)

StoreKind = Literal["certificate", "zero-touch"]
STORE_KINDS: tuple[StoreKind, ...] = ("certificate", "zero-touch")

CERT_FILE = "cert.pem"
CHAIN_FILE = "chain.pem"
FULLCHAIN_FILE = "fullchain.pem"
KEY_FILE = "privkey.pem"
METADATA_FILE = "metadata.json"
SET_FILES = (CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE, KEY_FILE, METADATA_FILE)
PREVIOUS_DIR = "previous"
STAGING_DIR = ".staging"
ARCHIVE_DIR = "archive"
CURRENT_LINK = "current"
LOCK_FILE = ".lock"

#: The start of a certificate's locator in the database backend (``core.db_store``).
DATABASE_PREFIX = "database:"
#: The start of a certificate's locator in the s3 backend (``core.object_store``).
S3_PREFIX = "s3:"
#: Locators of the backends that keep no files on this machine.
OFF_DISK_PREFIXES = (DATABASE_PREFIX, S3_PREFIX)


def off_disk(folder: Path | str) -> bool:
    """Whether a certificate's ``folder`` is a locator of a backend without files here."""
    return str(folder).startswith(OFF_DISK_PREFIXES)


CERTIFICATE_EXTENSIONS = (".pem", ".crt", ".cer", ".der", ".p12", ".pfx")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_SLUG_UNSAFE = re.compile(r"[^a-z0-9._-]+")


# --- names ----------------------------------------------------------------------------------


def canonical_names(names: Iterable[str]) -> list[str]:
    """The name set in canonical form: lower-case, no trailing dot, unique, sorted."""
    return sorted({canonical_name(n) for n in names if n and n.strip()})


def names_digest(names: Iterable[str]) -> str:
    """SHA-256 hex of the canonical name set (equal for equal sets, in any order/case)."""
    return hashlib.sha256("\n".join(canonical_names(names)).encode("utf-8")).hexdigest()


def check_request_id(request_id: str) -> str:
    """``request_id`` when it is a valid name for a staged key (else :class:`ConfigError`)."""
    if not _REQUEST_ID.match(request_id or ""):
        raise ConfigError(detail=f"invalid request id {request_id!r}")
    return request_id


def folder_name(names: list[str]) -> str:
    """The name of a certificate's folder in any backend: ``<slug of the first name>-<8 hex
    of the name-set hash>``. The hash ignores order and case; the slug follows the first name
    as given, so pass the common name first (renewals reuse the recorded folder)."""
    if not names or not any(n.strip() for n in names):
        raise ConfigError(detail="a certificate needs at least one name")
    first = canonical_name(next(n for n in names if n.strip()))
    slug = _SLUG_UNSAFE.sub("_", first.replace("*", "_wildcard_")).strip(".") or "cert"
    return f"{slug[:80]}-{names_digest(names)[:8]}"


# --- a certificate set, whatever holds it ------------------------------------------------------


def as_bytes(data: bytes | str) -> bytes:
    """PEM text as bytes."""
    return data.encode() if isinstance(data, str) else data


@dataclass(frozen=True)
class CertificateSet:
    """One version of a certificate's files, as bytes (what every backend stores)."""

    cert: bytes
    chain: bytes
    fullchain: bytes
    key: bytes
    metadata: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate (DER) and of the key: equal sets, equal fingerprints."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        der = x509.load_pem_x509_certificate(self.cert).public_bytes(Encoding.DER)
        return f"{hashlib.sha256(der).hexdigest()}:{hashlib.sha256(self.key).hexdigest()[:16]}"

    def check(self) -> None:
        """Raise :class:`InvalidKey` unless the key belongs to the certificate."""
        _check_key_matches(self.cert, self.key)

    @classmethod
    def checked(
        cls,
        *,
        cert_pem: bytes | str,
        chain_pem: bytes | str,
        fullchain_pem: bytes | str,
        key_pem: bytes | str,
        metadata: dict[str, Any],
    ) -> CertificateSet:
        """The set of a store write, its key checked against the certificate."""
        new = cls(
            cert=as_bytes(cert_pem),
            chain=as_bytes(chain_pem),
            fullchain=as_bytes(fullchain_pem),
            key=as_bytes(key_pem),
            metadata=metadata,
        )
        new.check()
        return new


def new_version_name() -> str:
    """The name of a new version in any backend: UTC time (sorts in write order), random tail."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(4)}"


def export_set(live: CertificateSet, target: Path, *, overwrite: bool = False) -> list[Path]:
    """Write ``live`` to the folder ``target``: cert, chain and fullchain (0644) and the
    private key (0600). Files already in ``target`` are refused unless ``overwrite``;
    ``target`` is created 0700 when missing."""
    contents = {
        CERT_FILE: live.cert,
        CHAIN_FILE: live.chain,
        FULLCHAIN_FILE: live.fullchain,
        KEY_FILE: live.key,
    }
    existing = [name for name in contents if (target / name).exists()]
    if existing and not overwrite:
        raise ConfigError(
            detail=f"{target / existing[0]} exists: give --force to replace the files"
        )
    live.check()
    try:
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, data in contents.items():
            atomic_write(target / name, data, mode=0o600 if name == KEY_FILE else 0o644)
    except OSError as exc:
        raise DiskWriteFailed(detail=f"{target}: {exc.strerror}") from None
    return [target / name for name in contents]


# --- atomic file primitives --------------------------------------------------------------------


#: Store writes in flight at once in this process. Each write fsyncs about ten times; dozens
#: of renewal threads fsyncing together cost the kernel (journal lock contention) three times
#: the CPU of a few writers, for no gain in throughput.
_DURABLE_WRITES = threading.BoundedSemaphore(4)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Exclusive lock of a certificate folder (one writer or recovery at a time)."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def serial_of(cert_pem: bytes) -> str | None:
    """The certificate's serial in hex (None: not a PEM certificate)."""
    from cryptography import x509  # local: only needed when a certificate is replaced

    try:
        return format(x509.load_pem_x509_certificate(cert_pem).serial_number, "x")
    except ValueError:
        return None


def _check_key_matches(cert_pem: bytes, key_pem: bytes) -> None:
    """Refuse to store a key that does not belong to the certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise InvalidKey(detail="the private key is not an unencrypted PEM key") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ConfigError(detail="cert_pem is not a PEM certificate") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise InvalidKey(detail="the private key does not match the certificate")


# --- the store ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredCertificate:
    """The paths of one certificate's live files."""

    folder: Path
    cert: Path
    chain: Path
    fullchain: Path
    privkey: Path
    metadata: Path

    @classmethod
    def at(cls, folder: Path) -> StoredCertificate:
        """The file paths of the certificate in ``folder``."""
        return cls(
            folder=folder,
            cert=folder / CERT_FILE,
            chain=folder / CHAIN_FILE,
            fullchain=folder / FULLCHAIN_FILE,
            privkey=folder / KEY_FILE,
            metadata=folder / METADATA_FILE,
        )


@dataclass(frozen=True)
class _Put:
    """A version switched live by a write: what undoing it needs."""

    version: str
    old_version: str | None
    archived: Path | None  # the copy of the replaced set in previous/


class CertificateStore:
    """One store (``certificate`` or ``zero-touch``) rooted at a folder."""

    def __init__(
        self,
        root: Path,
        kind: StoreKind,
        *,
        keep_previous: int | None = 5,
        dir_mode: int = 0o700,
    ) -> None:
        if kind not in STORE_KINDS:
            raise ConfigError(detail=f"unknown store {kind!r} (certificate or zero-touch)")
        if keep_previous is not None and keep_previous < 0:
            raise ConfigError(detail="keep_previous must be >= 0 (or None to keep all)")
        self.root = Path(root).expanduser()
        self.kind: StoreKind = kind
        self.keep_previous = keep_previous
        self.dir_mode = dir_mode

    def __repr__(self) -> str:
        return f"CertificateStore({str(self.root)!r}, {self.kind!r})"

    # -- folders

    def folder_for(self, names: list[str]) -> Path:
        """The folder of the certificate for ``names`` (see :func:`folder_name`)."""
        return self.root / folder_name(names)

    def holds(self, folder: Path) -> bool:
        """Whether ``folder`` is one of this store's certificate folders (not a loose file)."""
        folder = Path(folder)
        return folder.is_dir() and folder.parent.resolve() == self.root.resolve()

    def _own(self, folder: Path) -> Path:
        folder = Path(folder)
        if not folder.is_absolute():
            folder = self.root / folder
        if folder.parent.resolve() != self.root.resolve():
            raise ConfigError(detail=f"{str(folder)!r} is not a certificate folder of {self!r}")
        return folder

    # -- write / read

    def write(
        self,
        folder: Path,
        *,
        cert_pem: bytes | str,
        chain_pem: bytes | str,
        fullchain_pem: bytes | str,
        key_pem: bytes | str | None,
        metadata: dict[str, Any],
    ) -> StoredCertificate:
        """Store a certificate set in ``folder`` (see the module doc for the crash guarantee).

        ``key_pem=None`` keeps the current ``privkey.pem`` (renewal with the same key). The
        key must match the certificate. The replaced set is kept in ``previous/``.
        """
        with self.replacing(
            folder,
            cert_pem=cert_pem,
            chain_pem=chain_pem,
            fullchain_pem=fullchain_pem,
            key_pem=key_pem,
            metadata=metadata,
        ) as live:
            return live

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
    ) -> Iterator[StoredCertificate]:
        """:meth:`write`, undone when the body raises: the set that was live goes live again
        (a folder this write created is removed) and the error goes on. The body is where the
        caller records the new set (its database commit): files and records always agree."""
        folder = self._own(folder)
        mkdir_private(self.root, self.dir_mode)
        created = not folder.exists()
        mkdir_private(folder, self.dir_mode)
        with _DURABLE_WRITES, _locked(folder):
            try:
                put = self._put(
                    folder,
                    cert_pem=cert_pem,
                    chain_pem=chain_pem,
                    fullchain_pem=fullchain_pem,
                    key_pem=key_pem,
                    metadata=metadata,
                )
            except BaseException:
                if created:
                    shutil.rmtree(folder, ignore_errors=True)
                raise
            try:
                yield StoredCertificate.at(folder)
            except BaseException:
                self._undo(folder, put, created)
                raise
            if put.old_version is not None and put.old_version != put.version:
                shutil.rmtree(folder / ARCHIVE_DIR / put.old_version, ignore_errors=True)
            self._prune(folder)

    def _undo(self, folder: Path, put: _Put, created: bool) -> None:
        """Make the set that was live before ``put`` live again (never raises)."""
        try:
            if created or put.old_version is None:
                shutil.rmtree(folder, ignore_errors=True)
                return
            self._switch(folder, put.old_version)
            shutil.rmtree(folder / ARCHIVE_DIR / put.version, ignore_errors=True)
            if put.archived is not None:
                shutil.rmtree(put.archived, ignore_errors=True)
        except OSError as exc:  # recovery at the next open finishes what is left
            log.warning("could not undo the write in %s: %s", folder, exc)

    def _put(
        self,
        folder: Path,
        *,
        cert_pem: bytes | str,
        chain_pem: bytes | str,
        fullchain_pem: bytes | str,
        key_pem: bytes | str | None,
        metadata: dict[str, Any],
    ) -> _Put:
        """Stage the new version and switch ``current`` to it (the old version stays)."""
        self._recover_folder(folder)
        cert_b = as_bytes(cert_pem)
        live = StoredCertificate.at(folder)
        if key_pem is None:
            try:
                key_b = live.privkey.read_bytes()
            except FileNotFoundError:
                raise InvalidKey(
                    detail=f"no private key to reuse in {str(folder)!r}; give the key"
                ) from None
        else:
            key_b = as_bytes(key_pem)
        _check_key_matches(cert_b, key_b)

        contents: dict[str, tuple[bytes, int]] = {
            CERT_FILE: (cert_b, 0o644),
            CHAIN_FILE: (as_bytes(chain_pem), 0o644),
            FULLCHAIN_FILE: (as_bytes(fullchain_pem), 0o644),
            KEY_FILE: (key_b, 0o600),
            METADATA_FILE: (
                (json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n").encode(),
                0o644,
            ),
        }

        archived = None
        if live.cert.exists():
            self._migrate_legacy(folder)
            archived = self._archive(folder)
        version = self._stage_version(folder, contents)
        old_version = _current_version(folder)
        self._switch(folder, version)
        self._link_live_names(folder)
        return _Put(version=version, old_version=old_version, archived=archived)

    def _stage_version(self, folder: Path, contents: dict[str, tuple[bytes, int]]) -> str:
        """Write a complete version into ``archive/<version>/`` (made under a temporary name,
        then renamed, so a version folder is complete or absent); its name."""
        archive = folder / ARCHIVE_DIR
        mkdir_private(archive, self.dir_mode)
        version = new_version_name()
        tmp = archive / f".tmp-{secrets.token_hex(6)}"
        tmp.mkdir(mode=0o700)
        try:
            for name, (data, mode) in contents.items():
                write_new(tmp / name, data, mode)
            fsync_dir(tmp)
            os.rename(tmp, archive / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(archive)
        return version

    def _switch(self, folder: Path, version: str) -> None:
        """The commit point: one rename of a new ``current`` link over the old one."""
        link = folder / f".current-{secrets.token_hex(6)}"
        os.symlink(f"{ARCHIVE_DIR}/{version}", link)
        try:
            os.replace(link, folder / CURRENT_LINK)
        except BaseException:
            link.unlink(missing_ok=True)
            raise
        fsync_dir(folder)

    @staticmethod
    def _link_live_names(folder: Path) -> None:
        """Make each user-facing name a link to ``current/<name>`` (idempotent), ``cert.pem``
        last: while it is absent, recovery knows the links were not all made."""
        changed = False
        for name in sorted(SET_FILES, key=lambda name: name == CERT_FILE):
            path = folder / name
            target = f"{CURRENT_LINK}/{name}"
            with contextlib.suppress(OSError):
                if os.readlink(path) == target:
                    continue
            link = folder / f".{name}.{secrets.token_hex(6)}.link"
            os.symlink(target, link)
            os.replace(link, path)
            changed = True
        if changed:
            fsync_dir(folder)

    def _migrate_legacy(self, folder: Path) -> None:
        """Move a set of regular files (the layout before versioned folders) into a version.

        The set is copied into ``archive/``, ``current`` is pointed at it, then each
        regular file is replaced by a link to the same content: consistent at every step.
        """
        if (folder / CURRENT_LINK).is_symlink():
            return
        contents = {}
        for name in SET_FILES:
            path = folder / name
            if path.is_file():
                contents[name] = (path.read_bytes(), 0o600 if name == KEY_FILE else 0o644)
        self._switch(folder, self._stage_version(folder, contents))
        self._link_live_names(folder)

    def read(self, folder: Path) -> StoredCertificate:
        """The live files of ``folder`` (an interrupted write is cleaned up first)."""
        folder = self._own(folder)
        if _interrupted(folder):
            with _locked(folder):
                self._recover_folder(folder)
        live = StoredCertificate.at(folder)
        if not live.cert.is_file():
            raise NotFound(detail=f"no certificate in {str(folder)!r}")
        return live

    def read_set(self, folder: Path) -> CertificateSet:
        """The live set of ``folder`` as one version (read under the folder's lock, so a
        renewal switching it cannot mix two)."""
        live = self.read(folder)
        with _locked(live.folder):
            return set_in_folder(live.folder)

    def versions(self, folder: Path) -> list[CertificateSet]:
        """Every complete version of ``folder``, oldest first, the live one last (a previous
        version without its key, such as an adopted loose file, is left out)."""
        sets = []
        for previous in self.previous_versions(folder):
            with contextlib.suppress(OSError, ValueError):
                sets.append(set_in_folder(previous))
        return [*sets, self.read_set(folder)]

    def previous_versions(self, folder: Path) -> list[Path]:
        """Folders of earlier versions, oldest first."""
        prev = self._own(folder) / PREVIOUS_DIR
        if not prev.is_dir():
            return []
        return sorted(p for p in prev.iterdir() if p.is_dir() and not p.name.startswith("."))

    def recover(self) -> int:
        """Clean up interrupted writes in every folder; returns the folders repaired.

        Cheap when there is nothing to do (a few ``stat`` calls per folder).
        """
        repaired = 0
        if not self.root.is_dir():
            return 0
        for folder in self.root.iterdir():
            if (
                folder.is_dir()
                and not folder.is_symlink()
                and not folder.name.startswith(".")
                and _interrupted(folder)
            ):
                with _locked(folder):
                    repaired += self._recover_folder(folder)
        return repaired

    def _recover_folder(self, folder: Path) -> int:
        """Remove what an interrupted write left; the live set is the one ``current`` names."""
        if not _interrupted(folder):
            return 0
        for leftover in folder.glob(".*.link"):
            leftover.unlink(missing_ok=True)
        for leftover in folder.glob(".current-*"):
            leftover.unlink(missing_ok=True)
        for leftover in folder.glob(".staging-*"):  # the layout before versioned folders
            shutil.rmtree(leftover, ignore_errors=True)
        current = _current_version(folder)
        archive = folder / ARCHIVE_DIR
        if archive.is_dir():
            for version in archive.iterdir():
                if version.name != current:
                    shutil.rmtree(version, ignore_errors=True)
        if current is not None:
            self._link_live_names(folder)
        prev = folder / PREVIOUS_DIR
        if prev.is_dir():
            for leftover in prev.glob(".tmp-*"):
                shutil.rmtree(leftover, ignore_errors=True)
        fsync_dir(folder)
        return 1

    def _archive(self, folder: Path) -> Path:
        """Hard-link the live set into ``previous/<UTC timestamp>-<serial>/``."""
        prev = folder / PREVIOUS_DIR
        mkdir_private(prev, self.dir_mode)
        try:
            serial = serial_of((folder / CERT_FILE).read_bytes())
        except OSError:
            serial = None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        existing = self.previous_versions(folder)
        if existing and existing[-1].name[: len(stamp)] >= stamp:
            # keep names in write order even if the clock went backwards
            last = datetime.strptime(existing[-1].name[: len(stamp)], "%Y%m%dT%H%M%S.%fZ")
            stamp = (last + timedelta(microseconds=1)).strftime("%Y%m%dT%H%M%S.%fZ")
        target = prev / f"{stamp}-{serial or 'unknown'}"
        tmp = prev / f".tmp-{secrets.token_hex(6)}"
        tmp.mkdir(mode=0o700)
        try:
            for name in SET_FILES:
                src = (folder / name).resolve()
                if src.exists():
                    try:
                        os.link(src, tmp / name)
                    except OSError:  # filesystems without hard links
                        shutil.copy2(src, tmp / name)
            fsync_dir(tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(prev)
        return target

    def _prune(self, folder: Path) -> None:
        if self.keep_previous is None:
            return
        versions = self.previous_versions(folder)
        excess = len(versions) - self.keep_previous
        for old in versions[: max(excess, 0)]:
            shutil.rmtree(old, ignore_errors=True)  # a removal lost in a crash is redone later

    # -- scan support

    def iter_certificate_files(self) -> Iterator[Path]:
        """Every certificate file under the root, for the scan.

        Skips ``previous/`` and hidden folders, private keys (``privkey.pem``, ``*key.pem``,
        PEM files holding only a key) and, in acmeflow's own folders, ``chain.pem`` and
        ``fullchain.pem`` (their leaf is ``cert.pem``; the chain holds CA certificates).
        """
        if not self.root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            skipped = (PREVIOUS_DIR, ARCHIVE_DIR, CURRENT_LINK)
            dirnames[:] = sorted(d for d in dirnames if d not in skipped and not d.startswith("."))
            managed = CERT_FILE in filenames and METADATA_FILE in filenames
            for name in sorted(filenames):
                lower = name.lower()
                if name.startswith(".") or not lower.endswith(CERTIFICATE_EXTENSIONS):
                    continue
                if managed and name in (CHAIN_FILE, FULLCHAIN_FILE):
                    continue
                path = Path(dirpath) / name
                if not path.is_file() or _looks_like_key(path):
                    continue
                yield path

    # -- keys of orders in flight

    @property
    def staging_dir(self) -> Path:
        """The private folder of keys waiting for their order."""
        return self.root / STAGING_DIR

    def staging_key_path(self, request_id: str) -> Path:
        """Where the key of order ``request_id`` waits."""
        return self.staging_dir / f"{check_request_id(request_id)}.key"

    def staged_requests(self) -> list[str]:
        """The request ids whose keys are parked here."""
        if not self.staging_dir.is_dir():
            return []
        return sorted(path.stem for path in self.staging_dir.glob("*.key"))

    def write_staging_key(self, request_id: str, key_pem: bytes | str) -> Path:
        """Park a generated key (0600 in a 0700 folder) while its order is in flight."""
        path = self.staging_key_path(request_id)
        try:
            mkdir_private(self.root, self.dir_mode)
            mkdir_private(self.staging_dir, 0o700)
            atomic_write(path, key_pem, mode=0o600)
        except OSError as exc:
            raise DiskWriteFailed(detail=f"{exc.filename or path}: {exc.strerror}") from exc
        return path

    def read_staging_key(self, request_id: str) -> bytes:
        """The parked key of ``request_id``."""
        try:
            return self.staging_key_path(request_id).read_bytes()
        except FileNotFoundError:
            raise NotFound(detail=f"no staged key for request {request_id!r}") from None

    def discard_staging_key(self, request_id: str) -> None:
        """Delete the parked key of ``request_id`` (absent is fine)."""
        path = self.staging_key_path(request_id)
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def prune_staging_keys(
        self, older_than: timedelta, keep: Collection[str] = frozenset()
    ) -> list[str]:
        """Delete parked keys older than ``older_than`` (abandoned orders) but those of the
        request ids in ``keep`` (journaled orders awaiting recovery); their ids."""
        if not self.staging_dir.is_dir():
            return []
        cutoff = datetime.now(UTC).timestamp() - older_than.total_seconds()
        removed = []
        for path in self.staging_dir.glob("*.key"):
            if path.stem in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path.stem)
        for tmp in self.staging_dir.glob(".*.tmp"):  # crashed atomic writes
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
        return sorted(removed)


def set_in_folder(folder: Path) -> CertificateSet:
    """The set of files in ``folder`` (a live folder or a previous version), read as they
    are: hold the folder's lock (or be inside :meth:`CertificateStore.replacing`)."""
    try:
        metadata = json.loads((folder / METADATA_FILE).read_text())
    except FileNotFoundError:
        metadata = {}
    return CertificateSet(
        cert=(folder / CERT_FILE).read_bytes(),
        chain=(folder / CHAIN_FILE).read_bytes(),
        fullchain=(folder / FULLCHAIN_FILE).read_bytes(),
        key=(folder / KEY_FILE).read_bytes(),
        metadata=metadata,
    )


def _current_version(folder: Path) -> str | None:
    """The name of the version ``current`` points to (None: no versioned set yet)."""
    try:
        return Path(os.readlink(folder / CURRENT_LINK)).name
    except OSError:
        return None


def _interrupted(folder: Path) -> bool:
    """Whether a write of ``folder`` left something behind (a few ``stat`` calls)."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return False
    if any(e.startswith((".current-", ".staging-")) or e.endswith(".link") for e in entries):
        return True
    current = _current_version(folder)
    archive = folder / ARCHIVE_DIR
    if ARCHIVE_DIR in entries and set(os.listdir(archive)) != ({current} if current else set()):
        return True
    if current and (
        not os.path.islink(folder / CERT_FILE)  # linked last: the links were being made
        or any(_is_regular_file(folder / name) for name in SET_FILES)  # a migration
    ):
        return True
    prev = folder / PREVIOUS_DIR
    return PREVIOUS_DIR in entries and any(e.startswith(".tmp-") for e in os.listdir(prev))


def _is_regular_file(path: Path) -> bool:
    return os.path.lexists(path) and not os.path.islink(path)


def _looks_like_key(path: Path) -> bool:
    lower = path.name.lower()
    if lower == KEY_FILE or re.search(r"(^|[._-])(priv)?key\.pem$", lower):
        return True
    if not lower.endswith(".pem"):
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(65536)
    except OSError:
        return False
    return b"PRIVATE KEY-----" in head and b"-----BEGIN CERTIFICATE-----" not in head


#: Store roots already recovered by this process (recovery runs once per process per store).
_RECOVERED: set[Path] = set()
_RECOVERED_LOCK = threading.Lock()


def recover_once(store: CertificateStore) -> None:
    """Run :meth:`CertificateStore.recover` the first time this process opens ``store``."""
    root = store.root.resolve()
    with _RECOVERED_LOCK:
        if root in _RECOVERED:
            return
        store.recover()
        _RECOVERED.add(root)
