"""The cadence rule of the per-CA renewal schedules (core.schedule_policy)."""

from __future__ import annotations

import datetime as dt

import pytest

from acmeflow.core.schedule_policy import (
    ANCHOR_EPOCH,
    anchor_for,
    cadence_for_ca,
    check_cadence,
    format_interval,
    preset_lifetime,
    round_down_to_day_divisor,
)

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def test_a_90_day_certificate_is_checked_daily() -> None:
    cadence = cadence_for_ca(renew_days=30, vendor="letsencrypt")
    assert cadence.interval == D
    assert cadence.lifetime == 90 * D
    assert cadence.lifetime_source == "preset"
    assert cadence.window == 30 * D
    assert cadence.interval_text == "daily"


def test_a_six_day_certificate_is_checked_every_few_hours() -> None:
    # Let's Encrypt "shortlived" (160 h) with the default 30-day window: the window is capped
    # at a third of the lifetime (53.3 h), /8 = 6.7 h, rounded down to 6 h.
    cadence = cadence_for_ca(renew_days=30, vendor="letsencrypt", profile="shortlived")
    assert cadence.lifetime == 160 * H
    assert cadence.window == 160 * H / 3
    assert cadence.interval == 6 * H
    assert "6 h" in cadence.reason


def test_the_window_shrinks_with_renew_days() -> None:
    assert check_cadence(2).interval == 6 * H  # 48 h / 8
    assert check_cadence(1).interval == 3 * H  # 24 h / 8
    assert check_cadence(7).interval == 12 * H  # 168 h / 8 = 21 h -> 12 h
    assert check_cadence(8).interval == D  # 192 h / 8 = 24 h
    assert check_cadence(365).interval == D  # never slower than daily


def test_never_more_often_than_hourly() -> None:
    tiny = check_cadence(1, lifetime=3 * H, lifetime_source="certificates")
    assert tiny.window == H
    assert tiny.interval == H


def test_intervals_divide_a_day() -> None:
    for days in range(1, 40):
        for lifetime in (None, 24 * H, 100 * H, 160 * H, 10 * D, 45 * D, 90 * D):
            interval = check_cadence(days, lifetime=lifetime).interval
            assert H <= interval <= D
            assert D % interval == dt.timedelta(0), (days, lifetime, interval)


def test_learned_lifetime_wins_over_the_preset() -> None:
    # a ZeroSSL preset says 90 days, but the certificates seen live 7 days
    cadence = cadence_for_ca(renew_days=30, vendor="zerossl", learned_lifetime=7 * D)
    assert cadence.lifetime_source == "certificates"
    assert cadence.lifetime == 7 * D
    assert cadence.interval == 6 * H  # 56 h / 8 = 7 h -> 6 h


def test_unknown_vendor_lifetime_uses_renew_days_only() -> None:
    cadence = cadence_for_ca(renew_days=2, vendor="custom")
    assert cadence.lifetime is None
    assert cadence.lifetime_source == "unknown"
    assert cadence.window == 2 * D
    assert cadence.interval == 6 * H


def test_a_narrow_ari_window_tightens_the_cadence() -> None:
    # the CA suggests renewing inside a 2-day window: eight checks inside it
    cadence = cadence_for_ca(renew_days=30, vendor="letsencrypt", ari_window=2 * D)
    assert cadence.window == 2 * D
    assert cadence.interval == 6 * H
    assert "ARI" in cadence.reason


def test_nonsense_inputs() -> None:
    with pytest.raises(ValueError):
        check_cadence(0)
    # a certificate with not_after <= not_before says nothing about the lifetime
    assert check_cadence(30, lifetime=-D).lifetime is None
    assert check_cadence(30, ari_window=dt.timedelta(0)).interval == D


def test_preset_lifetimes() -> None:
    assert preset_lifetime("letsencrypt") == 90 * D
    assert preset_lifetime("LetsEncrypt", "TLSServer") == 45 * D
    assert preset_lifetime("letsencrypt-staging", "shortlived") == 160 * H
    assert preset_lifetime("google") == 90 * D
    assert preset_lifetime("digicert") is None  # set per account
    assert preset_lifetime("custom") is None
    assert preset_lifetime("letsencrypt", "no-such-profile") is None


def test_round_down_and_format() -> None:
    assert round_down_to_day_divisor(5 * H) == 4 * H
    assert round_down_to_day_divisor(11.9 * H) == 8 * H
    assert round_down_to_day_divisor(30 * dt.timedelta(minutes=1)) == H
    assert format_interval(D) == "daily"
    assert format_interval(6 * H) == "every 6 h"
    assert format_interval(dt.timedelta(minutes=90)) == "every 90 min"


def test_anchors_are_stable_and_spread_within_the_hour() -> None:
    a = anchor_for("renew/renew-letsencrypt", 6 * H)
    assert a == anchor_for("renew/renew-letsencrypt", 6 * H)
    assert ANCHOR_EPOCH <= a < ANCHOR_EPOCH + H
    offsets = {anchor_for(f"renew/renew-ca{i}", D) for i in range(20)}
    assert len(offsets) > 5  # not all in the same minute
