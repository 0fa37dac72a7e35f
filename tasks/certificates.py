"""Prefect tasks around an order: check the request before anything is ordered, record a
failure met outside the issuance steps."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from acmeflow.core import errors, uploads
from acmeflow.core.names import normalize_names
from acmeflow.core.orders import check_names_ca_and_dns, log_failure
from acmeflow.core.state import certificates, history
from acmeflow.core.storage import stores_from_settings
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
        _discard(store, request_id)


@task(name="discard_staged_key", **STEP)  # type: ignore[call-overload]
def discard_staged_key(store: str, request_id: str) -> None:
    """Remove the key staged under ``request_id`` (an order that will not be placed)."""
    _discard(store, request_id)


def _discard(store: str, request_id: str) -> None:
    stores_from_settings(settings())[store].discard_staging_key(request_id)


@task(name="stage_pasted_csr", **STEP)  # type: ignore[call-overload]
def stage_pasted_csr(
    *, store: str, csr_pem: str, key_ref: str, names: list[str]
) -> tuple[str, list[str]]:
    """Check a CSR pasted into the form against the key its reference points to, then stage
    that key: the request id and the names to order (nothing is ordered or logged before)."""
    request_id, ordered = uploads.stage_pasted_csr(
        stores_from_settings(settings())[store], csr_pem, key_ref, names
    )
    progress(f"pasted CSR verified against its key: {', '.join(ordered)}")
    return request_id, ordered
