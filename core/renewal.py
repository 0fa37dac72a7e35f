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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

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


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; a naive time is refused (a what-if clock must say its zone)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given; renewal decisions use aware UTC times")
    return value.astimezone(dt.UTC)


def fallback_due_at(not_after: dt.datetime, renew_days: int) -> dt.datetime:
    """When the configured window opens: ``renew_days`` before ``not_after``."""
    return as_utc(not_after) - dt.timedelta(days=renew_days)


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
    now = as_utc(now)
    if cert.not_after is None:
        return DueDecision(False, None, "unknown", "expiry date unknown")
    not_after = as_utc(cert.not_after)
    if now >= not_after:
        return DueDecision(True, not_after, "expired", f"expired on {not_after:%Y-%m-%d %H:%M}")
    if ari_window is not None and ari_window.valid:
        start, end = as_utc(ari_window.start), as_utc(ari_window.end)
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
    return as_utc(now) + delay


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


def parse_retry_after(value: str | None, now: dt.datetime) -> dt.datetime | None:
    """A ``Retry-After`` header (seconds or HTTP date) as an absolute time from ``now``."""
    if not value:
        return None
    value = value.strip()
    try:
        return as_utc(now) + dt.timedelta(seconds=max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def clamp_retry(when: dt.datetime | None, now: dt.datetime, default: dt.timedelta) -> dt.datetime:
    if when is None:
        return now + default
    return min(max(when, now + ARI_MIN_RETRY), now + ARI_MAX_RETRY)


def _parse_time(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    return as_utc(dt.datetime.fromisoformat(value.replace("z", "Z")))


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
    return as_utc(now) >= as_utc(retry_after)
