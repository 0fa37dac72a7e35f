"""Renewal decisions with an injected clock (core.renewal, core.state.renewals), and ARI answers
from the loopback ARI front in front of the sandbox's pebble."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from acmeflow.core import ari, errors, renewal
from acmeflow.core.acme_client import CAEndpoint
from acmeflow.core.renewal import AriWindow, is_due
from acmeflow.core.state import cas, certificates, dns_providers, provider_index, renewals
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.sandbox import SandboxInfo
from tests.fakes.ari_front import AriFront

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@dataclass
class Cert:
    not_after: dt.datetime | None


@dataclass
class CA:
    renew_days: int


# --- is_due ------------------------------------------------------------------------------------


def test_before_inside_and_after_the_ari_window() -> None:
    cert = Cert(not_after=T0 + 90 * DAY)
    window = AriWindow(T0 + 50 * DAY, T0 + 52 * DAY)
    before = is_due(cert, CA(30), window, T0 + 49 * DAY)
    inside = is_due(cert, CA(30), window, T0 + 51 * DAY)
    after = is_due(cert, CA(30), window, T0 + 53 * DAY)
    assert not before and before.source == "ari" and before.due_at == window.start
    assert inside and inside.source == "ari" and "inside" in inside.reason
    assert after and after.source == "ari" and "past" in after.reason


def test_the_ari_window_wins_over_renew_days_both_ways() -> None:
    cert = Cert(not_after=T0 + 90 * DAY)
    # the CA asks for an early renewal (e.g. a revocation incident): due long before renew_days
    assert is_due(cert, CA(30), AriWindow(T0, T0 + DAY), T0 + DAY / 2)
    # the CA's window opens later than renew_days would: not due yet
    late = AriWindow(T0 + 80 * DAY, T0 + 85 * DAY)
    assert not is_due(cert, CA(30), late, T0 + 70 * DAY)


def test_without_ari_renew_days_decides() -> None:
    cert = Cert(not_after=T0 + 90 * DAY)
    assert not is_due(cert, CA(30), None, T0 + 59 * DAY)
    decision = is_due(cert, CA(30), None, T0 + 60 * DAY)
    assert decision and decision.source == "renew_days" and decision.due_at == T0 + 60 * DAY


def test_invalid_window_is_ignored_and_expired_is_always_due() -> None:
    cert = Cert(not_after=T0 + 90 * DAY)
    backwards = AriWindow(T0 + 10 * DAY, T0 + 5 * DAY)
    assert not backwards.valid
    assert is_due(cert, CA(30), backwards, T0 + 11 * DAY).source == "renew_days"
    expired = is_due(cert, CA(30), AriWindow(T0 + 200 * DAY, T0 + 201 * DAY), T0 + 91 * DAY)
    assert expired and expired.source == "expired"
    assert not is_due(Cert(not_after=None), CA(30), None, T0)


def test_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError):
        is_due(Cert(T0), CA(30), None, dt.datetime(2030, 1, 1))


# --- backoff -----------------------------------------------------------------------------------


def test_backoff_doubles_from_five_minutes_to_a_day() -> None:
    no_jitter = [renewal.backoff_delay(n, rand=lambda: 0.0) for n in range(1, 12)]
    minutes = [d.total_seconds() / 60 for d in no_jitter]
    assert minutes[:6] == [5, 10, 20, 40, 80, 160]
    assert max(minutes) == 24 * 60 and minutes[-1] == 24 * 60
    assert renewal.backoff_delay(10_000, rand=lambda: 0.0) == dt.timedelta(hours=24)


@pytest.mark.parametrize("failures", [1, 3, 20])
def test_backoff_jitter_is_bounded(failures: int) -> None:
    full = renewal.backoff_delay(failures, rand=lambda: 0.0)
    for r in (0.0, 0.25, 0.5, 0.999999):
        delay = renewal.backoff_delay(failures, rand=lambda r=r: r)
        assert full * 0.9 <= delay <= full
    assert renewal.backoff_delay(failures) <= dt.timedelta(hours=24)


def test_next_attempt_honours_a_longer_retry_after() -> None:
    assert renewal.next_attempt_at(T0, 1, rand=lambda: 0.0) == T0 + dt.timedelta(minutes=5)
    assert renewal.next_attempt_at(T0, 1, retry_after=3600, rand=lambda: 0.0) == T0 + dt.timedelta(
        hours=1
    )
    assert renewal.next_attempt_at(T0, 3, retry_after=10, rand=lambda: 0.0) == T0 + dt.timedelta(
        minutes=20
    )


# --- ARI answers -------------------------------------------------------------------------------


def test_parse_renewal_info_and_retry_after() -> None:
    window = renewal.parse_renewal_info(
        {
            "suggestedWindow": {"start": "2030-01-05T00:00:00Z", "end": "2030-01-06T12:00:00Z"},
            "explanationURL": "https://ca.example/why",
        }
    )
    assert window == AriWindow(T0 + 4 * DAY, T0 + 5.5 * DAY, "https://ca.example/why")
    with pytest.raises(ValueError):
        renewal.parse_renewal_info({"suggestedWindow": {"start": "soon"}})
    assert renewal.parse_retry_after("120", T0) == T0 + dt.timedelta(minutes=2)
    assert renewal.parse_retry_after("Wed, 02 Jan 2030 00:00:00 GMT", T0) == T0 + DAY
    assert renewal.parse_retry_after("never", T0) is None


def test_ari_check_needed_follows_retry_after() -> None:
    assert not renewal.ari_check_needed(None, None, None, T0)
    assert renewal.ari_check_needed("a.b", None, None, T0)
    assert not renewal.ari_check_needed("a.b", T0, T0 + DAY, T0 + DAY / 2)
    assert renewal.ari_check_needed("a.b", T0, T0 + DAY, T0 + DAY)


@pytest.fixture
def front(sandbox: SandboxInfo) -> Iterator[AriFront]:
    with AriFront.for_sandbox(sandbox) as f:
        yield f


def test_fetch_renewal_info_from_the_ari_front(front: AriFront, sandbox: SandboxInfo) -> None:
    endpoint = CAEndpoint(directory_url=front.directory_url, ca_bundle=str(sandbox.ca_bundle))
    assert ari.ca_offers_ari(endpoint)
    front.set_window("aaaa.AQ", T0 + DAY, T0 + 2 * DAY, retry_after=7200)
    ok = ari.fetch_renewal_info(endpoint, "aaaa.AQ", T0)
    assert ok.supported and ok.error is None
    assert ok.window == AriWindow(T0 + DAY, T0 + 2 * DAY)
    assert ok.retry_after == T0 + dt.timedelta(hours=2)
    assert front.renewal_info_requests == ["aaaa.AQ"]

    # an absurd Retry-After is clamped to a day; none means six hours
    front.set_window("bbbb.AQ", T0, T0 + DAY, retry_after=10**9)
    assert ari.fetch_renewal_info(endpoint, "bbbb.AQ", T0).retry_after == T0 + DAY
    front.set_window("cccc.AQ", T0, T0 + DAY, retry_after=None)
    assert ari.fetch_renewal_info(endpoint, "cccc.AQ", T0).retry_after == T0 + dt.timedelta(hours=6)

    # errors: no window (renew_days decides), asked again later
    front.set_error("dddd.AQ", 503, retry_after=300)
    failed = ari.fetch_renewal_info(endpoint, "dddd.AQ", T0)
    assert failed.window is None and "503" in (failed.error or "")
    assert failed.retry_after == T0 + dt.timedelta(minutes=5)
    unknown = ari.fetch_renewal_info(endpoint, "eeee.AQ", T0)
    assert unknown.window is None and "404" in (unknown.error or "")


def test_pebble_alone_has_no_ari(sandbox: SandboxInfo) -> None:
    endpoint = CAEndpoint(directory_url=sandbox.directory_url, ca_bundle=str(sandbox.ca_bundle))
    assert not ari.ca_offers_ari(endpoint)
    result = ari.fetch_renewal_info(endpoint, "aaaa.AQ", T0)
    assert not result.supported and result.window is None and result.error is None


# --- the queries (in-memory database, injected clock) -------------------------------------------


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Session]:
    engine = open_database(f"sqlite:///{tmp_path / 'renewal.db'}")
    with session_scope(engine) as session:
        yield session


def _ca(s: Session, name: str = "le", renew_days: int = 30) -> object:
    return cas.add_ca(
        s,
        name=name,
        vendor="custom",
        email="admin@example.com",
        directory_url=f"https://{name}.example/dir",
        renew_days=renew_days,
    )


def _cert(s: Session, ca: object, name: str, not_after: dt.datetime, **fields: object) -> int:
    cert = certificates.add_certificate(
        s,
        store="certificate",
        folder=f"/stores/certificate/{name}",
        names=[name],
        not_after=not_after,
        ca_vendor_id=ca.id,  # type: ignore[attr-defined]
        enrollment=fields.pop("enrollment", "auto"),
        **fields,
    )
    return cert.id


def test_due_candidates_narrow_by_window_enrollment_and_backoff(s: Session) -> None:
    ca = _ca(s)
    soon = _cert(s, ca, "soon.example.com", T0 + 10 * DAY)
    later = _cert(s, ca, "later.example.com", T0 + 80 * DAY)
    manual = _cert(s, ca, "manual.example.com", T0 + 10 * DAY, enrollment="manual")
    backing_off = _cert(s, ca, "backoff.example.com", T0 + 10 * DAY, next_attempt_at=T0 + DAY)
    ari_open = _cert(s, ca, "ari.example.com", T0 + 80 * DAY)
    renewals.record_ari(
        s,
        ari_open,
        renewal.AriResult(True, AriWindow(T0 - DAY, T0 + DAY), T0, T0 + DAY),
        renewal_due_at=T0 - DAY,
    )
    cas = renewals.renewal_cas(s)
    ids = {c.id for c in renewals.due_candidates(s, now=T0, cas=cas)}
    assert ids == {soon, ari_open}
    assert later not in ids and manual not in ids and backing_off not in ids
    # after the backoff the certificate is a candidate again
    ids = {c.id for c in renewals.due_candidates(s, now=T0 + 2 * DAY, cas=cas)}
    assert backing_off in ids
    # at a CA with ARI, certificates whose ARI answer is stale are looked at too
    _ = certificates.update_certificate(
        s, certificates.get_certificate(s, later), ari_cert_id="x.AQ"
    )
    ids = {c.id for c in renewals.due_candidates(s, now=T0, cas=cas, ari_ca_ids=[ca.id])}  # type: ignore[attr-defined]
    assert later in ids


def test_record_failure_backs_off_and_success_clears(s: Session) -> None:
    ca = _ca(s)
    cid = _cert(s, ca, "f.example.com", T0 + 10 * DAY)
    first = renewals.record_failure(s, cid, "boom", now=T0, rand=lambda: 0.0)
    second = renewals.record_failure(s, cid, "boom", now=T0 + DAY, rand=lambda: 0.0)
    limited = renewals.record_failure(
        s, cid, "slow down", now=T0, retry_after=7200, rand=lambda: 0.0
    )
    assert first == T0 + dt.timedelta(minutes=5)
    assert second == T0 + DAY + dt.timedelta(minutes=10)
    assert limited == T0 + dt.timedelta(hours=2)
    row = certificates.get_certificate(s, cid)
    assert row.failure_count == 3 and row.last_error == "slow down"
    renewals.record_success(s, cid, now=T0, renew_days=30)
    row = certificates.get_certificate(s, cid)
    assert row.failure_count == 0 and row.next_attempt_at is None and row.last_error is None
    assert row.renewal_due_at == T0 - 20 * DAY


def test_provider_index_resolves_names_like_the_repo(s: Session) -> None:
    empty = provider_index.provider_index(s)
    with pytest.raises(errors.NoActiveDNSProvider) as none:
        empty.providers_for(["a.example.com"])
    assert none.value.message == "Renewal skipped as no active DNS providers are configured."
    dns_providers.add_dns_provider(s, name="com", type="rfc2136", settings={"server": "127.0.0.1"})
    dns_providers.add_dns_provider(s, name="sub", type="rfc2136", settings={"server": "127.0.0.1"})
    dns_providers.map_domains(s, "com", ["example.com"])
    dns_providers.map_domains(s, "sub", ["deep.example.com"])
    index = provider_index.provider_index(s)
    assert index.providers_for(["*.example.com", "x.deep.example.com"]) == {
        "*.example.com": "com",
        "x.deep.example.com": "sub",
    }
    with pytest.raises(errors.MissingDNSProvider) as missing:
        index.providers_for(["a.example.com", "b.example.org"])
    assert missing.value.message == "Certificate is missing a DNS provider name."
    assert "b.example.org" in (missing.value.detail or "")
    dns_providers.update_dns_provider(s, "sub", active=False)
    with pytest.raises(errors.DNSProviderUnavailable):
        provider_index.provider_index(s).providers_for(["x.deep.example.com"])
