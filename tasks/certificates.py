"""Prefect tasks around an order: check the request, prepare key and CSR, store, log."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.orm import Session

from acmeflow.core import errors
from acmeflow.core.acme_client import IssuedCertificate
from acmeflow.core.certinfo import CertificateInfo, parse_certificate
from acmeflow.core.keys import CSRFields, build_csr, generate_private_key, key_type_of, load_csr
from acmeflow.core.keys import load_private_key as load_key
from acmeflow.core.names import check_name_count, normalize_names
from acmeflow.core.state import inventory, provider_index, repo
from acmeflow.core.state.models import CAVendor
from acmeflow.core.state.provider_index import ProviderIndex
from acmeflow.core.stores import STORE_KINDS, stores_from_settings
from acmeflow.tasks.common import current_flow_run_id, db, progress, settings

STEP = {"cache_policy": NO_CACHE, "persist_result": False}


@dataclass(frozen=True)
class CheckedRequest:
    """A request that passed every check before anything was ordered."""

    names: list[str]
    log_id: int
    providers: dict[str, str]  # certificate name -> DNS provider name


@dataclass(frozen=True)
class NamesCaAndDns:
    """What :func:`check_names_ca_and_dns` found."""

    names: list[str]  # normalised
    ca: CAVendor
    providers: dict[str, str]  # certificate name -> DNS provider name
    index: ProviderIndex  # every domain mapping, for names met later (CNAME targets)


def check_names_ca_and_dns(s: Session, *, ca: str, names: list[str], store: str) -> NamesCaAndDns:
    """The checks every order passes first, in this order: names, store, CA vendor, a DNS
    provider for every name. Raises the catalog error of the first that fails."""
    normalized = normalize_names(names)
    if store not in STORE_KINDS:
        raise errors.ConfigError(detail=f"unknown store {store!r}: {' or '.join(STORE_KINDS)}")
    vendor = repo.get_ca(s, ca)
    check_name_count(
        normalized, ca=vendor.name, vendor=vendor.vendor, default_limit=settings().max_names
    )
    index = provider_index.provider_index(s)
    return NamesCaAndDns(normalized, vendor, index.providers_for(normalized), index)


@task(name="check_request", **STEP)  # type: ignore[call-overload]
def check_request(
    *,
    kind: str,
    ca: str,
    names: list[str],
    store: str,
    certificate_id: int | None = None,
    allow_duplicate: bool = False,
) -> CheckedRequest:
    """Validate names, CA, DNS mapping and duplicates, then open the history entry.

    A request whose names are invalid is refused before anything is written; any other that
    fails here is logged as failed too, so the history shows every well-formed request.
    """
    normalize_names(names)
    flow_run_id = current_flow_run_id()
    with db() as s:
        entry = repo.log_start(
            s,
            kind=kind,
            names=list(names),
            ca_name=ca,
            store=store,
            certificate_id=certificate_id,
            flow_run_id=flow_run_id,
        )
        log_id = entry.id
    try:
        with db() as s:
            checked = check_names_ca_and_dns(s, ca=ca, names=names, store=store)
            normalized, providers = checked.names, checked.providers
            if not allow_duplicate:
                existing = repo.find_identical(s, normalized, checked.ca.id, store)
                if existing is not None:
                    raise errors.DuplicateCertificate(
                        detail=f"certificate {existing.id} ({', '.join(existing.names)}) is valid "
                        f"until {existing.not_after:%Y-%m-%d}; use `acmeflow renew --now "
                        f"{existing.id}` to renew it"
                    )
    except errors.AcmeflowError as exc:
        _fail(log_id, exc)
        raise
    progress(
        f"request checked: {', '.join(normalized)} via {', '.join(sorted(set(providers.values())))}"
    )
    return CheckedRequest(names=normalized, log_id=log_id, providers=providers)


@task(name="prepare_key_and_csr", **STEP)  # type: ignore[call-overload]
def prepare_key_and_csr(
    *,
    request_id: str,
    store: str,
    names: list[str],
    key_type: str,
    csr_fields: dict[str, Any] | None,
    csr_pem: str | None,
    key_staged: bool,
) -> bytes:
    """Produce the CSR to order with; the private key stays in the store's staging folder.

    An uploaded CSR is checked against its staged key. Otherwise the staged (uploaded) key or a
    newly generated key of ``key_type`` signs a CSR built from ``csr_fields``.
    """
    target = stores_from_settings(settings())[store]
    if csr_pem is not None:
        key_pem = target.read_staging_key(request_id)
        parsed = load_csr(csr_pem.encode(), key_pem)
        if sorted(parsed.names) != sorted(names):
            raise errors.InvalidCSR(detail="the CSR's names differ from the requested names")
        progress("uploaded CSR verified against its key")
        return parsed.pem
    if key_staged:
        key_pem = target.read_staging_key(request_id)
        progress(f"using uploaded {key_type_of(load_key(key_pem))} key")
    else:
        key_pem = generate_private_key(key_type)  # type: ignore[arg-type]
        target.write_staging_key(request_id, key_pem)
        progress(f"generated a new {key_type} key")
    fields = CSRFields(**{**(csr_fields or {}), "names": names})
    return build_csr(key_pem, fields)


@dataclass(frozen=True)
class IssuedSet:
    """A certificate the CA issued, with what its store and records need."""

    ca: str
    store: str
    names: list[str]
    issued: IssuedCertificate
    key_pem: bytes | None  # None: keep the key stored in the folder (reuse_key)
    log_id: int
    enrollment: str
    csr_fields: dict[str, Any] | None
    reuse_key: bool = False
    certificate_id: int | None = None  # a renewal updates this certificate
    folder: Path | None = None  # where to store it; default: a new folder or the renewed one's


@dataclass(frozen=True)
class SavedCertificate:
    """Where an issued certificate went."""

    certificate_id: int
    folder: Path
    info: CertificateInfo


@task(name="store_certificate", **STEP)  # type: ignore[call-overload]
def store_certificate(
    *,
    request_id: str | None,
    log_id: int,
    ca: str,
    store: str,
    names: list[str],
    issued: IssuedCertificate,
    enrollment: str,
    csr_fields: dict[str, Any] | None,
    reuse_key: bool = False,
    certificate_id: int | None = None,
) -> int:
    """Write the certificate (and its staged key) into its store and record it.

    For a renewal (``certificate_id``) the same folder is used, the previous version is kept,
    and the database row is updated only after the files are in place.
    """
    target = stores_from_settings(settings())[store]
    key_pem = target.read_staging_key(request_id) if request_id else None
    with db() as s:
        saved = save_issued(
            s,
            IssuedSet(
                ca=ca,
                store=store,
                names=names,
                issued=issued,
                key_pem=key_pem,
                log_id=log_id,
                enrollment=enrollment,
                csr_fields=csr_fields,
                reuse_key=reuse_key,
                certificate_id=certificate_id,
            ),
        )
    if request_id:
        target.discard_staging_key(request_id)
    progress(f"stored in the {store} store: {saved.folder} (certificate {saved.certificate_id})")
    return saved.certificate_id


def save_issued(s: Session, new: IssuedSet) -> SavedCertificate:
    """Write ``new`` into its store, then record it (row, CA issuer names, history) in ``s``.

    The files are in place before any row changes (so no database write lock is held while
    they are fsynced); a renewal keeps the previous version.
    """
    target = stores_from_settings(settings())[new.store]
    info = parse_certificate_pem(new.issued.cert_pem)
    vendor = repo.get_ca(s, new.ca)
    existing = repo.get_certificate(s, new.certificate_id) if new.certificate_id else None
    folder = new.folder or (
        target.folder_for(new.names) if existing is None else Path(existing.folder)
    )
    stored = target.write(
        folder,
        cert_pem=new.issued.cert_pem.encode(),
        chain_pem=new.issued.chain_pem.encode(),
        fullchain_pem=new.issued.fullchain_pem.encode(),
        key_pem=new.key_pem,
        metadata={
            "names": new.names,
            "ca": new.ca,
            "serial": info.serial,
            "not_after": info.not_after.isoformat(),
            "issued_at": dt.datetime.now(dt.UTC).isoformat(),
        },
    )
    # the scan recognises this CA's certificates by the issuer it learns here
    learned = info.issuer_common_name or info.issuer_organization
    repo.add_issuer_names(s, vendor, [learned] if learned else [])
    fields = {
        "store": new.store,
        "folder": str(stored.folder),
        **inventory.certificate_columns(info),
        "ca_vendor_id": vendor.id,
        "issued_by_ca_id": vendor.id,
        "status": "active",
        "failure_count": 0,
        "last_error": None,
        "next_attempt_at": None,
    }
    if existing is None:
        cert = repo.add_certificate(
            s,
            **fields,
            enrollment=new.enrollment,
            csr_fields=new.csr_fields or {},
            reuse_key=new.reuse_key,
            source="acmeflow",
        )
    else:
        cert = repo.update_certificate(s, existing, **fields)
    repo.log_finish(
        s,
        repo.get_log_entry(s, new.log_id),
        status="success",
        message=f"certificate issued, serial {info.serial}",
        serial=info.serial,
        certificate_id=cert.id,
    )
    return SavedCertificate(certificate_id=cert.id, folder=stored.folder, info=info)


def parse_certificate_pem(cert_pem: str) -> CertificateInfo:
    """Parse the leaf certificate PEM the CA returned."""
    return parse_certificate(x509.load_pem_x509_certificate(cert_pem.encode()))


def log_failure(s: Session, log_id: int, exc: BaseException) -> None:
    """Close history entry ``log_id`` as failed with the catalog message and detail of ``exc``."""
    message, detail, root_cause = errors.describe_failure(exc)
    repo.log_finish(
        s,
        repo.get_log_entry(s, log_id),
        status="failed",
        message=message,
        detail=detail,
        root_cause=root_cause,
    )


def _fail(log_id: int, exc: BaseException) -> None:
    with db() as s:
        log_failure(s, log_id, exc)


@task(name="record_failure", **STEP)  # type: ignore[call-overload]
def record_failure(
    log_id: int, error: BaseException, *, store: str | None = None, request_id: str | None = None
) -> None:
    """Mark the history entry failed with the catalog message and detail; drop staged keys."""
    _fail(log_id, error)
    if store and request_id:
        stores_from_settings(settings())[store].discard_staging_key(request_id)
