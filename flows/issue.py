"""Flow ``issue``: a new certificate for a list of names, end to end (F5)."""

import uuid
from typing import Any, Literal

from prefect import flow

from acmeflow.core.keys import DEFAULT_KEY_TYPE
from acmeflow.core.pipeline import OrderItem
from acmeflow.flows.deploy import deploy_after_store
from acmeflow.flows.pipeline import run_sequence
from acmeflow.tasks.certificates import check_request, record_failure
from acmeflow.tasks.deploy import check_targets
from acmeflow.tasks.pipeline import open_issue


@flow(name="issue", log_prints=False)
def issue(
    ca: str,
    names: list[str],
    key_type: Literal["ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"] = DEFAULT_KEY_TYPE,
    store: Literal["certificate", "zero-touch"] = "certificate",
    auto_renew: bool = False,
    csr_fields: dict[str, Any] | None = None,
    csr_pem: str | None = None,
    request_id: str | None = None,
    targets: list[str] | None = None,
) -> int:
    """Issue a certificate for ``names`` from the CA vendor ``ca`` and store it.

    Parameters name configured objects only. An uploaded key (and CSR) is staged in the store by
    the caller under ``request_id`` beforehand; without one a new ``key_type`` key is generated.
    ``targets`` names configured deploy targets to bind the new certificate to; a zero-touch
    certificate is then deployed to its targets at once (a failed deployment is recorded in the
    history but does not fail the issuance). Returns the certificate id.

    Args:
        ca: The configured CA vendor to order from (`acmeflow ca list`).
        names: The certificate's DNS names, wildcards included (e.g. example.com, *.example.com);
            each must be under a domain mapped to an active DNS provider.
        key_type: The type of the new private key (ignored with an uploaded key or CSR).
        store: Where the certificate goes: the certificate store (deployed by hand) or the
            zero-touch store (deployed to its targets automatically).
        auto_renew: Renew it automatically when its renewal window opens.
        csr_fields: Subject fields of the CSR: common_name, organization, unit, locality,
            state, country, email.
        csr_pem: Internal: an uploaded CSR, checked against the key staged under request_id.
        request_id: Internal: the id under which the CLI staged an uploaded key.
        targets: Configured deploy targets to bind the new certificate to.
    """
    checked = check_request(kind="issue", ca=ca, names=names, store=store)
    key_staged = request_id is not None
    request_id = request_id or uuid.uuid4().hex
    try:
        if targets:
            check_targets(targets)
    except BaseException as exc:
        record_failure(
            checked.log_id, exc, store=store, request_id=request_id if key_staged else None
        )
        raise
    item = OrderItem(
        ref=request_id,
        ca=ca,
        names=checked.names,
        store=store,
        log_id=checked.log_id,
        key_type=key_type,
        csr_fields=csr_fields or {},
        enrollment="auto" if auto_renew else "manual",
        key_staged=key_staged,
        uploaded_csr=csr_pem,
    )
    run_sequence(open_issue(item))
    if item.error is not None:
        raise item.error
    assert item.saved is not None
    deploy_after_store(item.saved.certificate_id, targets=targets)
    return item.saved.certificate_id
