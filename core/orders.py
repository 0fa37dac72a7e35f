"""The domain steps around an order that are not ACME: the checks every request passes
before anything is ordered, and recording what the CA issued (store files, certificate row,
CA issuer names, history). Plain functions on a session: the Prefect tasks of ``issue`` and
``renew`` wrap them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from acmeflow.config.settings import get_settings
from acmeflow.core import errors
from acmeflow.core.acme_client import IssuedCertificate
from acmeflow.core.certinfo import CertificateInfo, parse_certificate
from acmeflow.core.names import check_name_count, normalize_names
from acmeflow.core.state import cas, certificates, history, inventory, provider_index
from acmeflow.core.state.models import CAVendor, Certificate
from acmeflow.core.state.provider_index import ProviderIndex
from acmeflow.core.storage import stores_from_settings
from acmeflow.core.stores import STORE_KINDS


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
    vendor = cas.get_ca(s, ca)
    check_name_count(
        normalized, ca=vendor.name, vendor=vendor.vendor, default_limit=get_settings().max_names
    )
    index = provider_index.provider_index(s)
    return NamesCaAndDns(normalized, vendor, index.providers_for(normalized), index)


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


def save_issued(
    s: Session, new: IssuedSet, before_commit: Callable[[int], None] | None = None
) -> SavedCertificate:
    """Write ``new`` into its store, record it (row, CA issuer names, history, and what
    ``before_commit(certificate_id)`` adds to ``s``) and commit ``s``.

    In the directory backend the files switch first (no database write lock is held while
    they are fsynced), then the rows are written and committed; when the commit fails (a full
    disk, a lost database) the files switch back, so files and rows always agree. In the
    database backend the new version and the rows are one transaction. A renewal keeps the
    previous version.
    """
    target = stores_from_settings(get_settings())[new.store]
    info = parse_certificate_pem(new.issued.cert_pem)
    vendor = cas.get_ca(s, new.ca)
    existing = certificates.get_certificate(s, new.certificate_id) if new.certificate_id else None
    folder = new.folder or (
        target.folder_for(new.names) if existing is None else Path(existing.folder)
    )
    try:
        with target.replacing(
            folder,
            session=s,
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
        ) as stored:
            cert_id = _record_issued(s, new, vendor, existing, info, stored)
            if before_commit is not None:
                before_commit(cert_id)
            s.commit()
    except OSError as exc:
        raise errors.DiskWriteFailed(detail=f"{exc.filename or folder}: {exc.strerror}") from exc
    except SQLAlchemyError as exc:
        s.rollback()
        raise errors.DiskWriteFailed(
            detail=f"the database: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"
        ) from exc
    return SavedCertificate(certificate_id=cert_id, folder=stored, info=info)


def _record_issued(
    s: Session,
    new: IssuedSet,
    vendor: CAVendor,
    existing: Certificate | None,
    info: CertificateInfo,
    folder: Path,
) -> int:
    """The rows of a stored certificate: its record, the CA's issuer names, the history."""
    # the scan recognises this CA's certificates by the issuer it learns here
    learned = info.issuer_common_name or info.issuer_organization
    cas.add_issuer_names(s, vendor, [learned] if learned else [])
    fields = {
        "store": new.store,
        "folder": str(folder),
        **inventory.certificate_columns(info),
        "ca_vendor_id": vendor.id,
        "issued_by_ca_id": vendor.id,
        "status": "active",
        "failure_count": 0,
        "last_error": None,
        "next_attempt_at": None,
    }
    if existing is None:
        cert = certificates.add_certificate(
            s,
            **fields,
            enrollment=new.enrollment,
            csr_fields=new.csr_fields or {},
            reuse_key=new.reuse_key,
            source="acmeflow",
        )
    else:
        cert = certificates.update_certificate(s, existing, **fields)
    history.log_finish(
        s,
        history.get_log_entry(s, new.log_id),
        status="success",
        message=f"certificate issued, serial {info.serial}",
        serial=info.serial,
        certificate_id=cert.id,
    )
    return cert.id


def parse_certificate_pem(cert_pem: str) -> CertificateInfo:
    """Parse the leaf certificate PEM the CA returned."""
    return parse_certificate(x509.load_pem_x509_certificate(cert_pem.encode()))


def log_failure(s: Session, log_id: int, exc: BaseException, *, step: str | None = None) -> None:
    """Close history entry ``log_id`` as failed with the catalog message and detail of ``exc``
    (the detail starts with the pipeline ``step`` that failed, when given)."""
    message, detail, root_cause = errors.describe_failure(exc)
    if step:
        detail = f"at {step}: {detail}" if detail else f"at {step}"
    history.log_finish(
        s,
        history.get_log_entry(s, log_id),
        status="failed",
        message=message,
        detail=detail,
        root_cause=root_cause,
    )
