"""ACME Renewal Information (RFC 9773) over HTTP: whether a CA offers it and its suggested
window for one certificate. The decisions that use the answer are in :mod:`renewal`, which
needs no HTTP stack (the CLI's listing commands import it)."""

from __future__ import annotations

import datetime as dt
import threading

import requests
from acme import messages

from acmeflow.core import errors
from acmeflow.core.acme_client import USER_AGENT, CAEndpoint, fetch_directory
from acmeflow.core.renewal import (
    ARI_DEFAULT_RETRY,
    ARI_ERROR_RETRY,
    AriResult,
    as_utc,
    clamp_retry,
    parse_renewal_info,
    parse_retry_after,
)


def renewal_info_url(directory: messages.Directory) -> str | None:
    """The ``renewalInfo`` base URL of a directory, or ``None`` when the CA has no ARI."""
    try:
        url = directory["renewalInfo"]
    except KeyError:
        return None
    return str(url) if url else None


def ca_offers_ari(endpoint: CAEndpoint) -> bool:
    """Whether the CA's (cached) directory has ``renewalInfo``; an unreachable CA has not."""
    try:
        return renewal_info_url(fetch_directory(endpoint)) is not None
    except errors.AcmeflowError:
        return False


_http = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_http, "session", None)
    if session is None:
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        _http.session = session
    return session


def fetch_renewal_info(endpoint: CAEndpoint, ari_cert_id: str, now: dt.datetime) -> AriResult:
    """Ask the CA for its suggested window for the certificate ``ari_cert_id``.

    Never raises for CA trouble: a CA without ARI gives ``supported=False``; a network error,
    an HTTP error or a malformed answer gives ``window=None`` with ``error`` set and a later
    ``retry_after`` (the CA's ``Retry-After`` when it sent one), so callers fall back to
    ``renew_days``. ``Retry-After`` of a good answer is clamped to [1 minute, 1 day].
    """
    now = as_utc(now)
    try:
        base = renewal_info_url(fetch_directory(endpoint))
    except errors.AcmeflowError as exc:
        return AriResult(True, None, now, now + ARI_ERROR_RETRY, f"directory: {exc.detail}")
    if base is None:
        return AriResult(False, None, now, None)
    url = f"{base.rstrip('/')}/{ari_cert_id}"
    try:
        response = _session().get(url, verify=endpoint.verify, timeout=endpoint.timeout)
    except requests.RequestException as exc:
        return AriResult(True, None, now, now + ARI_ERROR_RETRY, f"{type(exc).__name__}: {exc}")
    retry = parse_retry_after(response.headers.get("Retry-After"), now)
    if response.status_code != 200:
        return AriResult(
            True,
            None,
            now,
            clamp_retry(retry, now, ARI_ERROR_RETRY),
            f"HTTP {response.status_code} from {url}: {response.text[:300]}",
        )
    try:
        window = parse_renewal_info(response.json())
    except ValueError as exc:
        return AriResult(True, None, now, now + ARI_ERROR_RETRY, f"{url}: {exc}")
    if not window.valid:
        return AriResult(
            True, None, now, now + ARI_ERROR_RETRY, f"{url}: the window ends before it starts"
        )
    return AriResult(True, window, now, clamp_retry(retry, now, ARI_DEFAULT_RETRY))
