"""Flow ``issue``: a new certificate for a list of names, end to end (F5)."""

import uuid
from contextlib import ExitStack
from typing import Any, Literal

from acmeflow.core.keys import DEFAULT_KEY_TYPE, CSRFields
from acmeflow.core.pipeline import OrderItem
from acmeflow.flows.deploy import deploy_after_store
from acmeflow.flows.hooks import acmeflow_flow
from acmeflow.flows.pipeline import run_sequence
from acmeflow.tasks.certificates import check_request, record_failure
from acmeflow.tasks.deploy import check_targets
from acmeflow.tasks.limits import ca_slots
from acmeflow.tasks.pipeline import open_issue

KeyTypeName = Literal["ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"]
StoreName = Literal["certificate", "zero-touch"]


@acmeflow_flow("issue")
def issue(
    ca: str,
    names: list[str],
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
) -> int:
    """Issue a certificate for ``names`` from the CA vendor ``ca`` and store it.

    Parameters name configured objects only; a new ``key_type`` key is generated. ``targets``
    names configured deploy targets to bind the new certificate to; a zero-touch certificate
    is then deployed to its targets at once (a failed deployment is recorded in the history
    but does not fail the issuance). Returns the certificate id.

    Args:
        ca: The configured CA vendor to order from (`acmeflow ca list`).
        names: The certificate's DNS names, wildcards included (e.g. example.com, *.example.com);
            each must be under a domain mapped to an active DNS provider.
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
    return _issue(ca, names, key_type, store, auto_renew, csr_fields, None, None, targets)


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
    CSRFields(**csr_fields, names=names)  # bad subject fields: refused before anything else
    checked = check_request(kind="issue", ca=ca, names=names, store=store)
    key_staged = request_id is not None
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
