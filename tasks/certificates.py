"""Prefect tasks around an order: check the request, prepare key and CSR, store, log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from acmeflow.core import errors
from acmeflow.core.acme_client import IssuedCertificate
from acmeflow.core.keys import CSRFields, build_csr, generate_private_key, key_type_of, load_csr
from acmeflow.core.keys import load_private_key as load_key
from acmeflow.core.names import normalize_names
from acmeflow.core.orders import IssuedSet, check_names_ca_and_dns, log_failure, save_issued
from acmeflow.core.state import certificates, history
from acmeflow.core.stores import stores_from_settings
from acmeflow.tasks.common import current_flow_run_id, db, progress, settings

STEP = {"cache_policy": NO_CACHE, "persist_result": False}


@dataclass(frozen=True)
class CheckedRequest:
    """A request that passed every check before anything was ordered."""

    names: list[str]
    log_id: int
    providers: dict[str, str]  # certificate name -> DNS provider name


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
        entry = history.log_start(
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
                existing = certificates.find_identical(s, normalized, checked.ca.id, store)
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
