"""Renewal decisions (F6): when a certificate is due, how long a failed one waits, and the
CA's ACME Renewal Information (RFC 9773).

Everything here takes the current time as a parameter (``now``), so tests and what-if runs
use any clock. A certificate is due:

* when it has expired;
* otherwise, when the CA offers ARI and answered for this certificate: once the CA's
  suggested window has opened (inside it, or after it: overdue);
* otherwise ``renew_days`` before ``not_after`` (the CA vendor's renewal window).

A failed renewal waits before the next attempt: 5 minutes, doubling per consecutive failure up
to 24 hours, shortened by a bounded random jitter (so failures spread out but never wait longer
than the cap), and never less than a ``Retry-After`` the CA asked for.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import requests
from acme import messages

from acmeflow.core import errors
from acmeflow.core.acme_client import USER_AGENT, CAEndpoint, fetch_directory

BACKOFF_BASE = dt.timedelta(minutes=5)
BACKOFF_CAP = dt.timedelta(hours=24)
BACKOFF_JITTER = 0.1  # a delay is shortened by up to 10 %
ARI_DEFAULT_RETRY = dt.timedelta(hours=6)  # RFC 9773 4.3: no Retry-After -> ask again later
ARI_MIN_RETRY = dt.timedelta(minutes=1)  # clamp a CA's Retry-After to sane bounds
ARI_MAX_RETRY = dt.timedelta(days=1)
ARI_ERROR_RETRY = dt.timedelta(hours=1)  # after an ARI error, renew_days decides meanwhile

DueSource = Literal["ari", "renew_days", "expired", "unknown"]


class RenewableCertificate(Protocol):
    """What a due decision needs of a certificate (``core.state.models.Certificate`` fits)."""

    @property
    def not_after(self) -> dt.datetime | None: ...


class RenewalCA(Protocol):
    """What a due decision needs of a CA vendor (``core.state.models.CAVendor`` fits)."""

    @property
    def renew_days(self) -> int: ...


@dataclass(frozen=True)
class AriWindow:
    """The CA's suggested renewal window (RFC 9773 ``suggestedWindow``)."""

    start: dt.datetime
    end: dt.datetime
    explanation_url: str | None = None

    @property
    def valid(self) -> bool:
        """A window whose end is after its start (RFC 9773 4.2: otherwise ignore it)."""
        return self.end > self.start


@dataclass(frozen=True)
class DueDecision:
    """Whether a certificate is due now, from when, and why (truthy when due)."""

    due: bool
    due_at: dt.datetime | None
    source: DueSource
    reason: str

    def __bool__(self) -> bool:
        return self.due


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given; renewal decisions use aware UTC times")
    return value.astimezone(dt.UTC)


def fallback_due_at(not_after: dt.datetime, renew_days: int) -> dt.datetime:
    """When the configured window opens: ``renew_days`` before ``not_after``."""
    return _aware(not_after) - dt.timedelta(days=renew_days)


def is_due(
    cert: RenewableCertificate,
    ca: RenewalCA,
    ari_window: AriWindow | None,
    now: dt.datetime,
) -> DueDecision:
    """Whether ``cert`` is due for renewal at ``now`` under ``ca`` (see the module doc).

    ``ari_window`` is the CA's answer for this certificate, or ``None`` when the CA has no ARI
    or ARI failed (then ``renew_days`` decides). An invalid window is ignored.
    """
    now = _aware(now)
    if cert.not_after is None:
        return DueDecision(False, None, "unknown", "expiry date unknown")
    not_after = _aware(cert.not_after)
    if now >= not_after:
        return DueDecision(True, not_after, "expired", f"expired on {not_after:%Y-%m-%d %H:%M}")
    if ari_window is not None and ari_window.valid:
        start, end = _aware(ari_window.start), _aware(ari_window.end)
        if now < start:
            return DueDecision(False, start, "ari", f"ARI window opens {start:%Y-%m-%d %H:%M}")
        if now < end:
            return DueDecision(
                True, start, "ari", f"inside the ARI window (ends {end:%Y-%m-%d %H:%M})"
            )
        return DueDecision(True, start, "ari", f"past the ARI window (ended {end:%Y-%m-%d %H:%M})")
    due_at = fallback_due_at(not_after, ca.renew_days)
    if now >= due_at:
        return DueDecision(True, due_at, "renew_days", f"within {ca.renew_days} days of expiry")
    return DueDecision(False, due_at, "renew_days", f"due {due_at:%Y-%m-%d %H:%M}")


# --- backoff -----------------------------------------------------------------------------------


def backoff_delay(failures: int, *, rand: Callable[[], float] = random.random) -> dt.timedelta:
    """How long to wait after ``failures`` consecutive failures (``failures >= 1``).

    ``BACKOFF_BASE * 2**(failures-1)`` capped at ``BACKOFF_CAP``, then shortened by a jitter of
    at most ``BACKOFF_JITTER`` (``rand()`` in [0, 1)): the result lies in [0.9 d, d].
    """
    if failures < 1:
        return dt.timedelta(0)
    exponent = min(failures - 1, 32)  # 2**32 * 5 min is far past the cap already
    delay = min(BACKOFF_BASE * (2**exponent), BACKOFF_CAP)
    return delay * (1.0 - BACKOFF_JITTER * min(max(rand(), 0.0), 1.0))


def next_attempt_at(
    now: dt.datetime,
    failures: int,
    *,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> dt.datetime:
    """When a certificate that just failed for the ``failures``-th time may be tried again:
    the backoff delay, or the CA's ``Retry-After`` (seconds) when that is longer."""
    delay = backoff_delay(failures, rand=rand)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, dt.timedelta(seconds=retry_after))
    return _aware(now) + delay


# --- ACME Renewal Information (RFC 9773) -------------------------------------------------------


@dataclass(frozen=True)
class AriResult:
    """The outcome of one ``renewalInfo`` request.

    ``supported`` is False when the CA's directory has no ``renewalInfo``; ``window`` is None
    when the CA offers none for this certificate or the request failed (``error`` says why);
    ``retry_after`` is when to ask again.
    """

    supported: bool
    window: AriWindow | None
    checked_at: dt.datetime
    retry_after: dt.datetime | None
    error: str | None = None


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


def parse_retry_after(value: str | None, now: dt.datetime) -> dt.datetime | None:
    """A ``Retry-After`` header (seconds or HTTP date) as an absolute time from ``now``."""
    if not value:
        return None
    value = value.strip()
    try:
        return _aware(now) + dt.timedelta(seconds=max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _clamp_retry(when: dt.datetime | None, now: dt.datetime, default: dt.timedelta) -> dt.datetime:
    if when is None:
        return now + default
    return min(max(when, now + ARI_MIN_RETRY), now + ARI_MAX_RETRY)


def _parse_time(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    return _aware(dt.datetime.fromisoformat(value.replace("z", "Z")))


def parse_renewal_info(body: object) -> AriWindow:
    """The ``suggestedWindow`` of a renewalInfo JSON body (``ValueError`` when malformed)."""
    if not isinstance(body, dict):
        raise ValueError("the renewalInfo answer is not a JSON object")
    window = body.get("suggestedWindow")
    if not isinstance(window, dict):
        raise ValueError("the renewalInfo answer has no suggestedWindow")
    explanation = body.get("explanationURL")
    return AriWindow(
        start=_parse_time(window.get("start")),
        end=_parse_time(window.get("end")),
        explanation_url=explanation if isinstance(explanation, str) else None,
    )


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
    now = _aware(now)
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
            _clamp_retry(retry, now, ARI_ERROR_RETRY),
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
    return AriResult(True, window, now, _clamp_retry(retry, now, ARI_DEFAULT_RETRY))


def ari_check_needed(
    ari_cert_id: str | None,
    checked_at: dt.datetime | None,
    retry_after: dt.datetime | None,
    now: dt.datetime,
) -> bool:
    """Whether to ask the CA again: never asked, or its ``Retry-After`` time has come."""
    if not ari_cert_id:
        return False
    if checked_at is None or retry_after is None:
        return True
    return _aware(now) >= _aware(retry_after)
