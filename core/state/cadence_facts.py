"""What the per-CA renewal schedules are derived from, read from the state database: each
active CA vendor's renewal window, the shortest lifetime of its certificates and the
narrowest ARI window the CA suggested (the cadence itself is core.schedule_policy's)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from acmeflow.core.state import cas
from acmeflow.core.state.models import CAVendor, Certificate


@dataclass(frozen=True)
class CAFacts:
    """What the cadence of one CA vendor depends on."""

    name: str
    vendor: str
    renew_days: int
    profile: str | None = None
    learned_lifetime: dt.timedelta | None = None
    ari_window: dt.timedelta | None = None


def _span(start: dt.datetime | None, end: dt.datetime | None) -> dt.timedelta:
    """``end - start``; zero when either is unknown."""
    if start is None or end is None:
        return dt.timedelta(0)
    return end - start


def learned_lifetimes(s: Session) -> dict[int, dt.timedelta]:
    """Per CA vendor id, the shortest lifetime (``not_after - not_before``) among the active
    certificates enrolled under it or issued by it."""
    rows = s.execute(
        select(
            Certificate.ca_vendor_id,
            Certificate.issued_by_ca_id,
            Certificate.not_before,
            Certificate.not_after,
        ).where(
            Certificate.status == "active",
            Certificate.not_before.is_not(None),
            Certificate.not_after.is_not(None),
        )
    )
    shortest: dict[int, dt.timedelta] = {}
    for enrolled_under, issued_by, not_before, not_after in rows:
        life = _span(not_before, not_after)
        if life <= dt.timedelta(0):
            continue
        for ca_id in {enrolled_under, issued_by}:
            if ca_id is not None and (ca_id not in shortest or life < shortest[ca_id]):
                shortest[ca_id] = life
    return shortest


def narrowest_ari_windows(s: Session) -> dict[int, dt.timedelta]:
    """Per CA vendor id, the narrowest ARI suggested window among its active certificates."""
    rows = s.execute(
        select(
            Certificate.ca_vendor_id, Certificate.ari_window_start, Certificate.ari_window_end
        ).where(
            Certificate.status == "active",
            Certificate.ca_vendor_id.is_not(None),
            Certificate.ari_window_start.is_not(None),
            Certificate.ari_window_end.is_not(None),
        )
    )
    narrowest: dict[int, dt.timedelta] = {}
    for ca_id, start, end in rows:
        width = _span(start, end)
        if ca_id is None or width <= dt.timedelta(0):
            continue
        if ca_id not in narrowest or width < narrowest[ca_id]:
            narrowest[ca_id] = width
    return narrowest


def ca_facts(s: Session) -> list[CAFacts]:
    """The cadence inputs of every active CA vendor, by name."""
    lifetimes = learned_lifetimes(s)
    windows = narrowest_ari_windows(s)
    vendors: list[CAVendor] = cas.list_cas(s, include_inactive=False)
    return [
        CAFacts(
            name=ca.name,
            vendor=ca.vendor,
            renew_days=ca.renew_days,
            profile=ca.profile,
            learned_lifetime=lifetimes.get(ca.id),
            ari_window=windows.get(ca.id),
        )
        for ca in vendors
    ]
