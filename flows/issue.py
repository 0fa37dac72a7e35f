"""Flow ``issue``: a new certificate for a list of names, end to end (F5)."""

import uuid
from contextlib import ExitStack
from typing import Any, Literal

from acmeflow.core import errors
from acmeflow.core.keys import DEFAULT_KEY_TYPE, CSRFields
from acmeflow.core.pipeline import OrderItem
from acmeflow.core.uploads import KEY_REFERENCES
from acmeflow.flows.deploy import deploy_after_store
from acmeflow.flows.hooks import acmeflow_flow
from acmeflow.flows.pipeline import run_sequence
from acmeflow.tasks.certificates import (
    check_request,
    discard_staged_key,
    record_failure,
    stage_pasted_csr,
)
from acmeflow.tasks.deploy import check_targets
from acmeflow.tasks.limits import ca_slots
from acmeflow.tasks.pipeline import open_issue

KeyTypeName = Literal["ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"]
StoreName = Literal["certificate", "zero-touch"]


@acmeflow_flow("issue")
def issue(
    ca: str,
    names: list[str] | None = None,
    key_type: KeyTypeName = DEFAULT_KEY_TYPE,
    store: StoreName = "certificate",
    auto_renew: bool = False,
    common_name: str | None = None,
    organization: str | None = None,
    organizational_unit: str | None = None,
    locality: str | None = None,
    state: str | None = None,
    country: str | None = None,
    email: str | None = None,
    targets: list[str] | None = None,
    csr: str | None = None,
    csr_key: str | None = None,
) -> int:
    """Issue a certificate for ``names`` from the CA vendor ``ca`` and store it.

    Parameters name configured objects only; a new ``key_type`` key is generated, unless a
    CSR is pasted: then its private key is read from where ``csr_key`` says, checked against
    the CSR and used (the subject fields and key type come from the CSR). ``targets``
    names configured deploy targets to bind the new certificate to; a zero-touch certificate
    is then deployed to its targets at once (a failed deployment is recorded in the history
    but does not fail the issuance). Returns the certificate id.

    Args:
        ca: The configured CA vendor to order from (`acmeflow ca list`).
        names: The certificate's DNS names, wildcards included (e.g. example.com, *.example.com);
            each must be under a domain mapped to an active DNS provider. Required unless a
            CSR is pasted (then empty: the CSR's names; else they must be the CSR's).
        key_type: The type of the new private key.
        store: Where the certificate goes: the certificate store (deployed by hand) or the
            zero-touch store (deployed to its targets automatically).
        auto_renew: Renew it automatically when its renewal window opens.
        common_name: Subject CN (CN); one of the names, the first one when empty.
        organization: Subject organization (O).
        organizational_unit: Subject organizational unit (OU).
        locality: Subject locality or city (L).
        state: Subject state or province (ST).
        country: Subject country (C), two letters (e.g. DE).
        email: Subject email address.
        targets: Configured deploy targets to bind the new certificate to.
        csr: A certificate signing request (PEM) to issue for instead of a new key; checked
            against its private key before anything is ordered. Needs csr_key.
        csr_key: Where the pasted CSR's private key is, read by the worker:
            prefect-block:NAME (a Prefect Secret block holding the PEM), file:PATH or
            env:NAME. Never the key itself: a form's values are stored in plain text.
    """
    fields = {
        "common_name": common_name,
        "organization": organization,
        "organizational_unit": organizational_unit,
        "locality": locality,
        "state": state,
        "country": country,
        "email": email,
    }
    csr_fields = {k: v for k, v in fields.items() if v}
    if not (csr or csr_key):
        if not names:
            raise errors.InvalidDomainName(detail="give at least one name (or paste a CSR)")
        return _issue(ca, names, key_type, store, auto_renew, csr_fields, None, None, targets)
    if not (csr and csr_key):
        raise errors.InvalidCSR(
            detail=f"a pasted CSR needs csr_key, where its private key is ({KEY_REFERENCES})"
            if csr
            else "csr_key is set but no CSR is pasted"
        )
    request_id, ordered = stage_pasted_csr(
        store=store, csr_pem=csr, key_ref=csr_key, names=list(names or [])
    )
    return _issue(ca, ordered, key_type, store, auto_renew, {}, csr, request_id, targets)


@acmeflow_flow("issue")
def issue_uploaded(
    ca: str,
    names: list[str],
    request_id: str | None = None,
    key_type: KeyTypeName = DEFAULT_KEY_TYPE,
    store: StoreName = "certificate",
    auto_renew: bool = False,
    csr_fields: dict[str, Any] | None = None,
    csr_pem: str | None = None,
    targets: list[str] | None = None,
) -> int:
    """The ``issue`` flow with a private key (and CSR) the CLI staged in the store under
    ``request_id`` beforehand (``acmeflow issue --key/--csr``). Never deployed: a form has no
    staged key to name."""
    return _issue(
        ca, names, key_type, store, auto_renew, csr_fields or {}, csr_pem, request_id, targets
    )


def _issue(
    ca: str,
    names: list[str],
    key_type: str,
    store: str,
    auto_renew: bool,
    csr_fields: dict[str, Any],
    csr_pem: str | None,
    request_id: str | None,
    targets: list[str] | None,
) -> int:
    key_staged = request_id is not None
    try:
        CSRFields(**csr_fields, names=names)  # bad subject fields: refused before anything else
        checked = check_request(kind="issue", ca=ca, names=names, store=store)
    except BaseException:
        if request_id is not None:
            discard_staged_key(store, request_id)
        raise
    request_id = request_id or uuid.uuid4().hex
    item = OrderItem(
        ref=request_id,
        ca=ca,
        names=checked.names,
        store=store,
        log_id=checked.log_id,
        key_type=key_type,
        csr_fields=csr_fields,
        enrollment="auto" if auto_renew else "manual",
        key_staged=key_staged,
        uploaded_csr=csr_pem,
    )
    with ExitStack() as slot:
        try:
            if targets:
                check_targets(targets)
            slot.enter_context(ca_slots(ca, 1))  # the CA's pool-wide limits, if any
        except BaseException as exc:
            record_failure(
                checked.log_id, exc, store=store, request_id=request_id if key_staged else None
            )
            raise
        run_sequence(open_issue(item))
    if item.error is not None:
        raise item.error
    assert item.saved is not None
    deploy_after_store(item.saved.certificate_id, targets=targets)
    return item.saved.certificate_id
