"""The ACME account registered at each CA vendor (its key sealed at rest).

Functions over a :class:`~sqlalchemy.orm.Session`: they validate all their input before
changing anything, flush but never commit (the caller's ``session_scope`` does), and raise
catalog errors (:mod:`acmeflow.core.errors`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from acmeflow.core.errors import (
    ConfigError,
)
from acmeflow.core.secrets import SecretBox
from acmeflow.core.state.models import (
    AcmeAccount,
    CAVendor,
    utcnow,
)
from acmeflow.core.state.validation import sealing_box, validate_url


def get_account(s: Session, ca: CAVendor) -> AcmeAccount | None:
    """The ACME account of ``ca`` for its current directory URL (``None`` if none yet)."""
    account = s.scalars(select(AcmeAccount).where(AcmeAccount.ca_vendor_id == ca.id)).one_or_none()
    if account is None or account.directory_url != ca.directory_url:
        return None
    return account


def save_account(
    s: Session,
    ca: CAVendor,
    *,
    account_url: str,
    key_pem: bytes | str,
    contact: str | None,
    key_type: str,
    box: SecretBox | None = None,
) -> AcmeAccount:
    """Record (or replace) the ACME account of ``ca``; the key is stored encrypted."""
    validate_url(account_url, "account_url")
    pem = key_pem.decode("ascii") if isinstance(key_pem, bytes) else key_pem
    if "PRIVATE KEY-----" not in pem:
        raise ConfigError(detail="the account key must be a PEM private key")
    sealed = sealing_box(box).encrypt(pem)
    account = s.scalars(select(AcmeAccount).where(AcmeAccount.ca_vendor_id == ca.id)).one_or_none()
    if account is None:
        account = AcmeAccount(ca_vendor_id=ca.id)
        s.add(account)
    account.directory_url = ca.directory_url
    account.account_url = account_url
    account.contact = contact
    account.key_pem = "enc:" + sealed
    account.key_type = key_type
    account.created_at = utcnow()
    s.flush()
    return account


def account_key_pem(account: AcmeAccount, *, box: SecretBox | None = None) -> bytes:
    """The account's private key PEM (decrypted: keep it in memory only)."""
    return sealing_box(box).unseal(account.key_pem).encode("ascii")
