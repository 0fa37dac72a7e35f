"""How often each CA vendor's ``renew-<ca>`` deployment checks for due certificates (F9).

Pure functions, no Prefect, no database. The rule:

1. **Lifetime** ``L`` of the CA's certificates: the shortest ``not_after - not_before`` among
   the CA's active certificates in the database when there is one (a CA may issue several
   profiles; the schedule must serve the shortest-lived); otherwise the usual lifetime of the
   vendor preset and ACME profile (:func:`preset_lifetime`: Let's Encrypt 90 days, ``tlsserver``
   45 days, ``shortlived`` 160 hours, ZeroSSL and Google 90 days); otherwise unknown.
2. **Window** ``W`` in which a renewal must happen: ``renew_days`` days, but at most ``L / 3``
   (renewing in the last third of a lifetime is the longest useful window: a ``renew_days``
   longer than that does not slow the checks down), and at most the narrowest ARI suggested
   window (RFC 9773) the CA gave for one of its certificates.
3. **Interval** = ``W / 8`` (at least eight checks fall inside every window, so a renewal that
   fails a few times, with the renewal backoff between attempts, still lands before expiry),
   clamped to **1 h .. 24 h**, then rounded *down* to a divisor of a day (1, 2, 3, 4, 6, 8, 12 or
   24 hours) so checks happen at the same clock times every day.

Examples: a 90-day Let's Encrypt certificate with ``renew_days`` 30 is checked daily
(W = 30 d, W/8 = 90 h, capped at 24 h); a 160-hour ``shortlived`` one every 6 hours
(W = L/3 = 53.3 h, W/8 = 6.7 h, rounded down to 6 h); ``renew_days`` 1 on an unknown-lifetime
private CA every 3 hours.

Each schedule is anchored at midnight UTC plus a stable per-deployment offset of 0-59 minutes
(:func:`anchor_for`), so several CAs (and the daily ``scan`` and ``sweep``) do not all start in the
same minute.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from typing import Literal

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
MIN_INTERVAL = HOUR
MAX_INTERVAL = DAY
CHECKS_PER_WINDOW = 8
LIFETIME_FRACTION = 3  # the window is at most the last third of a certificate's lifetime
NICE_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)  # the divisors of a day
SCAN_INTERVAL = DAY
SWEEP_INTERVAL = DAY
DEPLOY_PENDING_INTERVAL = HOUR
ANCHOR_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

LifetimeSource = Literal["certificates", "preset", "unknown"]

# Usual certificate lifetimes of the vendor presets (config/vendors.py), by ACME profile.
# ``None`` as a profile is the CA's default. Vendors whose lifetime is set per account
# (DigiCert, SSL.com) and custom CAs are unknown until acmeflow has seen their certificates.
_PRESET_LIFETIMES: dict[str, dict[str | None, dt.timedelta]] = {
    "letsencrypt": {
        None: dt.timedelta(days=90),
        "classic": dt.timedelta(days=90),
        "tlsserver": dt.timedelta(days=45),
        "shortlived": dt.timedelta(hours=160),
    },
    "letsencrypt-staging": {
        None: dt.timedelta(days=90),
        "classic": dt.timedelta(days=90),
        "tlsserver": dt.timedelta(days=45),
        "shortlived": dt.timedelta(hours=160),
    },
    "zerossl": {None: dt.timedelta(days=90)},
    "google": {None: dt.timedelta(days=90)},
}


@dataclass(frozen=True)
class Cadence:
    """How often a CA's renewal check runs, and why."""

    interval: dt.timedelta
    window: dt.timedelta
    lifetime: dt.timedelta | None
    lifetime_source: LifetimeSource
    reason: str

    @property
    def interval_text(self) -> str:
        """The interval for humans: ``every 6 h`` / ``daily``."""
        return format_interval(self.interval)

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly view (seconds for durations)."""
        return {
            "interval_seconds": int(self.interval.total_seconds()),
            "interval": self.interval_text,
            "window_hours": round(self.window.total_seconds() / 3600, 2),
            "lifetime_hours": (
                round(self.lifetime.total_seconds() / 3600, 2) if self.lifetime else None
            ),
            "lifetime_source": self.lifetime_source,
            "reason": self.reason,
        }


def format_interval(interval: dt.timedelta) -> str:
    """``daily`` for 24 h, ``every N h`` for whole hours, else ``every N min``."""
    seconds = int(interval.total_seconds())
    if seconds == int(DAY.total_seconds()):
        return "daily"
    if seconds % 3600 == 0:
        return f"every {seconds // 3600} h"
    return f"every {seconds // 60} min"


def _hours(value: dt.timedelta) -> str:
    hours = value.total_seconds() / 3600
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)} d"
    return f"{hours:.1f} h".replace(".0 h", " h")


def preset_lifetime(vendor: str, profile: str | None = None) -> dt.timedelta | None:
    """The usual lifetime of certificates from vendor preset ``vendor`` with ACME ``profile``
    (``None`` when the vendor or the profile is not known)."""
    table = _PRESET_LIFETIMES.get((vendor or "").strip().lower())
    if table is None:
        return None
    key = profile.strip().lower() if profile and profile.strip() else None
    return table.get(key)


def round_down_to_day_divisor(interval: dt.timedelta) -> dt.timedelta:
    """The largest of 1, 2, 3, 4, 6, 8, 12, 24 hours not above ``interval`` (at least 1 h)."""
    hours = interval.total_seconds() / 3600
    best = NICE_HOURS[0]
    for candidate in NICE_HOURS:
        if candidate <= hours + 1e-9:
            best = candidate
    return dt.timedelta(hours=best)


def check_cadence(
    renew_days: int,
    *,
    lifetime: dt.timedelta | None = None,
    lifetime_source: LifetimeSource | None = None,
    ari_window: dt.timedelta | None = None,
) -> Cadence:
    """The check interval for a CA renewing ``renew_days`` before expiry whose certificates
    live ``lifetime`` (``None``: unknown) and whose narrowest ARI window is ``ari_window``
    (``None``: no ARI answer known). See the module docstring for the rule."""
    if isinstance(renew_days, bool) or not isinstance(renew_days, int) or renew_days < 1:
        raise ValueError(f"renew_days must be a whole number of days >= 1 (got {renew_days!r})")
    if lifetime is not None and lifetime <= dt.timedelta(0):
        lifetime = None  # a certificate with not_after <= not_before tells nothing
    if ari_window is not None and ari_window <= dt.timedelta(0):
        ari_window = None
    source: LifetimeSource = "unknown" if lifetime is None else (lifetime_source or "preset")
    window = dt.timedelta(days=renew_days)
    why = f"renew_days {renew_days}"
    if lifetime is not None and lifetime / LIFETIME_FRACTION < window:
        window = lifetime / LIFETIME_FRACTION
        origin = "its certificates" if source == "certificates" else "the vendor preset"
        why = f"1/3 of the {_hours(lifetime)} lifetime of {origin}"
    if ari_window is not None and ari_window < window:
        window = ari_window
        why = f"the CA's {_hours(ari_window)} ARI window"
    raw = window / CHECKS_PER_WINDOW
    clamped = min(max(raw, MIN_INTERVAL), MAX_INTERVAL)
    interval = round_down_to_day_divisor(clamped)
    reason = (
        f"window {_hours(window)} ({why}) / {CHECKS_PER_WINDOW} = {_hours(raw)}"
        f" -> {format_interval(interval)}"
    )
    return Cadence(
        interval=interval, window=window, lifetime=lifetime, lifetime_source=source, reason=reason
    )


def cadence_for_ca(
    *,
    renew_days: int,
    vendor: str,
    profile: str | None = None,
    learned_lifetime: dt.timedelta | None = None,
    ari_window: dt.timedelta | None = None,
) -> Cadence:
    """The cadence of one CA vendor: the lifetime learned from its certificates when known,
    else its preset's (see :func:`preset_lifetime`)."""
    if learned_lifetime is not None and learned_lifetime > dt.timedelta(0):
        return check_cadence(
            renew_days,
            lifetime=learned_lifetime,
            lifetime_source="certificates",
            ari_window=ari_window,
        )
    preset = preset_lifetime(vendor, profile)
    return check_cadence(
        renew_days,
        lifetime=preset,
        lifetime_source="preset" if preset is not None else "unknown",
        ari_window=ari_window,
    )


def anchor_for(name: str, interval: dt.timedelta = DAY) -> dt.datetime:
    """The anchor of a schedule: midnight UTC (2024-01-01) plus a stable offset of 0-59 minutes
    derived from ``name`` (less than ``interval``), so schedules spread over the hour."""
    span = max(1, min(60, int(interval.total_seconds() // 60)))
    offset = zlib.crc32(name.encode()) % span
    return ANCHOR_EPOCH + dt.timedelta(minutes=offset)
