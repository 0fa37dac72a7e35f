"""From a configured CA vendor to a working ACME session: endpoint, account key, account URL."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from sqlalchemy.orm import Session

from acmeflow.config.settings import Settings
from acmeflow.core import errors
from acmeflow.core.acme_client import AcmeSession, CAEndpoint, check_ca, generate_account_key
from acmeflow.core.files import atomic_write, mkdir_private
from acmeflow.core.keys import key_type_of, load_private_key
from acmeflow.core.secrets import unseal
from acmeflow.core.state import acme_accounts, cas
from acmeflow.core.state.models import CAVendor


def materialize_ca_bundle(pem: str | None, settings: Settings) -> str | None:
    """Write a CA bundle given as PEM text to a stable file and return its path."""
    if not pem:
        return None
    if "-----BEGIN" not in pem:
        path = Path(pem).expanduser()
        if not path.is_file():
            raise errors.ConfigError(detail=f"CA bundle {pem} is not a file")
        return str(path)
    mkdir_private(settings.home)
    folder = settings.home / "ca-bundles"
    mkdir_private(folder, 0o755)  # public CA certificates, read by whoever runs acmeflow
    path = folder / (hashlib.sha256(pem.encode()).hexdigest()[:16] + ".pem")
    if not path.exists():
        atomic_write(path, pem, mode=0o644)
    return str(path)


def endpoint_for(ca: CAVendor, settings: Settings) -> CAEndpoint:
    """The ACME endpoint of a configured CA vendor (EAB key unsealed for registration)."""
    return CAEndpoint(
        directory_url=ca.directory_url,
        ca_bundle=materialize_ca_bundle(ca.ca_bundle, settings),
        eab_kid=ca.eab_kid,
        eab_hmac_key=unseal(ca.eab_hmac_key) if ca.eab_hmac_key else None,
        profile=ca.profile,
        preferred_chain=ca.preferred_chain,
        timeout=min(CAEndpoint.timeout, settings.acme_timeout),
    )


def register_account(
    s: Session, ca: CAVendor, settings: Settings, *, existing_key_pem: bytes | None = None
) -> str:
    """Check the CA answers, then register (or find) the ACME account and save it.

    Returns the account URL. Reuses the stored key for the same directory, so editing a CA
    keeps its account; a new directory gets a new account.
    """
    endpoint = endpoint_for(ca, settings)
    check_ca(endpoint)
    stored = acme_accounts.get_account(s, ca)
    key_pem = existing_key_pem
    if key_pem is None and stored is not None and stored.directory_url == ca.directory_url:
        key_pem = acme_accounts.account_key_pem(stored)
    if key_pem is None:
        key_pem = generate_account_key()
    session = AcmeSession(endpoint, key_pem, poll_interval=settings.acme_poll_interval)
    account = session.register(ca.email)
    acme_accounts.save_account(
        s,
        ca,
        account_url=account.url,
        key_pem=key_pem,
        contact=ca.email,
        key_type=key_type_of(load_private_key(key_pem)),
    )
    return account.url


_thread_sessions = threading.local()


def open_session(s: Session, ca_name: str, settings: Settings) -> AcmeSession:
    """An ACME session for the named CA vendor's stored account (registering if needed).

    Sessions are reused within a thread while the CA vendor and its account are unchanged, so
    the steps of one order (and the orders of one worker thread) share nonces and connections
    instead of decrypting the key and fetching a fresh nonce for every step.
    """
    return session_for_ca(s, cas.get_ca(s, ca_name), settings)


def session_for_ca(s: Session, ca: CAVendor, settings: Settings) -> AcmeSession:
    """:func:`open_session` for a CA vendor row already loaded in ``s``."""
    account = acme_accounts.get_account(s, ca)
    if account is None or account.directory_url != ca.directory_url:
        register_account(s, ca, settings)
        account = acme_accounts.get_account(s, ca)
        assert account is not None
    cache: dict[tuple[str, int], tuple[object, AcmeSession]] = getattr(
        _thread_sessions, "by_ca", {}
    )
    _thread_sessions.by_ca = cache
    slot = (settings.resolved_database_url, ca.id)
    version = (ca.updated_at, account.account_url, settings.acme_poll_interval)
    cached = cache.get(slot)
    if cached is not None and cached[0] == version:
        return cached[1]
    session = AcmeSession(
        endpoint_for(ca, settings),
        acme_accounts.account_key_pem(account),
        account_url=account.account_url,
        poll_interval=settings.acme_poll_interval,
    )
    cache[slot] = (version, session)
    return session
