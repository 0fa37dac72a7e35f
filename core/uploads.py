"""A private key (and CSR) a user brings: checked, then staged in the store's private staging
area before anything is ordered, under a new request id the issuance then names."""

from __future__ import annotations

import uuid

from acmeflow.core import errors
from acmeflow.core.keys import ParsedCSR, load_csr, load_private_key, private_key_pem
from acmeflow.core.names import normalize_names
from acmeflow.core.secrets import is_ref, resolve_ref
from acmeflow.core.storage import Store

#: Where a CSR pasted into a form finds its private key (never the key itself).
KEY_REFERENCES = "prefect-block:NAME (a Prefect Secret block), file:PATH or env:NAME"


def stage_upload(
    store: Store,
    key_data: bytes,
    *,
    passphrase: bytes | None = None,
    csr_data: bytes | None = None,
) -> tuple[str, ParsedCSR | None]:
    """Stage the private key in ``key_data`` (a CSR, when given, must be signed by it):
    its request id and the parsed CSR. Nothing is staged when either is refused."""
    key_pem = private_key_pem(load_private_key(key_data, passphrase))
    parsed = load_csr(csr_data, key_pem) if csr_data is not None else None
    request_id = uuid.uuid4().hex
    store.write_staging_key(request_id, key_pem)
    return request_id, parsed


def stage_pasted_csr(
    store: Store, csr_pem: str, key_ref: str, names: list[str]
) -> tuple[str, list[str]]:
    """A CSR pasted into a form and the reference to its private key: both checked (the key
    matches the CSR; the CSR's names are ``names`` when any are given), then the key staged.
    Returns the request id and the names to order."""
    if not is_ref(key_ref.strip()):
        raise errors.InvalidKey(
            detail=f"csr_key says where the CSR's private key is: {KEY_REFERENCES}; "
            "never the key itself: a form's values are stored in plain text with the run"
        )
    csr = load_csr(csr_pem.encode())  # a bad CSR is refused before the key is read
    if names and sorted(normalize_names(names)) != sorted(csr.names):
        raise errors.InvalidCSR(
            detail=f"the CSR is for {', '.join(csr.names)}, not for the names given "
            f"({', '.join(names)}); leave names empty to order the CSR's"
        )
    key_data = resolve_ref(key_ref.strip()).encode()
    request_id, _ = stage_upload(store, key_data, csr_data=csr_pem.encode())
    return request_id, csr.names
