"""Flow ``issue``: a new certificate for a list of names, end to end (F5)."""

import uuid
from typing import Any, Literal

from prefect import flow

from acmeflow.core.keys import DEFAULT_KEY_TYPE
from acmeflow.flows.deploy import deploy_after_store
from acmeflow.tasks.acme import (
    add_txt_records,
    answer_challenges,
    await_propagation,
    cleanup_txt_records,
    finalize_order,
    place_order,
    plan_txt_records,
)
from acmeflow.tasks.certificates import (
    check_request,
    prepare_key_and_csr,
    record_failure,
    store_certificate,
)
from acmeflow.tasks.common import order_timeouts
from acmeflow.tasks.deploy import check_targets


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
    records: list[Any] = []
    try:
        if targets:
            check_targets(targets)
        csr = prepare_key_and_csr(
            request_id=request_id,
            store=store,
            names=checked.names,
            key_type=key_type,
            csr_fields=csr_fields,
            csr_pem=csr_pem,
            key_staged=key_staged,
        )
        deadline = order_timeouts().deadline()  # one deadline for every step and retry
        order, challenges = place_order(ca, csr, deadline)
        try:
            records = plan_txt_records(challenges)
            add_txt_records(records)
            await_propagation(records, deadline)
            answer_challenges(ca, challenges, deadline)
            issued = finalize_order(ca, order, deadline)
        finally:
            cleanup_txt_records(records)
        cert_id: int = store_certificate(
            request_id=request_id,
            log_id=checked.log_id,
            ca=ca,
            store=store,
            names=checked.names,
            issued=issued,
            enrollment="auto" if auto_renew else "manual",
            csr_fields=csr_fields,
        )
    except BaseException as exc:
        record_failure(checked.log_id, exc, store=store, request_id=request_id)
        raise
    deploy_after_store(cert_id, targets=targets)
    return cert_id
