"""Scan (F2): find every certificate file in a store, describe and classify it.

Pure: no database and no Prefect. :func:`scan_store` walks one store with
:meth:`core.stores.CertificateStore.iter_certificate_files`, parses each file with
:mod:`core.certinfo` (PEM, DER, PKCS#12 with passwords tried in order, PKCS#7) and returns
the leaf of every file. Files whose size and modification time match what the previous
scan recorded are not read again (``known``). :func:`classify` matches an issuer against the
issuer names of the configured CA vendors; :func:`find_duplicates` finds the same
certificate (by SHA-256 fingerprint) in both stores, which would be renewed twice.

Each file is recorded under a *folder key*: the certificate folder for ``cert.pem`` of a
folder acmeflow wrote (it has ``metadata.json``), else the file's own path (a certificate
placed by hand). A file holding only CA certificates (a ``chain.pem`` placed by hand) is
not a certificate to renew and is skipped; the same leaf in two files of one store (e.g.
``cert.pem`` and ``fullchain.pem`` copied from elsewhere) is recorded once, under the file
found first, and reported as an alias.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import pkcs12

from acmeflow.core.certinfo import (
    CertificateInfo,
    CertificateParseError,
    CertificatePasswordError,
    load_certificates,
    parse_certificate,
)
from acmeflow.core.stores import CERT_FILE, METADATA_FILE, CertificateStore

__all__ = [
    "OTHER_CA",
    "Alias",
    "CAIssuers",
    "Duplicate",
    "FoundFile",
    "KnownFile",
    "Location",
    "ScanProblem",
    "ScannedCertificate",
    "StoreScan",
    "classify",
    "counts_line",
    "find_duplicates",
    "find_files",
    "read_leaf",
    "scan_store",
]

OTHER_CA = "Other CA"
_PKCS12_SUFFIXES = (".p12", ".pfx")


@dataclass(frozen=True)
class FoundFile:
    """A certificate file in a store, with the stat the next scan compares."""

    store: str
    path: str
    folder: str  # the folder key recorded for it (see the module doc)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class KnownFile:
    """What the previous scan recorded for a file path (to skip unchanged files)."""

    size: int | None
    mtime_ns: int | None
    fingerprint_sha256: str | None


@dataclass(frozen=True)
class ScannedCertificate:
    """The leaf certificate read from one file."""

    file: FoundFile
    info: CertificateInfo


@dataclass(frozen=True)
class ScanProblem:
    """A certificate file that could not be read (the reason names no secret)."""

    store: str
    path: str
    reason: str


@dataclass(frozen=True)
class Alias:
    """A file holding the same leaf as a file found earlier in the same store."""

    store: str
    path: str
    same_as: str
    fingerprint_sha256: str


@dataclass
class StoreScan:
    """The outcome of reading one store."""

    store: str
    root: str
    exists: bool
    files: int = 0
    certificates: list[ScannedCertificate] = field(default_factory=list)
    unchanged: list[FoundFile] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    aliases: list[Alias] = field(default_factory=list)
    ca_files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def seen_paths(self) -> set[str]:
        """Paths of every file found, read or not (a row at such a path is not gone)."""
        return (
            {c.file.path for c in self.certificates}
            | {f.path for f in self.unchanged}
            | {p.path for p in self.problems}
        )


def find_files(store: CertificateStore) -> list[FoundFile]:
    """Every certificate file of ``store`` with its size and mtime, in walk order."""
    found: list[FoundFile] = []
    managed_dirs: dict[str, bool] = {}
    for path in store.iter_certificate_files():
        try:
            st = os.stat(path)
        except FileNotFoundError:  # removed while we walked
            continue
        text = str(path)
        folder = text
        if path.name == CERT_FILE:
            parent = str(path.parent)
            managed = managed_dirs.get(parent)
            if managed is None:
                managed = managed_dirs[parent] = os.path.isfile(os.path.join(parent, METADATA_FILE))
            if managed:
                folder = parent
        found.append(
            FoundFile(
                store=store.kind, path=text, folder=folder, size=st.st_size, mtime_ns=st.st_mtime_ns
            )
        )
    return found


def _fast_leaf(data: bytes, name: str, passwords: Sequence[bytes]) -> CertificateInfo | None:
    """The leaf of the common cases, parsing only the leaf; ``None`` hands the file to
    :func:`core.certinfo.load_certificates` (odd layouts, errors and their messages)."""
    try:
        if name.endswith(_PKCS12_SUFFIXES):
            for password in passwords or (None,):
                try:
                    bundle = pkcs12.load_pkcs12(data, password)
                except ValueError:
                    continue
                return parse_certificate(bundle.cert.certificate) if bundle.cert else None
            return None
        if b"-----BEGIN" in data:
            if b"-----BEGIN CERTIFICATE-----" not in data:
                return None
            return parse_certificate(x509.load_pem_x509_certificates(data)[0])
        return parse_certificate(x509.load_der_x509_certificate(data))
    except (ValueError, UnsupportedAlgorithm):
        return None


def read_leaf(path: str | Path, passwords: Sequence[bytes] = ()) -> CertificateInfo:
    """The first certificate of a file (the leaf); PKCS#12 passwords are tried in order.

    Raises :class:`~core.certinfo.CertificateParseError` (or its subclass
    :class:`~core.certinfo.CertificatePasswordError` when no password opens a PKCS#12 file).
    """
    path = Path(path)
    data = path.read_bytes()
    leaf = _fast_leaf(data, path.name.lower(), passwords)
    if leaf is not None:
        return leaf
    attempts: list[bytes | None] = [*passwords] if passwords else [None]
    last: CertificatePasswordError | None = None
    for password in attempts:
        try:
            return load_certificates(data, password=password, filename=path.name)[0]
        except CertificatePasswordError as exc:
            last = exc
    if passwords and len(passwords) > 1 and last is not None:
        raise CertificatePasswordError(
            f"{path.name}: none of the {len(passwords)} PKCS#12 passwords opens the file"
        )
    assert last is not None
    raise last


_Outcome = tuple[str, CertificateInfo | str]


def _read_one(path: str, passwords: Sequence[bytes]) -> _Outcome:
    try:
        return "ok", read_leaf(path, passwords)
    except CertificateParseError as exc:
        reason, prefix = str(exc), f"{Path(path).name}: "
        return "error", reason[len(prefix) :] if reason.startswith(prefix) else reason
    except OSError as exc:
        return "error", str(exc.strerror or exc)


def scan_store(
    store: CertificateStore,
    *,
    passwords: Sequence[bytes] = (),
    known: Mapping[str, KnownFile] | None = None,
) -> StoreScan:
    """Read every certificate file of ``store`` (see the module doc).

    ``known`` maps file paths to what the last scan recorded; a file with the same size and
    mtime is listed in ``unchanged`` and not read. Parsing runs in this process: a process
    pool measured slower on two cores (start-up and pickling ate the gain).
    """
    start = time.perf_counter()
    result = StoreScan(store=store.kind, root=str(store.root), exists=store.root.is_dir())
    known = known or {}
    files = find_files(store)
    result.files = len(files)
    seen: dict[str, str] = {}  # fingerprint -> first path in this store
    to_read: list[FoundFile] = []
    for found in files:
        prior = known.get(found.path)
        if (
            prior is not None
            and prior.fingerprint_sha256
            and prior.size == found.size
            and prior.mtime_ns == found.mtime_ns
        ):
            result.unchanged.append(found)
            seen.setdefault(prior.fingerprint_sha256, found.path)
        else:
            to_read.append(found)
    outcomes = [_read_one(f.path, passwords) for f in to_read]
    for found, (status, value) in zip(to_read, outcomes, strict=True):
        if isinstance(value, str):
            result.problems.append(ScanProblem(store=store.kind, path=found.path, reason=value))
            continue
        assert status == "ok"
        if value.is_ca:
            result.ca_files.append(found.path)
            continue
        first = seen.get(value.fingerprint_sha256)
        if first is not None and first != found.path:
            result.aliases.append(
                Alias(
                    store=store.kind,
                    path=found.path,
                    same_as=first,
                    fingerprint_sha256=value.fingerprint_sha256,
                )
            )
            continue
        seen[value.fingerprint_sha256] = found.path
        result.certificates.append(ScannedCertificate(file=found, info=value))
    result.seconds = time.perf_counter() - start
    return result


# --- classification --------------------------------------------------------------------------


@dataclass(frozen=True)
class CAIssuers:
    """A configured CA vendor as the classification sees it."""

    ca_id: int
    name: str
    label: str
    issuer_names: tuple[str, ...]
    active: bool = True

    def matches(self, common_name: str | None, organization: str | None) -> bool:
        """Whether the issuer CN or O is one of this CA's issuer names (as
        :func:`config.vendors.issuer_matches`, with the names folded once)."""
        wanted = self.__dict__.get("_folded")
        if wanted is None:
            wanted = frozenset(n.strip().casefold() for n in self.issuer_names if n and n.strip())
            object.__setattr__(self, "_folded", wanted)
        return any(
            v is not None and v.strip().casefold() in wanted for v in (common_name, organization)
        )


def classify(
    issuer_common_name: str | None,
    issuer_organization: str | None,
    cas: Sequence[CAIssuers],
    *,
    prefer: int | None = None,
) -> int | None:
    """The id of the configured CA that issued a certificate with this issuer, or ``None``.

    When several CAs know the issuer (two configurations of one vendor), ``prefer`` (the CA
    the certificate is renewed through) wins, then active CAs, then the lowest id.
    """
    if issuer_common_name is None and issuer_organization is None:
        return None
    matching = [ca for ca in cas if ca.matches(issuer_common_name, issuer_organization)]
    if not matching:
        return None
    for ca in matching:
        if ca.ca_id == prefer:
            return ca.ca_id
    return min(matching, key=lambda ca: (not ca.active, ca.ca_id)).ca_id


def counts_line(counts: Mapping[str, int]) -> str:
    """``Let's Encrypt: 2, Other CA: 2`` (in the order given)."""
    return ", ".join(f"{label}: {count}" for label, count in counts.items())


# --- duplicates across stores ----------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """Where one copy of a certificate is recorded."""

    store: str
    certificate_id: int | None
    path: str


@dataclass(frozen=True)
class Duplicate:
    """The same certificate in both stores (it would be renewed twice)."""

    fingerprint_sha256: str
    names: tuple[str, ...]
    locations: tuple[Location, ...]

    def warning(self) -> str:
        """The warning shown to users."""
        where = "; ".join(
            f"{loc.store} store"
            + (f" (certificate {loc.certificate_id})" if loc.certificate_id is not None else "")
            + f": {loc.path}"
            for loc in self.locations
        )
        return (
            f"the same certificate ({', '.join(self.names)}) is in both stores and would be "
            f"renewed twice: {where}"
        )


def find_duplicates(
    items: Iterable[tuple[str, str, int | None, str, Sequence[str]]],
) -> list[Duplicate]:
    """Certificates found in more than one store.

    ``items`` are ``(fingerprint, store, certificate id, path, names)``; the result is
    ordered by the first name.
    """
    by_fp: dict[str, list[tuple[str, int | None, str, Sequence[str]]]] = {}
    for fingerprint, store, cert_id, path, names in items:
        if fingerprint:
            by_fp.setdefault(fingerprint, []).append((store, cert_id, path, names))
    duplicates = []
    for fingerprint, copies in by_fp.items():
        if len({store for store, _, _, _ in copies}) < 2:
            continue
        copies.sort(key=lambda c: (c[0], c[2]))
        duplicates.append(
            Duplicate(
                fingerprint_sha256=fingerprint,
                names=tuple(copies[0][3]),
                locations=tuple(Location(store, cid, path) for store, cid, path, _ in copies),
            )
        )
    duplicates.sort(key=lambda d: (d.names[:1], d.fingerprint_sha256))
    return duplicates
